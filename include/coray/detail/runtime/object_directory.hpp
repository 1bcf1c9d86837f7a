#pragma once
/// The driver's directory of the objects that refs inside values may name: id to state. An
/// object enters it when a ref to it is first written into a value (a put object, a call's
/// arguments, a result) and leaves it when its last handle in the driver goes. It holds no
/// handle itself: what keeps an object alive is whatever holds the value (the object's
/// `contained` refs, a call's `refs`) and the processes that read the ref (reply_router's
/// holds, per process). Driver only, loop thread only.

#include <coray/detail/runtime/object_state.hpp>
#include <cstdint>
#include <unordered_map>

CORAY_BEGIN_NAMESPACE
namespace detail {

class object_directory {
 public:
  /// Lists `s` under its id, giving it `fresh` if it has none.
  void publish(object_state& s, std::uint64_t fresh) {
    if (s.published) return;
    if (!s.id) s.id = fresh;
    by_id_[s.id] = &s;
    s.published = true;
  }
  /// The object listed under `id`, or null.
  state_ptr find(std::uint64_t id) const {
    auto it = by_id_.find(id);
    return it == by_id_.end() ? state_ptr() : state_ptr::share(it->second);
  }
  /// `s` lost its last handle in the driver.
  void forget(object_state& s) noexcept {
    if (!s.published) return;
    if (auto it = by_id_.find(s.id); it != by_id_.end() && it->second == &s) by_id_.erase(it);
  }
  std::size_t size() const noexcept { return by_id_.size(); }
  /// Each listed object (ray::state's list_objects).
  template <class F>
  void for_each(F&& f) const {
    for (const auto& entry : by_id_) f(*entry.second);
  }

 private:
  std::unordered_map<std::uint64_t, object_state*> by_id_;
};

}  // namespace detail
CORAY_END_NAMESPACE
