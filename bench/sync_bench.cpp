// Uncontended operations of the shared-memory primitives, in ns per operation (lower is
// better), each the median of several runs of a million, by the driver alone on a runtime of
// 1 worker: what one operation costs when no other process is in the way.
//   mutex_lock_unlock_ns                  ray::mutex lock, then unlock (per operation)
//   recursive_mutex_lock_unlock_ns        ray::recursive_mutex lock, then unlock
//   shared_value_fetch_add_ns             ray::shared_value<long>::fetch_add
//   semaphore_acquire_release_ns          ray::semaphore acquire, then release (target <= 100)
//   event_set_ns, event_is_set_ns         ray::event set (already set) and is_set (target <= 100)
//   event_set_clear_ns                    ray::event set, then clear (per operation)
//
// Usage: sync_bench [--quick] [--json FILE]
#include <coray/coray.hpp>
#include <string>
#include <vector>

#include "bench_common.hpp"

namespace {

/// The median over `reps` runs of `n` calls of `op`, in ns per call of op; `per` operations
/// each.
template <class Op>
double ns_per_op(int reps, long n, int per, Op&& op) {
  std::vector<double> t = bench::times(reps, [&] {
    for (long i = 0; i < n; ++i) op();
  });
  return bench::median(t) * 1e9 / static_cast<double>(n * per);
}

}  // namespace

int main(int argc, char** argv) {
  ray::enter_worker_if_spawned();
  const bench::options o = bench::parse_options(argc, argv);
  const long n = o.quick ? 200'000 : 1'000'000;
  ray::runtime rt(argc, argv, {.num_workers = 1});

  ray::mutex m;
  bench::report("mutex_lock_unlock_ns",
                ns_per_op(o.reps, n, 2,
                          [&] {
                            m.lock();
                            m.unlock();
                          }),
                "ns", false, "uncontended, per operation");
  ray::recursive_mutex rm;
  bench::report("recursive_mutex_lock_unlock_ns",
                ns_per_op(o.reps, n, 2,
                          [&] {
                            rm.lock();
                            rm.unlock();
                          }),
                "ns", false, "uncontended, per operation");
  ray::shared_value<long> v(0);
  bench::report("shared_value_fetch_add_ns", ns_per_op(o.reps, n, 1, [&] { v.fetch_add(1); }), "ns",
                false, "uncontended");
  ray::semaphore s(1);
  bench::report("semaphore_acquire_release_ns",
                ns_per_op(o.reps, n, 2,
                          [&] {
                            s.acquire();
                            s.release();
                          }),
                "ns", false, "uncontended, per operation; target <= 100");
  ray::event e;
  e.set();
  bench::report("event_set_ns", ns_per_op(o.reps, n, 1, [&] { e.set(); }), "ns", false,
                "uncontended, already set; target <= 100");
  long seen = 0;
  bench::report("event_is_set_ns", ns_per_op(o.reps, n, 1, [&] { seen += e.is_set(); }), "ns",
                false, "uncontended; target <= 100");
  bench::report("event_set_clear_ns",
                ns_per_op(o.reps, n, 2,
                          [&] {
                            e.set();
                            e.clear();
                          }),
                "ns", false, "uncontended, per operation; target <= 100");
  bench::keep(seen);
  bench::write_json(o);
  return 0;
}
