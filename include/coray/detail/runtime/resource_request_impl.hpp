#pragma once
/// resource_request's members that check and describe a requirement: included by
/// resource_request.hpp in header-only mode (inline), and compiled once by src/coray.cpp into
/// coray::coray_compiled in compiled mode (CORAY_COMPILED_LIB).

#include <fmt/format.h>

#include <coray/detail/runtime/resource_request.hpp>
#include <coray/errors.hpp>
#include <map>
#include <string>
#include <string_view>

CORAY_BEGIN_NAMESPACE
namespace detail {

CORAY_API resource_request resource_request::from(double cpus, double gpus,
                                                  const std::map<std::string, double>& res,
                                                  const char* who) {
  resource_request r;
  auto amount = [&](std::string_view name, double x) {
    const resource_amount a = to_resource_amount(x);
    if (a < 0)
      throw invalid_resources(
          fmt::format("{}: {} = {} is not a valid amount (it must be a finite number, "
                      "0 or more)",
                      who, name, x));
    return a;
  };
  r.cpu = amount("num_cpus", cpus);
  r.gpu = amount("num_gpus", gpus);
  for (const auto& [name, x] : res) {
    if (name == "CPU" || name == "GPU")
      throw invalid_resources(fmt::format("{}: give {} as num_{}, not as a custom resource", who,
                                          name, name == "CPU" ? "cpus" : "gpus"));
    const resource_amount a = amount(fmt::format("resources[\"{}\"]", name), x);
    if (a) r.custom.emplace(name, a);
  }
  return r;
}

CORAY_API std::string resource_request::describe() const {
  std::string s = fmt::format("{{CPU: {}", from_resource_amount(cpu));
  if (gpu) s += fmt::format(", GPU: {}", from_resource_amount(gpu));
  for (const auto& [name, a] : custom) s += fmt::format(", {}: {}", name, from_resource_amount(a));
  s += "}";
  if (where.node >= 0) s += fmt::format(" on node {}{}", where.node, where.soft ? " (soft)" : "");
  if (where.spread) s += " spread";
  if (where.group)
    s += where.bundle < 0
             ? fmt::format(" in placement group {}", where.group)
             : fmt::format(" in bundle {} of placement group {}", where.bundle, where.group);
  return s;
}

}  // namespace detail
CORAY_END_NAMESPACE
