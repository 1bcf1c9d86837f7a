// state.hpp alone: listing tasks, actors, workers and objects, the summaries, the timeline.
#include <coray/state.hpp>

namespace header_check_state {

std::size_t uses() {
  using namespace ray::state;
  return list_tasks({.state = task_state::running, .name = "f"}).size() +
         list_actors({.state = actor_state::alive}).size() +
         list_workers({.kind = worker_kind::task_worker}).size() + summarize_tasks().size() +
         to_string(task_state::finished).size() + to_string(actor_state::dead).size() +
         get_log(1234).out.size() + list_objects().size() +
         to_string(object_location::spilled).size() + ray::memory_summary().size() +
         ray::timeline("trace.json");
}

}  // namespace header_check_state
