// Memory pressure: a full store fails clearly, or spills to disk when asked to.
#include <dirent.h>
#include <doctest/doctest.h>

#include <coray/coray.hpp>
#include <numeric>
#include <span>
#include <string>
#include <vector>

namespace {
double sum(std::span<const double> xs) { return std::accumulate(xs.begin(), xs.end(), 0.0); }
std::vector<double> filled(int n, double v) {
  return std::vector<double>(static_cast<std::size_t>(n), v);
}

std::size_t entries(const std::string& dir) {
  std::size_t n = 0;
  if (DIR* d = opendir(dir.c_str())) {
    while (auto* e = readdir(d)) n += e->d_name[0] != '.';
    closedir(d);
  }
  return n;
}
}  // namespace

TEST_CASE(
    "with a spill directory, objects beyond the store's capacity spill to disk and come back "
    "intact") {
  char tmpl[] = "/tmp/coray-spill-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  const std::string dir = tmpl;
  {
    ray::runtime rt({.num_workers = 2, .object_store_bytes = 24 << 20, .spill_directory = dir});
    const int n = 1 << 20;  // 8 MiB each: ten of them are far more than 24 MiB
    std::vector<ray::object_ref<std::vector<double>>> refs;
    for (int i = 0; i < 10; ++i)
      refs.push_back(ray::put(std::vector<double>(static_cast<std::size_t>(n), i + 0.5)));
    CHECK(rt.objects_spilled() > 0);
    CHECK(entries(dir) == 0);  // the spill file has no name
    for (int i = 0; i < 10; ++i) {
      // Read back by the driver and in place by a worker, in an order that spills others again.
      CHECK(ray::get(ray::task<sum>.remote(refs[static_cast<std::size_t>(i)])).get() ==
            n * (i + 0.5));
      std::vector<double> v = ray::get(refs[static_cast<std::size_t>(9 - i)]);
      CHECK(v[12345] == 9 - i + 0.5);
    }
    // Results of tasks spill too.
    std::vector<ray::object_ref<std::vector<double>>> made;
    for (int i = 0; i < 6; ++i) made.push_back(ray::task<filled>.remote(n, 2.0));
    for (auto& m : made) CHECK(ray::get_view(m).get()[n - 1] == 2.0);
  }
  CHECK(entries(dir) == 0);
  rmdir(dir.c_str());
}

TEST_CASE("without spilling, a full store says object_store_full and works again once refs go") {
  ray::runtime rt({.num_workers = 1, .object_store_bytes = 24 << 20});
  std::vector<ray::object_ref<std::vector<double>>> refs;
  bool full = false;
  try {
    for (int i = 0; i < 10; ++i) refs.push_back(ray::put(std::vector<double>(1 << 20, 1.0)));
  } catch (const ray::object_store_full& e) {
    full = true;
    CHECK(e.requested() >= (8u << 20));
  }
  CHECK(full);
  refs.clear();
  auto again = ray::put(std::vector<double>(1 << 20, 3.0));
  CHECK(ray::get(ray::task<sum>.remote(again)).get() == 3.0 * (1 << 20));
}
