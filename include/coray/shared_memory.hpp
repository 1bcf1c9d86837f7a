#pragma once
/// Raw shared memory that every process of the runtime reads and writes in place:
/// ray::shared_buffer (multiprocessing.shared_memory.SharedMemory: bytes of a given size) and
/// ray::shared_array<T> (multiprocessing.Array: a fixed number of T, with a lock beside it).
///
///   void scale(ray::shared_array<double> xs, std::size_t begin, std::size_t end) {
///     for (double& x : xs.span().subspan(begin, end - begin)) x *= 2;
///   }
///   ray::shared_array<double> xs{1.0, 2.0, 3.0, 4.0};
///   ray::get(ray::task<scale>.remote(xs, 0, 2)).get();   // xs is now 2, 4, 3, 4
///
/// Both are handles, as ray::shared_value is: copy them, pass them to tasks and actors,
/// create them in any process; the memory lives while a handle exists in any process and
/// then returns to the object store. There is no name in /dev/shm to unlink: the memory is a
/// block of the runtime's segment, reached through the handle. Accesses are plain loads and
/// stores: order them with the array's lock, a ray::mutex, std::atomic_ref or the
/// synchronisation primitives of synchronize.hpp.

#include <algorithm>
#include <coray/detail/mp/shared_block.hpp>
#include <coray/mutex.hpp>
#include <cstddef>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <type_traits>

CORAY_BEGIN_NAMESPACE

/// multiprocessing.shared_memory.SharedMemory: `size()` bytes, zero-filled at creation.
class shared_buffer {
 public:
  /// An empty handle (size 0), what decoding fills.
  shared_buffer() noexcept = default;
  /// `bytes` new zero bytes. Throws usage_error for 0 (as Python's ValueError), and
  /// object_store_full.
  explicit shared_buffer(std::size_t bytes) {
    if (bytes == 0) throw usage_error("coray: a ray::shared_buffer needs a size above 0");
    block_ = detail::shared_block::allocate(bytes);
    std::memset(block_.data(), 0, bytes);
  }

  std::size_t size() const noexcept { return block_ ? block_.size() : 0; }
  /// The bytes, 16-byte aligned (nullptr when empty).
  std::byte* data() const noexcept { return block_ ? block_.data() : nullptr; }
  /// The bytes (Python's .buf).
  std::span<std::byte> bytes() const noexcept { return {data(), size()}; }
  /// The bytes as an array of trivially copyable T (alignment at most 16); a trailing part
  /// shorter than a T is left out.
  template <class T>
  std::span<T> as() const noexcept {
    static_assert(std::is_trivially_copyable_v<T> && alignof(T) <= 16,
                  "ray::shared_buffer::as<T>: T must be trivially copyable, aligned to 16 at most");
    return {reinterpret_cast<T*>(data()), size() / sizeof(T)};
  }

  /// Handles travel as call arguments: the receiving process reaches the same bytes.
  template <class Archive>
  void serialize(Archive& ar) {
    ar(block_);
  }

 private:
  detail::shared_block block_;
};

/// multiprocessing.Array: `size()` values of T in shared memory, value-initialised unless
/// given. With `lock` (the default, as Python's) a ray::mutex comes with the array,
/// get_lock(), to make compound updates exact; each element access itself takes no lock.
template <class T>
class shared_array {
  static_assert(std::is_trivially_copyable_v<T> && !std::is_const_v<T> && !std::is_volatile_v<T> &&
                    alignof(T) <= 16,
                "ray::shared_array<T>: T must be a trivially copyable, non-const type aligned "
                "to 16 bytes at most, as multiprocessing.Array takes ctypes");

 public:
  using value_type = T;
  using iterator = T*;

  /// An empty handle (size 0, no lock), what decoding fills.
  shared_array() noexcept = default;
  /// `n` values T{}. Throws object_store_full.
  explicit shared_array(std::size_t n, bool lock = true) : shared_array(n, lock, nullptr) {}
  /// A copy of `values`.
  explicit shared_array(std::span<const T> values, bool lock = true)
      : shared_array(values.size(), lock, values.data()) {}
  shared_array(std::initializer_list<T> values, bool lock = true)
      : shared_array(values.size(), lock, values.begin()) {}

  std::size_t size() const noexcept { return buf_.size() / sizeof(T); }
  bool empty() const noexcept { return size() == 0; }
  T* data() const noexcept { return reinterpret_cast<T*>(buf_.data()); }
  std::span<T> span() const noexcept { return {data(), size()}; }
  T& operator[](std::size_t i) const noexcept { return data()[i]; }
  T* begin() const noexcept { return data(); }
  T* end() const noexcept { return data() + size(); }

  /// Whether the array was made with a lock.
  bool has_lock() const noexcept { return lock_.has_value(); }
  /// The array's lock (Python's get_lock()). Throws usage_error if it was made without.
  mutex& get_lock() {
    if (!lock_) throw usage_error("coray: this ray::shared_array was made without a lock");
    return *lock_;
  }

  /// Handles travel as call arguments: the receiving process reaches the same values.
  template <class Archive>
  void serialize(Archive& ar) {
    ar(buf_, lock_);
    if constexpr (Archive::is_loading) {
      if (buf_.size() % sizeof(T) != 0)
        throw codec_error("coray: a ray::shared_array handle of another element type");
    }
  }

 private:
  shared_array(std::size_t n, bool lock, const T* values) {
    if (lock) lock_.emplace();
    if (n == 0) return;
    buf_ = shared_buffer(n * sizeof(T));
    if (values != nullptr)
      std::memcpy(buf_.data(), values, n * sizeof(T));
    else
      std::uninitialized_value_construct_n(data(), n);
  }

  shared_buffer buf_;
  std::optional<mutex> lock_;
};

CORAY_END_NAMESPACE
