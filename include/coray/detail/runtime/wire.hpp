#pragma once
/// The messages processes exchange through their mailboxes, and how values, errors and task
/// arguments are laid out in them. Every field is fixed-width; every offset is into the
/// shared segment.

#include <cxxabi.h>
#include <fmt/format.h>

#include <coray/codec.hpp>
#include <coray/detail/shm/futex.hpp>
#include <coray/detail/shm/mailbox.hpp>
#include <coray/detail/shm/segment.hpp>
#include <coray/errors.hpp>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// A process slot's life, in its worker_shared::state: dead once its process ended.
enum class slot_state : std::uint32_t { empty = 0, starting = 1, running = 2, dead = 3 };

enum class msg_kind : std::uint32_t {
  nop = 0,
  // driver -> worker
  run_task = 1,      // task_header, arg entries
  object_ready = 2,  // result_header: a nested call's result
  shutdown = 3,
  construct = 4,    // task_header (reserved: max_concurrency), arg entries: build the actor
  actor_found = 5,  // u64 request, u64 actor id, u64 type id (0: no such actor)
  block_granted =
      6,  // u64 request, u64 block offset (0: store full), u64 requested, free, capacity
  actor_spawned = 7,  // u64 request, u64 actor id; 0: refused, the wire_error follows
  stream_credit = 8,  // u64 call id, u64 limit: a stream's producer may make items up to the
                      // index `limit`; 0: the consumer stopped it (stream_state.hpp)
  stream_ready = 9,   // u64 call id, u64 count, count u64 ids: the next items of a stream
                      // this worker consumes; each value follows as object_ready
  // worker -> driver
  task_done = 16,        // result_header
  submit = 17,           // task_header, arg entries (a nested call)
  release = 18,          // u64 id: the worker dropped its last handle to a nested result
  actor_hold = 19,       // u64 actor id: a handle to the actor was made in the worker
  actor_release = 20,    // u64 actor id: a handle went
  actor_kill = 21,       // u64 actor id
  actor_lookup = 22,     // u64 request, then the name's bytes
  block_request = 23,    // u64 request, u64 size: a new object block for this process
  block_release = 24,    // u64 block offset: this process drops one reference
  ref_hold = 25,         // u64 id: a ref read from a value; the driver sends its object_ready
  export_object = 26,    // result_header: an object of this process that a ref in a value names
  actor_exit = 27,       // this actor ends after the call it just replied to (ray::exit_actor)
  actor_spawn = 28,      // u64 request, u64 n, n bytes of encoded fields, padding to 16, the
                         // constructor's call as in submit (ray::spawn in a worker)
  stream_items = 29,     // stream_batch_header, item records: a streaming generator's items
  stream_consumed = 30,  // u64 call id, u64 limit: as stream_credit, from a consuming worker
};
inline constexpr std::uint32_t in_block_flag = 0x80000000u;

struct result_header {
  enum status_t : std::uint32_t {
    value_inline = 0,
    value_block = 1,
    error = 2,
    retryable_error = 3
  };
  std::uint64_t id;
  std::uint32_t status;
  std::uint32_t len;    // inline value or error bytes that follow
  std::uint64_t block;  // offset of the object block for value_block
  /// Worker to driver: after the value, the ids (u64) of the `refs` refs and then of the
  /// `actors` actor handles inside it, which the object keeps alive.
  std::uint32_t refs;
  std::uint32_t actors;
};
static_assert(sizeof(result_header) == 32);

// ---- errors on the wire ---------------------------------------------------------------

inline std::string demangle(const char* name) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> d(abi::__cxa_demangle(name, nullptr, nullptr, &status),
                                           std::free);
  return status == 0 && d ? std::string(d.get()) : std::string(name);
}

/// An exception as it crosses processes. `kind` is its line in CORAY_ERRORS (errors.hpp);
/// anything that is not a coray error travels as task_error, whose own fields are the text
/// fields here. `figures` are the error's numbers (its figures(), e.g. object_store_full's
/// requested, free and capacity), so they arrive as they left.
struct wire_error {
  std::uint8_t kind = 0;
  std::string type_name;  // the thrown object's demangled type
  std::string what;
  std::string function;  // the function that threw
  std::vector<std::uint64_t> figures;
};

/// A coray error class with numbers of its own: figures() gives them as a tuple that its
/// constructor takes back.
template <class E>
concept error_with_figures = requires(const E& e) {
  std::make_from_tuple<E>(e.figures());
};

/// Writes what the error E adds to its kind and message.
template <class E>
void write_error_fields(const E& e, wire_error& w) {
  if constexpr (std::is_same_v<E, task_error>) {
    w.type_name = e.type_name();
    w.what = e.remote_what();
    w.function = e.function();
  } else if constexpr (error_with_figures<E>) {
    w.figures.clear();
    std::apply([&w](auto... f) { (w.figures.push_back(static_cast<std::uint64_t>(f)), ...); },
               e.figures());
  }
}

/// The error E that `w` describes (its kind is E's).
template <class E>
std::exception_ptr rebuild_error(const wire_error& w) {
  if constexpr (std::is_same_v<E, task_error>) {
    return std::make_exception_ptr(task_error(w.type_name, w.what, w.function));
  } else if constexpr (error_with_figures<E>) {
    using figures_t = decltype(std::declval<const E&>().figures());
    constexpr std::size_t n = std::tuple_size_v<figures_t>;
    if (w.figures.size() != n)
      return std::make_exception_ptr(internal_error(fmt::format(
          "coray: a {} arrived with {} figures instead of {}", w.type_name, w.figures.size(), n)));
    figures_t f;
    std::size_t i = 0;
    std::apply(
        [&](auto&... x) { ((x = static_cast<std::decay_t<decltype(x)>>(w.figures[i++])), ...); },
        f);
    return std::make_exception_ptr(std::make_from_tuple<E>(std::move(f)));
  } else {
    return std::make_exception_ptr(E(w.what));
  }
}

/// Describes the exception in flight (call from a catch block). A coray error keeps its kind
/// (the most derived one it is an instance of), so a worker crash deep in a chain of nested
/// calls still reads as worker_crashed at the top; anything else becomes task_error. The text
/// is capped (32 KiB): an error travels inside one message.
inline wire_error describe_current_exception(std::string_view function) {
  wire_error w;
  w.kind = static_cast<std::uint8_t>(error_kind::task_error);
  w.function = function;
  const std::type_info* t = abi::__cxa_current_exception_type();
  try {
    throw;
  } catch (const error& x) {
    w.type_name = t ? demangle(t->name()) : "ray::error";
    w.what = x.what();
    // Bases come first in the list, so the last match is the most derived.
    for_each_error([&]<class E>(std::type_identity<E>, error_kind kind) {
      if (const E* e = dynamic_cast<const E*>(&x)) {
        w.kind = static_cast<std::uint8_t>(kind);
        write_error_fields(*e, w);
      }
    });
  } catch (const std::exception& x) {
    w.type_name = t ? demangle(t->name()) : "std::exception";
    w.what = x.what();
  } catch (...) {
    w.type_name = t ? demangle(t->name()) : "unknown";
    w.what = "(not a std::exception)";
  }
  if (w.what.size() > 32 * 1024) w.what.resize(32 * 1024);
  return w;
}

/// describe_current_exception for an exception held rather than in flight.
inline wire_error describe_exception(const std::exception_ptr& e, std::string_view function) {
  try {
    std::rethrow_exception(e);
  } catch (...) {
    return describe_current_exception(function);
  }
}

/// The exception `w` describes, of the coray error type its kind names.
inline std::exception_ptr to_exception(const wire_error& w) {
  std::exception_ptr e;
  for_each_error([&]<class E>(std::type_identity<E>, error_kind kind) {
    if (w.kind == static_cast<std::uint8_t>(kind)) e = rebuild_error<E>(w);
  });
  if (!e)
    e = std::make_exception_ptr(internal_error(fmt::format(
        "coray: an error of unknown kind {} arrived ({}: {})", w.kind, w.type_name, w.what)));
  return e;
}

// ---- sending and receiving ---------------------------------------------------------------

/// Sends a message of `size` bytes that `fill(std::byte*)` writes, in one slot or in
/// consecutive slots. Returns false when the mailbox has no room now. Rings the receiver's
/// doorbell if it sleeps. Precondition: size <= mb.max_message_bytes().
template <class Fill>
bool try_send(mailbox& mb, doorbell& bell, msg_kind kind, std::size_t size, Fill&& fill) {
  const std::size_t n = mailbox::slots_for(size);
  auto c = mb.try_claim(n);
  if (!c) return false;
  if (n == 1) {
    fill(c.slot->payload);
  } else {
    thread_local std::vector<std::byte> staging;
    staging.resize(size);
    fill(staging.data());
    mb.write(c, staging.data(), size);
  }
  c.slot->kind = static_cast<std::uint32_t>(kind);
  c.slot->size = static_cast<std::uint32_t>(size);
  mb.commit(c);
  bell.ring();
  return true;
}

/// Sends a message whose payload is the block `b` (for messages longer than the ring takes).
/// The receiver hands the block back to its owner when done.
inline bool try_send_block(segment& seg, mailbox& mb, doorbell& bell, msg_kind kind,
                           object_block* b) {
  std::uint64_t desc[2] = {seg.offset_of(b), b->size};
  auto c = mb.try_claim(1);
  if (!c) return false;
  std::memcpy(c.slot->payload, desc, sizeof desc);
  c.slot->kind = static_cast<std::uint32_t>(kind) | in_block_flag;
  c.slot->size = sizeof desc;
  mb.commit(c);
  bell.ring();
  return true;
}

/// A received message: its kind and contiguous payload.
struct message_view {
  msg_kind kind;
  std::span<const std::byte> payload;
  object_block* block = nullptr;  // the block the payload lies in, if any
  std::size_t slots = 1;          // to pop
};

/// The next message, if one is published. A one-slot payload is viewed in place (valid until
/// pop); a multi-slot payload is gathered into `buffer`.
inline bool peek_message(segment& seg, mailbox& mb, std::vector<std::byte>& buffer,
                         message_view& m) {
  mailbox_slot* s = mb.peek();
  if (!s) return false;
  m.kind = static_cast<msg_kind>(s->kind & ~in_block_flag);
  m.block = nullptr;
  if (s->kind & in_block_flag) {
    std::uint64_t desc[2];
    std::memcpy(desc, s->payload, sizeof desc);
    m.block = seg.at<object_block>(desc[0]);
    m.payload = {m.block->data(), static_cast<std::size_t>(desc[1])};
    m.slots = 1;
    return true;
  }
  m.slots = mailbox::slots_for(s->size);
  if (m.slots == 1) {
    m.payload = {s->payload, s->size};
  } else {
    buffer.resize(s->size);
    mb.read(buffer.data(), s->size);
    m.payload = {buffer.data(), buffer.size()};
  }
  return true;
}

}  // namespace detail
CORAY_END_NAMESPACE
