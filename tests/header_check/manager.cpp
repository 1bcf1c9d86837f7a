// manager.hpp alone: a manager's dict, list and namespace, blocking and in a coroutine.
#include <coray/manager.hpp>
#include <string>

namespace header_check_manager {

ray::async<int> read(ray::dict_proxy<std::string, int> d) {
  co_await d.set_async("b", 2);
  co_return co_await d.get_async("b");
}

int uses() {
  ray::manager m;
  auto d = m.dict<std::string, int>();
  d.set("a", 1);
  int v = d.get("a") + d.get("z", 0) + d.increment("a", 2);
  if (d.contains("a") && d.erase("a")) v += static_cast<int>(d.size() + d.keys().size());
  d.update({{"c", 3}});
  auto l = m.list<double>();
  l.append(1.5);
  l.extend(std::vector<double>{2.5});
  v += static_cast<int>(l.get(-1) + l.pop() + static_cast<double>(l.snapshot().size()));
  auto ns = m.ns();
  ns.set("epoch", 3);
  v += ns.get<int>("epoch") + ns.get<int>("none", 0);
  return v + ray::sync_wait(read(d)) + m.pid();
}

}  // namespace header_check_manager
