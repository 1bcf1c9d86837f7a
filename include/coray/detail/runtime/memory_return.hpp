#pragma once
/// Giving memory back to the operating system once the driver has been quiet with it for a
/// while, as jemalloc's decay does: pages given back at once would be faulted in again by a
/// program that keeps making big objects or tides of calls, so nothing goes back while that
/// goes on. Checked once a second on the driver's loop (a timer; it does not run while the
/// program is busy outside the runtime, and the check waits for the next turn then).
///
/// - The object store: when no object of a MB or more was made during the last second but
///   some were since the last return, every free range of 16 MB or more is punched out of
///   the segment (segment::return_free_pages).
/// - The driver's heap: when the driver held no call at the last two checks and its call
///   index had grown for a tide of calls, or it kept more freed call objects than its idle
///   bound (recycled.hpp; a loop that goes to sleep gives those back too), the index is
///   shrunk (task_table::shrink), those objects are freed and malloc's free memory is
///   trimmed (malloc_trim).

#include <malloc.h>

#include <chrono>
#include <coray/detail/runtime/recycled.hpp>
#include <coray/detail/runtime/task_table.hpp>
#include <coray/detail/shm/segment.hpp>
#include <cstddef>
#include <cstdint>

CORAY_BEGIN_NAMESPACE
namespace detail {

class memory_return {
 public:
  static constexpr auto period = std::chrono::seconds(1);
  static constexpr std::size_t min_chunk = std::size_t{16} << 20;

  /// Once a period, on the driver's loop.
  void check(segment& seg, task_table& tasks) {
    const std::uint64_t made = seg.large_allocations();
    if (made != made_at_return_ && made == made_at_check_) {
      seg.return_free_pages(min_chunk);
      made_at_return_ = made;
    }
    made_at_check_ = made;

    const bool idle = tasks.size() == 0;
    if (idle && was_idle_) {
      const bool kept_many = trim_recycled() != 0;
      if (tasks.shrink() || kept_many) malloc_trim(0);
    }
    was_idle_ = idle;
  }

 private:
  std::uint64_t made_at_return_ = 0;  // large allocations when the store last gave back
  std::uint64_t made_at_check_ = 0;   // ... at the last check
  bool was_idle_ = false;             // no call was held at the last check
};

}  // namespace detail
CORAY_END_NAMESPACE
