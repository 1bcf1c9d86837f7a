#pragma once
/// Moves ready calls to processes: task calls from the run queue to the least busy task
/// worker (at most `max_in_flight` occupying each; a worker blocked in a call takes only
/// that call's descendants), and each actor's calls in the order they
/// were made while its mailbox has room. An actor whose mailbox was full is tried again on
/// the next turn; a closing actor is told to shut down after its last call. Calls found
/// failed (a dependency failed) are handed back for the orchestrator to fail. Driver only,
/// loop thread only.

#include <coray/detail/runtime/actor_table.hpp>
#include <coray/detail/runtime/call_sender.hpp>
#include <coray/detail/runtime/task_table.hpp>
#include <coray/detail/runtime/transport.hpp>
#include <cstdint>
#include <deque>
#include <unordered_set>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

class call_pump {
 public:
  call_pump(task_table& tasks, actor_table& actors, transport& t, call_sender& sender,
            std::uint32_t workers, std::uint32_t max_in_flight)
      : tasks_(tasks),
        actors_(actors),
        transport_(t),
        sender_(sender),
        workers_(workers),
        max_in_flight_(max_in_flight) {}

  /// Sends ready task calls, then the calls of actors whose mailbox was full. True on
  /// progress; calls whose dependency failed are appended to `failed`.
  bool dispatch(std::vector<task_record*>& failed) {
    bool progress = false;
    auto& runnable = tasks_.runnable;
    while (!runnable.empty()) {
      const auto [picked, it] = pick();
      if (picked < 0) break;
      const auto slot = static_cast<std::uint32_t>(picked);
      task_record* r = *it;
      if (!sender_.send(slot, *r)) break;
      tasks_.sent(slot, *r);
      if (it == runnable.begin())
        runnable.pop_front();
      else
        runnable.erase(it);
      progress = true;
    }
    for (auto it = backlog_.begin(); it != backlog_.end();) {
      actor_entry* a = actors_.find(*it);
      it = backlog_.erase(it);
      if (a) progress |= pump(*a, failed);
    }
    return progress;
  }

  /// Sends the actor's queued calls, in order, while each is ready and its mailbox has room.
  /// True on progress; calls whose dependency failed are taken out into `failed`.
  bool pump(actor_entry& a, std::vector<task_record*>& failed) {
    bool progress = false;
    while (!a.queue.empty() && !a.dead) {
      task_record* r = a.queue.front();
      if (r->pending_deps) break;
      if (r->failed_dep) {
        a.queue.pop_front();
        failed.push_back(r);
        progress = true;
        continue;
      }
      if (!sender_.send(a.slot, *r)) {
        backlog_.insert(a.id);
        break;
      }
      if (!r->construct) r->dispatch_seq = a.dispatched++;  // its place among the calls it starts
      a.queue.pop_front();
      a.sent.push_back(r->id);
      progress = true;
    }
    if (a.closing && a.queue.empty() && !a.dead && !a.shutdown_sent) {
      a.shutdown_sent = send_shutdown(a.slot);
      if (!a.shutdown_sent) backlog_.insert(a.id);
    }
    return progress;
  }

  /// Whether an actor waits for room in its mailbox.
  bool has_backlog() const noexcept { return !backlog_.empty(); }

  /// Tells the slot's process to end once its calls are done; false if its inbox is full.
  bool send_shutdown(std::uint32_t slot) {
    return transport_.send(slot, msg_kind::shutdown, 0, [](std::byte*) {});
  }

 private:
  using queue_place = std::deque<task_record*>::iterator;

  /// The next call to send and its worker (-1 if none): the queue's first call to the task
  /// worker with the fewest calls that occupy it, under the per-worker limit; failing that,
  /// a worker with room that is blocked in a call gets that call's first descendant in the
  /// queue (task_table::next_for). A blocked worker whose search found nothing is not
  /// searched again until its mark or the nested calls queued change. Runs on every
  /// dispatch, mostly to find every worker full: the scan stays inline, the search for a
  /// blocked worker's descendants does not.
  [[gnu::always_inline]] std::pair<int, queue_place> pick() {
    int best = -1;
    std::uint32_t best_load = max_in_flight_;
    bool any_blocked = false;
    for (std::uint32_t i = 0; i < workers_; ++i) {
      if (!transport_.alive(i)) continue;
      const std::uint32_t load = tasks_.load(i, transport_.suspended(i));
      if (load >= best_load) continue;
      if (transport_.blocked_mark(i) != 0) {
        any_blocked = true;
        continue;
      }
      best = static_cast<int>(i);
      best_load = load;
      if (load == 0) break;
    }
    if (best >= 0 || !any_blocked) [[likely]]
      return {best, tasks_.runnable.begin()};
    return pick_descendant();
  }

  /// pick() when every worker with room is blocked: the first such worker with a descendant
  /// of its blocked call queued.
  [[gnu::noinline]] std::pair<int, queue_place> pick_descendant() {
    if (missed_.size() < workers_) missed_.resize(workers_);
    for (std::uint32_t i = 0; i < workers_; ++i) {
      const std::uint64_t mark = transport_.blocked_mark(i);
      if (mark == 0 || !transport_.alive(i) ||
          tasks_.load(i, transport_.suspended(i)) >= max_in_flight_)
        continue;
      const search_miss now{mark, tasks_.nested_queued};
      if (missed_[i] == now) continue;
      auto it = tasks_.next_for(i, mark);
      if (it != tasks_.runnable.end()) return {static_cast<int>(i), it};
      missed_[i] = now;
    }
    return {-1, tasks_.runnable.end()};
  }

  task_table& tasks_;
  actor_table& actors_;
  transport& transport_;
  call_sender& sender_;
  std::uint32_t workers_;
  std::uint32_t max_in_flight_;
  std::unordered_set<std::uint64_t> backlog_;  // actors whose mailbox was full
  struct search_miss {
    std::uint64_t mark = 0, nested_queued = 0;
    bool operator==(const search_miss&) const = default;
  };
  std::vector<search_miss> missed_;  // per worker: the last search of the queue that failed
};

}  // namespace detail
CORAY_END_NAMESPACE
