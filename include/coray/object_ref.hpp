#pragma once
/// ray::object_ref<T>: a handle to an immutable object -- a put value or a call's result --
/// that may not exist yet. Copyable and cheap; the object lives while any handle does.
/// Pass it to remote calls (they wait for it) or get it (co_await ray::get(ref)).

#include <coray/detail/runtime/foreign.hpp>
#include <coray/detail/runtime/object_state.hpp>
#include <coray/version.hpp>
#include <type_traits>
#include <utility>

CORAY_BEGIN_NAMESPACE

template <class T>
class object_ref {
 public:
  using value_type = T;

  object_ref() noexcept = default;
  explicit object_ref(detail::state_ptr s) noexcept : s_(std::move(s)) {}

  /// False for a default-constructed ref.
  bool valid() const noexcept { return static_cast<bool>(s_); }
  /// True once the object exists or its call failed: get() will not wait.
  bool is_ready() const noexcept { return s_ && s_->settled(); }

  friend bool operator==(const object_ref& a, const object_ref& b) noexcept {
    return a.s_.get() == b.s_.get();
  }

  /// Runtime internals.
  const detail::state_ptr& state() const noexcept { return s_; }

  /// A ref travels inside values (put objects, call arguments, results) as its object's id;
  /// whatever holds the value keeps the object alive, and the process that decodes it gets a
  /// handle of its own (design.md, "Refs inside objects").
  template <class Archive>
  void serialize(Archive& ar) {
    std::uint64_t id = 0;
    if constexpr (Archive::is_loading) {
      ar(id);
      s_ = detail::decode_ref(id);
    } else {
      if (s_ && Archive::is_sizing)
        detail::collect_ref(s_);
      else if (s_)
        id = s_->id;  // published while the value was sized
      ar(id);
    }
  }

 private:
  detail::state_ptr s_;
};

namespace detail {
template <class T>
struct is_object_ref : std::false_type {};
template <class T>
struct is_object_ref<object_ref<T>> : std::true_type {
  using value_type = T;
};
template <class T>
inline constexpr bool is_object_ref_v = is_object_ref<std::remove_cvref_t<T>>::value;
}  // namespace detail

CORAY_END_NAMESPACE
