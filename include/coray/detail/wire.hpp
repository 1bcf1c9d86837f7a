#pragma once
/// The messages processes exchange through their mailboxes, and how values, errors and task
/// arguments are laid out in them. Every field is fixed-width; every offset is into the
/// shared segment.

#include <coray/codec.hpp>
#include <coray/detail/futex.hpp>
#include <coray/detail/mailbox.hpp>
#include <coray/detail/segment.hpp>
#include <coray/errors.hpp>

#include <cxxabi.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <tuple>
#include <typeinfo>

CORAY_BEGIN_NAMESPACE
namespace detail {

enum class msg_kind : std::uint32_t {
  nop = 0,
  // driver -> worker
  run_task = 1,      // task_header, arg entries
  object_ready = 2,  // result_header: a nested call's result
  shutdown = 3,
  construct = 4,     // task_header (reserved: max_concurrency), arg entries: build the actor
  actor_found = 5,   // u64 request, u64 actor id, u64 type id (0: no such actor)
  // worker -> driver
  task_done = 16,  // result_header
  submit = 17,     // task_header, arg entries (a nested call)
  release = 18,    // u64 id: the worker dropped its last handle to a nested result
  actor_hold = 19,     // u64 actor id: a handle to the actor was made in the worker
  actor_release = 20,  // u64 actor id: a handle went
  actor_kill = 21,     // u64 actor id
  actor_lookup = 22,   // u64 request, then the name's bytes
};
inline constexpr std::uint32_t in_block_flag = 0x80000000u;

struct task_header {
  std::uint64_t task_id;
  std::uint64_t fn_id;
  std::uint32_t nargs;
  std::uint32_t extra;   // submit: actor ids after the args; construct: max_concurrency
  std::uint64_t target;  // submit: the actor to call, 0 for any task worker
};
static_assert(sizeof(task_header) == 32);

/// One task argument; inline bytes follow the entry, padded to 16.
struct arg_entry {
  enum tag_t : std::uint8_t { inline_value = 0, block_value = 1, dependency = 2 };
  std::uint8_t tag;
  std::uint8_t reserved[3];
  std::uint32_t len;
  std::uint64_t ref;  // block offset, or dependency index (driver) / object id (worker submit)
};
static_assert(sizeof(arg_entry) == 16);

inline constexpr std::size_t pad16(std::size_t n) noexcept { return (n + 15) & ~std::size_t{15}; }

struct result_header {
  enum status_t : std::uint32_t { value_inline = 0, value_block = 1, error = 2 };
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
  std::unique_ptr<char, void (*)(void*)> d(abi::__cxa_demangle(name, nullptr, nullptr, &status), std::free);
  return status == 0 && d ? std::string(d.get()) : std::string(name);
}

/// (kind, exception type, what, function) of an exception thrown by a callee.
using wire_error = std::tuple<std::uint8_t, std::string, std::string, std::string>;

/// Describes the exception in flight. coray's own errors keep their kind, so a worker crash
/// deep in a chain of nested calls still reads as worker_crashed at the top.
inline wire_error describe_current_exception(std::string_view function) {
  std::string fn(function);
  try {
    throw;
  } catch (const task_error& e) {
    return {std::uint8_t(error_kind::task_error), e.type_name(), e.remote_what(), e.function()};
  } catch (const worker_crashed& e) {
    return {std::uint8_t(error_kind::worker_crashed), "", e.what(), fn};
  } catch (const actor_died& e) {
    return {std::uint8_t(error_kind::actor_died), "", e.what(), fn};
  } catch (const codec_error& e) {
    return {std::uint8_t(error_kind::codec_error), "", e.what(), fn};
  } catch (const cancelled& e) {
    return {std::uint8_t(error_kind::cancelled), "", e.what(), fn};
  } catch (const get_timeout& e) {
    return {std::uint8_t(error_kind::get_timeout), "", e.what(), fn};
  } catch (const std::exception& e) {
    auto* t = abi::__cxa_current_exception_type();
    return {std::uint8_t(error_kind::task_error), t ? demangle(t->name()) : "std::exception", e.what(), fn};
  } catch (...) {
    auto* t = abi::__cxa_current_exception_type();
    return {std::uint8_t(error_kind::task_error), t ? demangle(t->name()) : "unknown", "(not a std::exception)", fn};
  }
}

inline std::exception_ptr to_exception(const wire_error& w) {
  auto& [kind, type, what, fn] = w;
  switch (static_cast<error_kind>(kind)) {
    case error_kind::worker_crashed: return std::make_exception_ptr(worker_crashed(what));
    case error_kind::actor_died: return std::make_exception_ptr(actor_died(what));
    case error_kind::codec_error: return std::make_exception_ptr(codec_error(what));
    case error_kind::cancelled: return std::make_exception_ptr(cancelled(what));
    case error_kind::get_timeout: return std::make_exception_ptr(get_timeout(what));
    case error_kind::object_store_full:
    case error_kind::runtime_error: return std::make_exception_ptr(ray::runtime_error(what));
    case error_kind::task_error: break;
  }
  return std::make_exception_ptr(task_error(type, what, fn));
}

// ---- sending and receiving ---------------------------------------------------------------

/// A received message: its kind and payload, wherever the payload lies.
struct message_view {
  msg_kind kind;
  std::span<const std::byte> payload;
};

/// Tries to send a message of `size` bytes that `fill(std::byte*)` writes. Messages longer than
/// a slot go into a block of the segment that the receiver frees. Returns false when the
/// mailbox is full. Rings the receiver's doorbell if it sleeps.
template <class Fill>
bool try_send(segment& seg, mailbox& mb, doorbell& bell, msg_kind kind, std::size_t size, Fill&& fill) {
  auto c = mb.try_claim();
  if (!c) return false;
  mailbox_slot& s = *c.slot;
  if (size <= mailbox_slot::payload_bytes) {
    fill(s.payload);
    s.kind = static_cast<std::uint32_t>(kind);
    s.size = static_cast<std::uint32_t>(size);
  } else {
    void* b = nullptr;
    try {
      b = seg.allocate(size);
    } catch (...) {
      s.kind = static_cast<std::uint32_t>(msg_kind::nop);
      s.size = 0;
      mb.commit(c);
      throw;
    }
    fill(static_cast<std::byte*>(b));
    std::uint64_t desc[2] = {seg.offset_of(b), size};
    std::memcpy(s.payload, desc, sizeof desc);
    s.kind = static_cast<std::uint32_t>(kind) | in_block_flag;
    s.size = sizeof desc;
  }
  mb.commit(c);
  bell.ring();
  return true;
}

/// The payload of a peeked slot. Call finish_message() after handling it.
inline message_view view_message(segment& seg, const mailbox_slot& s) noexcept {
  if (s.kind & in_block_flag) {
    std::uint64_t desc[2];
    std::memcpy(desc, s.payload, sizeof desc);
    return {static_cast<msg_kind>(s.kind & ~in_block_flag), {seg.at(desc[0]), static_cast<std::size_t>(desc[1])}};
  }
  return {static_cast<msg_kind>(s.kind), {s.payload, s.size}};
}

inline void finish_message(segment& seg, mailbox& mb, const mailbox_slot& s) noexcept {
  if (s.kind & in_block_flag) {
    std::uint64_t desc[2];
    std::memcpy(desc, s.payload, sizeof desc);
    seg.deallocate(seg.at(desc[0]));
  }
  mb.pop();
}

}  // namespace detail
CORAY_END_NAMESPACE
