#pragma once
/// ray::shared_value<T>: one value of a trivially copyable T in the runtime's shared memory,
/// read and written in place by every process that holds a handle -- multiprocessing.Value,
/// with atomic operations instead of a lock where T allows them.
///
///   int bump(ray::shared_value<int> hits, int n) {
///     for (int i = 0; i < n; ++i) hits.fetch_add(1);   // atomic across processes
///     return n;
///   }
///   ray::shared_value<int> hits(0);
///   ray::get(ray::task<bump>.remote(hits, 1000)).get();
///   int total = hits.load();                            // 1000
///
/// A handle is a value: copy it, pass it to tasks and actors (alone or inside containers),
/// create it in any process. The value lives while a handle to it exists in any process.

#include <atomic>
#include <coray/detail/mp/shared_block.hpp>
#include <coray/detail/shm/robust_mutex.hpp>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

CORAY_BEGIN_NAMESPACE

template <class T>
class shared_value {
  static_assert(
      std::is_trivially_copyable_v<T> && !std::is_const_v<T> && !std::is_volatile_v<T>,
      "ray::shared_value<T>: T must be a trivially copyable, non-const type (a number, an "
      "enum, or a struct or array of them), as multiprocessing.Value takes ctypes");

 public:
  /// True when load/store/fetch_* are single atomic instructions; otherwise each operation
  /// takes a robust process-shared lock kept next to the value.
  static constexpr bool is_always_lock_free =
      std::atomic_ref<T>::is_always_lock_free && std::atomic_ref<T>::required_alignment <= 16;

  /// A new shared T{}. Its memory is taken at first use (any operation, a copy, or passing
  /// it to a call), so that decoding a handle never allocates one to throw away.
  shared_value() noexcept = default;
  /// A new shared value holding `initial`. Any process of a runtime. Throws object_store_full.
  explicit shared_value(const T& initial) { materialize(initial); }
  /// Copies share the value.
  shared_value(const shared_value& o) : block_((o.c(), o.block_)) {}
  shared_value(shared_value&&) noexcept = default;
  shared_value& operator=(const shared_value& o) {
    o.c();
    block_ = o.block_;
    return *this;
  }
  shared_value& operator=(shared_value&&) noexcept = default;

  T load(std::memory_order order = std::memory_order_seq_cst) const {
    if constexpr (is_always_lock_free) {
      return atomic(order).load(order);
    } else {
      guard g(*c());
      return c()->value;
    }
  }
  void store(T v, std::memory_order order = std::memory_order_seq_cst) {
    if constexpr (is_always_lock_free) {
      atomic(order).store(v, order);
    } else {
      guard g(*c());
      c()->value = v;
    }
  }
  /// Replaces the value; returns the previous one.
  T exchange(T v, std::memory_order order = std::memory_order_seq_cst) {
    if constexpr (is_always_lock_free) {
      return atomic(order).exchange(v, order);
    } else {
      guard g(*c());
      return std::exchange(c()->value, v);
    }
  }
  /// If the value equals `expected` (bytewise), replaces it by `desired` and returns true;
  /// otherwise loads it into `expected` and returns false.
  bool compare_exchange_strong(T& expected, T desired,
                               std::memory_order order = std::memory_order_seq_cst) {
    if constexpr (is_always_lock_free) {
      return atomic(order).compare_exchange_strong(expected, desired, order);
    } else {
      guard g(*c());
      if (std::memcmp(&c()->value, &expected, sizeof(T)) == 0) {
        c()->value = desired;
        return true;
      }
      expected = c()->value;
      return false;
    }
  }
  bool compare_exchange_weak(T& expected, T desired,
                             std::memory_order order = std::memory_order_seq_cst) {
    if constexpr (is_always_lock_free)
      return atomic(order).compare_exchange_weak(expected, desired, order);
    else
      return compare_exchange_strong(expected, desired, order);
  }
  /// Atomically replaces the value by f(value) and returns the new value. `f` may run more
  /// than once (a compare-exchange loop), so it should only compute.
  template <class F>
  T update(F&& f) {
    if constexpr (is_always_lock_free) {
      T old = load(std::memory_order_relaxed);
      T next = f(old);
      while (!compare_exchange_weak(old, next)) next = f(old);
      return next;
    } else {
      guard g(*c());
      c()->value = f(c()->value);
      return c()->value;
    }
  }

  /// Atomic arithmetic; each returns the previous value.
  T fetch_add(T d, std::memory_order order = std::memory_order_seq_cst) requires(
      std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
    return atomic(order).fetch_add(d, order);
  }
  T fetch_sub(T d, std::memory_order order = std::memory_order_seq_cst) requires(
      std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
    return atomic(order).fetch_sub(d, order);
  }
  T fetch_and(T d, std::memory_order order = std::memory_order_seq_cst) requires(
      std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    return atomic(order).fetch_and(d, order);
  }
  T fetch_or(T d, std::memory_order order = std::memory_order_seq_cst) requires(
      std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    return atomic(order).fetch_or(d, order);
  }
  T fetch_xor(T d, std::memory_order order = std::memory_order_seq_cst) requires(
      std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    return atomic(order).fetch_xor(d, order);
  }

  /// Handles travel as call arguments: the receiving process reaches the same value.
  template <class Archive>
  void serialize(Archive& ar) {
    if constexpr (!Archive::is_loading) c();
    ar(block_);
    if constexpr (Archive::is_loading) {
      if (block_ && block_.size() != sizeof(cell))
        throw codec_error("coray: a shared_value handle of another type");
    }
  }

 private:
  struct lock_free_cell {
    T value;
  };
  struct locked_cell {
    detail::robust_mutex lock;
    T value;
  };
  using cell = std::conditional_t<is_always_lock_free, lock_free_cell, locked_cell>;
  struct guard {
    explicit guard(cell& c) : c_(c) { c_.lock.lock(); }
    ~guard() { c_.lock.unlock(); }
    cell& c_;
  };

  cell* c() const {
    if (!block_) materialize(T{});
    return std::launder(reinterpret_cast<cell*>(block_.data()));
  }
  void materialize(const T& initial) const {
    block_ = detail::shared_block::allocate(sizeof(cell));
    auto* c = new (block_.data()) cell{};
    c->value = initial;
  }
  std::atomic_ref<T> atomic(std::memory_order) const { return std::atomic_ref<T>(c()->value); }

  mutable detail::shared_block block_;
};

CORAY_END_NAMESPACE
