// actor.hpp alone: spawn an actor, call a method, look it up by name, kill it.
#include <coray/actor.hpp>

namespace header_check_actor {

struct counter {
  explicit counter(int start) : n(start) {}
  int incr(int by) { return n += by; }
  int n;
};

int uses() {
  ray::actor<counter> c = ray::spawn<counter>({.name = "c", .max_concurrency = 1}, 10);
  ray::object_ref<int> r = c.call<&counter::incr>(5);
  int v = ray::sync_wait(ray::get(r));
  ray::actor<counter> same = ray::get_actor<counter>("c");
  ray::kill(same);
  return v + static_cast<int>(c.id()) + c.pid();
}

}  // namespace header_check_actor
