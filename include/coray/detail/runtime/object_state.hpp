#pragma once
/// A process's view of one object: pending, ready (bytes inline, or a block in the store
/// holding one reference) or failed. object_ref<T> handles count it; awaiting coroutines,
/// dependent tasks and wait operations register as waiters.

#include <atomic>
#include <coray/detail/runtime/recycled.hpp>
#include <coray/detail/shm/segment.hpp>
#include <coray/errors.hpp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <span>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

struct object_state;
class state_ptr;
struct object_contents;
/// What a call or an object holds besides bytes (object_contents), or null: most values hold
/// nothing, and a null pointer costs them one word.
using held_contents = std::unique_ptr<object_contents>;

/// Something to notify when an object settles. `fn(ctx, state)` runs on the loop thread.
struct waiter {
  void (*fn)(void* ctx, object_state& s);
  void* ctx;
};

void release_state(object_state* s) noexcept;  // defined with the process (process.hpp)

/// Brings a spilled object back into the store (the driver's; defined with the process).
void restore_state(object_state& s);

/// An object's encoded value kept in the process rather than in the store: up to 32 bytes in
/// place (most results: an int, a double, a short string), more on the heap; 16-byte aligned
/// either way, as the codec reads raw values in place.
class inline_value {
 public:
  inline_value() noexcept = default;
  inline_value(const inline_value&) = delete;
  inline_value& operator=(const inline_value&) = delete;
  ~inline_value() { release(); }

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  std::byte* data() noexcept { return size_ <= in_place ? here_ : heap_; }
  const std::byte* data() const noexcept { return size_ <= in_place ? here_ : heap_; }
  /// Room for `n` bytes, their contents unspecified (what was there is not kept).
  void resize(std::size_t n) {
    release();
    if (n > in_place)
      heap_ = static_cast<std::byte*>(::operator new (n, std::align_val_t{alignment}));
    size_ = n;
  }
  void assign(std::span<const std::byte> b) {
    resize(b.size());
    if (!b.empty()) std::memcpy(data(), b.data(), b.size());
  }

 private:
  static constexpr std::size_t in_place = 32, alignment = 16;
  void release() noexcept {
    if (size_ > in_place) ::operator delete (heap_, std::align_val_t{alignment});
    size_ = 0;
  }
  std::size_t size_ = 0;
  union {
    alignas(alignment) std::byte here_[in_place];
    std::byte* heap_;
  };
};

struct object_state : recycled<object_state, 4096> {
  enum class status : std::uint8_t { pending, ready, failed };

  // What a get of a value in place reads (a handle taken and dropped, the runtime checked,
  // the status and the value) is the first 64 bytes: a get of many refs touches a line or
  // two of each state, not three.
  std::atomic<std::uint32_t> handles{1};
  /// Written on the loop thread (or by the thread building a put, before it is shared);
  /// read anywhere: a thread that sees it settled sees the value, or error, set before.
  std::atomic<status> st{status::pending};
  /// Its id is in the driver's directory of objects refs may name (driver only).
  bool published = false;
  std::uint32_t epoch = 0;        // the runtime that made it; its block dies with that runtime
  std::uint32_t pins = 0;         // readers of the block in place (views, calls in flight)
  inline_value bytes;             // the value, when not in the store (offsets 16 to 64)
  object_block* block = nullptr;  // value in the store; this state holds one reference
  std::uint64_t id = 0;           // nonzero for results the driver tracks by id, and refs by id
  std::vector<waiter> waiters;

  bool settled() const noexcept { return st.load(std::memory_order_acquire) != status::pending; }
  /// A failed object's error (null otherwise).
  const std::exception_ptr& error() const noexcept { return rare_ ? rare_->error : no_error(); }
  /// The objects and actors whose refs and handles are inside this one's value, kept alive
  /// as long as it is; null for most values.
  object_contents* contained() const noexcept { return rare_ ? rare_->contained.get() : nullptr; }
  /// This object holds `c` (null: nothing) from now on, for as long as it lives.
  void set_contained(held_contents c) {
    if (c || rare_) more().contained = std::move(c);
  }
  bool spilled() const noexcept { return rare_ && rare_->spill_offset >= 0; }
  /// Where the value lies in the spill file, and how long it is; -1 and 0 if not spilled.
  std::int64_t spill_offset() const noexcept { return rare_ ? rare_->spill_offset : -1; }
  std::uint64_t spill_size() const noexcept { return rare_ ? rare_->spill_size : 0; }
  void set_spilled(std::int64_t offset, std::uint64_t size) {
    more().spill_offset = offset;
    more().spill_size = size;
  }
  void clear_spilled() noexcept {
    if (rare_) rare_->spill_offset = -1;
  }
  /// The encoded value, wherever it lies (a spilled one is brought back first). Precondition:
  /// ready. Throws object_store_full if a spilled value does not fit back.
  [[gnu::always_inline]] std::span<const std::byte> value_bytes() const {
    // A value in place is never in the store nor spilled: read it without their fields.
    if (!bytes.empty()) return {bytes.data(), bytes.size()};
    if (spilled()) [[unlikely]]
      restore_state(const_cast<object_state&>(*this));
    if (block) return {block->data(), static_cast<std::size_t>(block->size)};
    return {bytes.data(), bytes.size()};
  }
  void rethrow_if_failed() const {
    if (st.load(std::memory_order_acquire) == status::failed) [[unlikely]]
      std::rethrow_exception(error());
  }
  /// Settles the object and notifies every waiter once. Loop thread.
  void settle(status s) {
    st.store(s, std::memory_order_release);
    auto ws = std::move(waiters);
    waiters.clear();
    for (auto& w : ws) w.fn(w.ctx, *this);
  }
  void set_inline(std::span<const std::byte> b) {
    bytes.assign(b);
    settle(status::ready);
  }
  void set_block(object_block* b) {
    block = b;
    settle(status::ready);
  }
  void set_error(std::exception_ptr e) {
    more().error = std::move(e);
    settle(status::failed);
  }

 private:
  /// What few objects need: an error, a spilled value's place, refs and handles inside the
  /// value. Apart, so that the state of a pending or small result is 112 bytes, not 144.
  struct rare {
    std::exception_ptr error;
    std::int64_t spill_offset = -1;
    std::uint64_t spill_size = 0;
    held_contents contained;
  };
  rare& more() {
    if (!rare_) rare_ = std::make_unique<rare>();
    return *rare_;
  }
  static const std::exception_ptr& no_error() noexcept {
    static const std::exception_ptr none;
    return none;
  }
  std::unique_ptr<rare> rare_;
};

/// An intrusive owning pointer to an object_state (one handle).
class state_ptr {
 public:
  state_ptr() noexcept = default;
  /// Adopts a handle already counted (a fresh state starts with one).
  static state_ptr adopt(object_state* s) noexcept {
    state_ptr p;
    p.s_ = s;
    return p;
  }
  static state_ptr share(object_state* s) noexcept {
    if (s) s->handles.fetch_add(1, std::memory_order_relaxed);
    return adopt(s);
  }
  state_ptr(const state_ptr& o) noexcept : s_(o.s_) {
    if (s_) s_->handles.fetch_add(1, std::memory_order_relaxed);
  }
  state_ptr(state_ptr&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  state_ptr& operator=(state_ptr o) noexcept {
    std::swap(s_, o.s_);
    return *this;
  }
  ~state_ptr() {
    if (s_ && s_->handles.fetch_sub(1, std::memory_order_acq_rel) == 1) release_state(s_);
  }
  object_state* get() const noexcept { return s_; }
  object_state* operator->() const noexcept { return s_; }
  object_state& operator*() const noexcept { return *s_; }
  explicit operator bool() const noexcept { return s_ != nullptr; }

 private:
  object_state* s_ = nullptr;
};

/// Where the refs met while sizing a value are collected (see object_ref<T>::serialize): the
/// put object, call or result that will hold the value keeps them alive, and they are
/// published (made known to the driver by id) before the value is written.
inline std::vector<state_ptr>*& ref_collector() noexcept {
  thread_local std::vector<state_ptr>* c = nullptr;
  return c;
}
/// Called by object_ref<T>::serialize while a value is sized.
inline void collect_ref(const state_ptr& s) {
  if (!ref_collector())
    throw usage_error(
        "coray: an object_ref is encoded only inside a put object, a call argument or a result");
  ref_collector()->push_back(s);
}
/// What a value holds besides bytes: the refs inside it (their objects) and the actor
/// handles (their ids, each counted once at the driver while the value lives).
struct object_contents {
  std::vector<state_ptr> refs;
  std::vector<std::uint64_t> actors;
  bool empty() const noexcept { return refs.empty() && actors.empty(); }
};
inline object_contents& contents_of(held_contents& c) {
  if (!c) c = std::make_unique<object_contents>();
  return *c;
}
/// The actor ids and the refs `c` holds; empty when it holds none (null).
inline std::span<const std::uint64_t> held_actors(const object_contents* c) noexcept {
  return c ? std::span<const std::uint64_t>(c->actors) : std::span<const std::uint64_t>();
}
inline std::span<const state_ptr> held_refs(const object_contents* c) noexcept {
  return c ? std::span<const state_ptr>(c->refs) : std::span<const state_ptr>();
}
inline std::span<const std::uint64_t> held_actors(const held_contents& c) noexcept {
  return held_actors(c.get());
}
inline std::span<const state_ptr> held_refs(const held_contents& c) noexcept {
  return held_refs(c.get());
}

/// Where actor handles met while sizing a value are collected (see actor<T>::serialize), and
/// shared blocks while writing call arguments (collect_pinned_block, tagged).
inline std::vector<std::uint64_t>*& actor_collector() noexcept {
  thread_local std::vector<std::uint64_t>* c = nullptr;
  return c;
}

/// Collects into `into` the refs and actor handles met while sizing values, for its lifetime.
class collecting_refs {
 public:
  explicit collecting_refs(object_contents& into) noexcept
      : saved_refs_(std::exchange(ref_collector(), &into.refs)),
        saved_actors_(std::exchange(actor_collector(), &into.actors)) {}
  ~collecting_refs() {
    ref_collector() = saved_refs_;
    actor_collector() = saved_actors_;
  }
  collecting_refs(const collecting_refs&) = delete;
  collecting_refs& operator=(const collecting_refs&) = delete;

 private:
  std::vector<state_ptr>* saved_refs_;
  std::vector<std::uint64_t>* saved_actors_;
};

/// The ref an id read from a value names, a handle of this process (object_ref<T>::serialize;
/// defined with the process's other threads' entry, foreign.hpp).
inline state_ptr decode_ref(std::uint64_t id);

}  // namespace detail
CORAY_END_NAMESPACE
