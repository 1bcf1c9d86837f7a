#pragma once
/// A streaming generator's items where they are consumed (design.md, "Streaming
/// generators"): the refs its consumer has not taken yet, in order, and how far its producer
/// may run ahead. In the driver the orchestrator fills it from the producer's batches; in a
/// worker that made the call, the worker fills it from the driver's stream_ready messages.
/// It ends when the call's own result settles; ray::object_ref_generator takes from it. Loop
/// thread only.

#include <coray/detail/runtime/object_state.hpp>
#include <cstdint>
#include <deque>
#include <exception>
#include <utility>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// Items a producer may make beyond those its consumer took: past that, it waits.
inline constexpr std::uint64_t stream_window = 1024;
/// In a submission's task_header::returns: the call is a streaming generator's.
inline constexpr std::uint32_t returns_stream = ~std::uint32_t{0};

/// The head of a stream_items message (worker to driver): `count` item records follow, each
/// a result_header, its inline value, the ids of the refs and actor handles inside it, and
/// padding to 8 bytes.
struct stream_batch_header {
  std::uint64_t id;     // the call
  std::uint64_t first;  // the index of the first item in the batch, from 0 in each attempt
  std::uint64_t limit;  // the producer's limit: it makes items up to this index
  std::uint32_t count;
  std::uint32_t reserved;
};
static_assert(sizeof(stream_batch_header) == 32);

struct stream_state {
  std::uint64_t id = 0;         // the call's, once admitted
  std::deque<state_ptr> items;  // delivered, not taken yet; the first is item `base`
  std::uint64_t base = 0;       // items taken by the consumer
  std::uint64_t delivered = 0;  // items received (an attempt's repeats of them are dropped)
  std::uint64_t credited = stream_window;  // the limit last given to the producer
  bool ended = false;
  std::exception_ptr error;  // why it ended early, if it did
  state_ptr wake;            // what the consumer waits on while no item is there
  state_ptr call;            // in a worker: the call's own result, whose settling ends it
  int forward_to = -1;       // in the driver: the slot of the worker consuming it, if any

  /// An item arrived, or the end: the consumer waiting for one goes on.
  void wake_consumer() {
    if (wake) std::exchange(wake, {})->set_inline({});
  }
};

}  // namespace detail
CORAY_END_NAMESPACE
