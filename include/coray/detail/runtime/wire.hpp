#pragma once
/// The messages processes exchange through their mailboxes, and how values, errors and task
/// arguments are laid out in them. Every field is fixed-width; every offset is into the
/// shared segment.

#include <cxxabi.h>

#include <coray/codec.hpp>
#include <coray/detail/shm/futex.hpp>
#include <coray/detail/shm/mailbox.hpp>
#include <coray/detail/shm/segment.hpp>
#include <coray/errors.hpp>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <tuple>
#include <typeinfo>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

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
  // worker -> driver
  task_done = 16,      // result_header
  submit = 17,         // task_header, arg entries (a nested call)
  release = 18,        // u64 id: the worker dropped its last handle to a nested result
  actor_hold = 19,     // u64 actor id: a handle to the actor was made in the worker
  actor_release = 20,  // u64 actor id: a handle went
  actor_kill = 21,     // u64 actor id
  actor_lookup = 22,   // u64 request, then the name's bytes
  block_request = 23,  // u64 request, u64 size: a new object block for this process
  block_release = 24,  // u64 block offset: this process drops one reference
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
  std::uint64_t reserved;
};
static_assert(sizeof(result_header) == 32);

// ---- errors on the wire ---------------------------------------------------------------

enum class error_kind : std::uint8_t {
  task_error = 0,
  worker_crashed,
  actor_died,
  object_store_full,
  get_timeout,
  codec_error,
  cancelled,
  runtime_error
};

inline std::string demangle(const char* name) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> d(abi::__cxa_demangle(name, nullptr, nullptr, &status),
                                           std::free);
  return status == 0 && d ? std::string(d.get()) : std::string(name);
}

/// (kind, exception type, what, function) of an exception thrown by a callee.
using wire_error = std::tuple<std::uint8_t, std::string, std::string, std::string>;

/// Describes the exception in flight. coray's own errors keep their kind, so a worker crash
/// deep in a chain of nested calls still reads as worker_crashed at the top. The text is
/// capped (32 KiB): an error travels inside one message.
inline wire_error describe_current_exception(std::string_view function) {
  std::string fn(function);
  wire_error e;
  try {
    throw;
  } catch (const task_error& x) {
    e = {std::uint8_t(error_kind::task_error), x.type_name(), x.remote_what(), x.function()};
  } catch (const worker_crashed& x) {
    e = {std::uint8_t(error_kind::worker_crashed), "", x.what(), fn};
  } catch (const actor_died& x) {
    e = {std::uint8_t(error_kind::actor_died), "", x.what(), fn};
  } catch (const object_store_full& x) {
    e = {std::uint8_t(error_kind::object_store_full),
         std::to_string(x.requested()) + " " + std::to_string(x.free_bytes()) + " " +
             std::to_string(x.capacity()),
         x.what(), fn};
  } catch (const codec_error& x) {
    e = {std::uint8_t(error_kind::codec_error), "", x.what(), fn};
  } catch (const cancelled& x) {
    e = {std::uint8_t(error_kind::cancelled), "", x.what(), fn};
  } catch (const get_timeout& x) {
    e = {std::uint8_t(error_kind::get_timeout), "", x.what(), fn};
  } catch (const std::exception& x) {
    auto* t = abi::__cxa_current_exception_type();
    e = {std::uint8_t(error_kind::task_error), t ? demangle(t->name()) : "std::exception", x.what(),
         fn};
  } catch (...) {
    auto* t = abi::__cxa_current_exception_type();
    e = {std::uint8_t(error_kind::task_error), t ? demangle(t->name()) : "unknown",
         "(not a std::exception)", fn};
  }
  if (std::get<2>(e).size() > 32 * 1024) std::get<2>(e).resize(32 * 1024);
  return e;
}

inline std::exception_ptr to_exception(const wire_error& w) {
  auto& [kind, type, what, fn] = w;
  switch (static_cast<error_kind>(kind)) {
    case error_kind::worker_crashed:
      return std::make_exception_ptr(worker_crashed(what));
    case error_kind::actor_died:
      return std::make_exception_ptr(actor_died(what));
    case error_kind::codec_error:
      return std::make_exception_ptr(codec_error(what));
    case error_kind::cancelled:
      return std::make_exception_ptr(cancelled(what));
    case error_kind::get_timeout:
      return std::make_exception_ptr(get_timeout(what));
    case error_kind::object_store_full: {
      unsigned long long requested = 0, free_bytes = 0, capacity = 0;
      std::sscanf(type.c_str(), "%llu %llu %llu", &requested, &free_bytes, &capacity);
      return std::make_exception_ptr(object_store_full(requested, free_bytes, capacity));
    }
    case error_kind::runtime_error:
      return std::make_exception_ptr(ray::runtime_error(what));
    case error_kind::task_error:
      break;
  }
  return std::make_exception_ptr(task_error(type, what, fn));
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
