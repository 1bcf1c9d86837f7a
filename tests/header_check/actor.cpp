// actor.hpp alone: spawn an actor, call a method, look it up by name, kill it; a threaded
// actor with a concurrency group, called in it.
#include <coray/actor.hpp>

namespace header_check_actor {

struct counter {
  explicit counter(int start) : n(start) {}
  int incr(int by) { return n += by; }
  int n;
  int peek() const { return n; }
};

}  // namespace header_check_actor

template <>
inline constexpr std::string_view ray::concurrency_group<&header_check_actor::counter::peek> = "io";

namespace header_check_actor {

int uses() {
  ray::actor<counter> c = ray::spawn<counter>({.name = "c", .max_concurrency = 1}, 10);
  ray::object_ref<int> r = c.call<&counter::incr>(5);
  int v = ray::sync_wait(ray::get(r));
  ray::actor<counter> same = ray::get_actor<counter>("c");
  ray::kill(same);
  auto t = ray::spawn<counter>(
      {.max_concurrency = 4, .threaded = true, .concurrency_groups = {{"io", 2}}}, 0);
  int w = ray::sync_wait(ray::get(t.options({.concurrency_group = "io"}).call<&counter::incr>(1)));
  w += ray::sync_wait(ray::get(t.call<&counter::peek>()));
  return v + w + static_cast<int>(c.id()) + c.pid();
}

}  // namespace header_check_actor
