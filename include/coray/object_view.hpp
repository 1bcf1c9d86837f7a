#pragma once
/// Objects in place: ray::get_view reads an object where it lies (shared memory or the
/// driver's heap) without copying it, and ray::put_buffer builds an array where it will
/// live, in the object store, to seal into an object.
///
///   auto view = co_await ray::get_view(img);            // a span over the stored doubles
///   auto buf = ray::put_buffer<double>(3000 * 3000);    // filled in place, then
///   ray::object_ref<std::vector<double>> image = std::move(buf).seal();

#include <fmt/format.h>

#include <coray/codec.hpp>
#include <coray/detail/runtime/foreign.hpp>
#include <coray/detail/runtime/process.hpp>
#include <coray/detail/runtime/state_awaiter.hpp>
#include <coray/detail/runtime/stored_value.hpp>
#include <coray/errors.hpp>
#include <coray/object_ref.hpp>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE

namespace detail {

/// The view ray::get_view gives of an object of type T.
template <class T>
struct view_of {
  static_assert(sizeof(T) == 0,
                "ray::get_view: the object must be a std::vector or std::array of plain numbers or "
                "trivially copyable structs, or a std::string");
};
template <class E, class A>
struct view_of<std::vector<E, A>> {
  using type = std::span<const E>;
};
template <>
struct view_of<std::string> {
  using type = std::string_view;
};

}  // namespace detail

/// A read-only view of an object where it lies (shared memory or the driver's heap): a
/// span for a vector, a string_view for a string. Holds the object alive while it lives.
template <class T>
class object_view {
 public:
  using view_type = typename detail::view_of<T>::type;
  object_view(detail::state_ptr s) : s_(std::move(s)), v_(decode<view_type>(s_->value_bytes())) {
    ++s_->pins;
  }
  object_view(const object_view& o) : s_(o.s_), v_(o.v_) { ++s_->pins; }
  object_view& operator=(const object_view&) = delete;
  ~object_view() { --s_->pins; }
  const view_type& operator*() const noexcept { return v_; }
  const view_type* operator->() const noexcept { return &v_; }
  auto begin() const noexcept { return v_.begin(); }
  auto end() const noexcept { return v_.end(); }
  auto data() const noexcept { return v_.data(); }
  std::size_t size() const noexcept { return v_.size(); }
  decltype(auto) operator[](std::size_t i) const noexcept { return v_[i]; }

 private:
  detail::state_ptr s_;
  view_type v_;
};

template <class T>
class [[nodiscard]] get_view_awaitable : public detail::state_awaiter {
 public:
  using state_awaiter::state_awaiter;
  object_view<T> await_resume() {
    s_->rethrow_if_failed();
    return object_view<T>(s_);
  }
  /// Blocking form, on the runtime's thread only (a view pins the object for that thread).
  operator object_view<T>() && {
    if (detail::needs_handoff()) detail::process::require("ray::get_view");
    detail::block_until_settled(*s_);
    return await_resume();
  }
  object_view<T> get() && { return static_cast<object_view<T>>(std::move(*this)); }
};

/// A view of `ref`'s object in place: getting a 72 MB array costs what getting an int does.
template <class T>
get_view_awaitable<T> get_view(const object_ref<T>& ref) {
  (void)sizeof(typename detail::view_of<T>::type);
  detail::require_usable_ref(ref.state(), "ray::get_view");
  return get_view_awaitable<T>(ref.state());
}

/// An array being built where it will live, in the object store (Plasma's create, then
/// seal): fill it through data() / span() / operator[], then seal() it into an immutable
/// object that tasks read in place. It saves ray::put's copy of an array made only to be put.
/// Move-only; one dropped unsealed gives its memory back.
///
///   auto buf = ray::put_buffer<double>(3000 * 3000);
///   std::fill(buf.begin(), buf.end(), 0.0);
///   ray::object_ref<std::vector<double>> image = std::move(buf).seal();
template <class E>
class object_buffer {
 public:
  object_buffer(object_buffer&& o) noexcept
      : s_(std::move(o.s_)),
        data_(std::exchange(o.data_, nullptr)),
        size_(std::exchange(o.size_, 0)) {}
  object_buffer& operator=(object_buffer&& o) noexcept {
    s_ = std::move(o.s_);  // an unsealed buffer this one held gives its memory back
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    return *this;
  }

  E* data() noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  std::span<E> span() noexcept { return {data_, size_}; }
  E* begin() noexcept { return data_; }
  E* end() noexcept { return data_ + size_; }
  E& operator[](std::size_t i) noexcept { return data_[i]; }

  /// The finished object; the buffer is empty afterwards.
  object_ref<std::vector<E>> seal() && {
    if (!s_)
      throw usage_error("ray::object_buffer::seal: the buffer was already sealed or moved from");
    s_->st.store(detail::object_state::status::ready, std::memory_order_release);
    data_ = nullptr;
    size_ = 0;
    return object_ref<std::vector<E>>(std::move(s_));
  }

 private:
  template <class T>
  friend object_buffer<T> put_buffer(std::size_t n);
  object_buffer(detail::state_ptr s, E* data, std::size_t n)
      : s_(std::move(s)), data_(data), size_(n) {}
  detail::state_ptr s_;
  E* data_ = nullptr;
  std::size_t size_ = 0;
};

/// A buffer of `n` default-initialised (for numbers: uninitialised) elements in the object
/// store, to fill and seal(). E must be a plain number or trivially copyable struct, as for
/// ray::get_view.
template <class E>
object_buffer<E> put_buffer(std::size_t n) {
  static_assert(
      detail::is_raw_copyable_v<E> && !std::is_same_v<E, bool>,
      "ray::put_buffer<E>: E must be a plain number or a trivially copyable struct of them");
  std::optional<detail::foreign_entry> entry;
  if (detail::needs_handoff()) entry.emplace("ray::put_buffer");
  auto& p = entry ? entry->get() : detail::process::require("ray::put_buffer");
  // The encoding of a std::vector<E>: its count, padding to E's wire alignment, the elements.
  const std::size_t offset =
      sizeof(std::uint64_t) + detail::padding_for(sizeof(std::uint64_t), detail::wire_align_v<E>);
  if (n > (std::numeric_limits<std::size_t>::max() - offset) / sizeof(E))
    throw usage_error(fmt::format("ray::put_buffer: {} elements do not fit in memory", n));
  const std::size_t size = offset + n * sizeof(E);
  auto s = detail::make_state(p);
  std::byte* out = detail::reserve_value(p, *s, size).data();  // pending until sealed
  const std::uint64_t count = n;
  std::memcpy(out, &count, sizeof count);
  std::memset(out + sizeof count, 0, offset - sizeof count);
  return object_buffer<E>(std::move(s), reinterpret_cast<E*>(out + offset), n);
}

CORAY_END_NAMESPACE
