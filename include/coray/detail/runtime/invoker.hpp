#pragma once
/// The worker's side of a call: reads the argument records of a call message, decodes each
/// argument for its parameter, runs the function (or actor method) and replies with its
/// value or exception. invoker<F> registers itself under F's id.

#include <algorithm>
#include <coray/async.hpp>
#include <coray/codec.hpp>
#include <coray/detail/runtime/call_message.hpp>
#include <coray/detail/runtime/invocation.hpp>
#include <coray/detail/runtime/registry.hpp>
#include <coray/detail/runtime/signature.hpp>
#include <coray/detail/runtime/stored_value.hpp>
#include <coray/generator.hpp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// Walks a call's argument records in a worker.
class argument_reader {
 public:
  argument_reader(segment& seg, std::span<const std::byte> args) : seg_(seg), reader_(args) {}
  std::span<const std::byte> next() { return reader_.next_value(seg_); }

 private:
  segment& seg_;
  call_reader reader_;
};

template <class T>
struct is_span_parameter : std::false_type {};
template <class E, std::size_t N>
struct is_span_parameter<std::span<E, N>> : std::true_type {};

/// Holds one decoded argument for the duration of the call: a view into the message or the
/// store for span/string_view parameters, else a decoded value.
template <class P>
class argument {
  using D = std::remove_cvref_t<P>;
  static constexpr bool is_view =
      std::is_same_v<D, std::string_view> || is_span_parameter<D>::value;
  using held = std::conditional_t<is_view, D, storage_type_t<D>>;

 public:
  explicit argument(std::span<const std::byte> bytes) : v_(decode<held>(bytes)) {}
  decltype(auto) pass() {
    if constexpr (std::is_rvalue_reference_v<P> || !std::is_reference_v<P>)
      return held(std::move(v_));
    else
      return static_cast<const held&>(v_);
  }

 private:
  held v_;
};

template <class Params, std::size_t... I>
auto decode_arguments(argument_reader& r, std::index_sequence<I...>) {
  // Braced initialisation evaluates left to right: arguments are read in order.
  return std::tuple<argument<std::tuple_element_t<I, Params>>...>{
      argument<std::tuple_element_t<I, Params>>(r.next())...};
}

/// A ref to `v` stored as an object of this process (exported to the driver with the reply
/// that holds the ref).
template <class T>
object_ref<T> store_here(const T& v) {
  process& p = process::require();
  auto s = make_state(p);
  store_value(p, *s, v);
  return object_ref<T>(std::move(s));
}

/// Sizes `v` and calls `send(size, fill, held)`: `fill(out)` writes its `size` bytes, and
/// `held` lists the refs and actor handles inside it (null for none), which what carries the
/// value keeps alive.
template <class V, class Send>
decltype(auto) send_encoded(const V& v, Send&& send) {
  auto fill_of = [&v](std::size_t size) {
    return [&v, size](std::byte* out) { encode_to(std::span<std::byte>(out, size), v); };
  };
  if constexpr (has_serialize_part_v<V>) {
    object_contents held;
    std::size_t size;
    {
      const collecting_refs collect(held);
      size = encoded_size(v);
    }
    return send(size, fill_of(size), held.empty() ? nullptr : &held);
  } else {
    const std::size_t size = encoded_size(v);  // holds no ref or handle
    return send(size, fill_of(size), nullptr);
  }
}

template <class V>
void reply(call_host& w, std::uint64_t id, const V& v) {
  if constexpr (is_returns_v<V>) {
    // ray::returns: each result an object of its own, and the reply a ref to each.
    reply(w, id,
          std::apply([](const auto&... x) { return std::tuple(store_here(x)...); }, v.values));
  } else {
    send_encoded(v, [&](std::size_t size, auto fill, const object_contents* held) {
      w.reply_value(id, size, fill, held);
    });
  }
}

/// Runs calls of F (a free function, or a member function of an actor) in this process:
/// decodes the arguments, calls, and replies with the value or the exception.
template <auto F>
struct invoker {
  using traits = function_traits<decltype(F)>;
  using params = typename traits::params;
  using R = typename traits::return_type;
  static constexpr auto indices = std::make_index_sequence<traits::arity>{};

  template <class Args>
  static decltype(auto) call(void* self, Args& args) {
    return std::apply(
        [self](auto&... a) -> decltype(auto) {
          return traits::template call<F>(self, a.pass()...);
        },
        args);
  }

  static void invoke(invocation& inv) {
    if constexpr (is_generator_v<R>) {
      run_generator(inv);
      if constexpr (traits::is_member) inv.self.call_finished(inv.group);
    } else if constexpr (is_async<R>::value) {
      // The body outlives this message: keep a copy of its arguments.
      run_coroutine(inv, std::vector<std::byte>(inv.args.begin(), inv.args.end()));
    } else {
      if constexpr (traits::is_member)
        if (inv.threaded) return hand_to_thread(inv);
      try {
        argument_reader reader(inv.seg, inv.args);
        auto args = decode_arguments<params>(reader, indices);
        if constexpr (std::is_void_v<R>) {
          call(inv.instance, args);
          inv.self.reply_value(inv.task_id, 0, [](std::byte*) {});
        } else {
          reply(inv.self, inv.task_id, call(inv.instance, args));
        }
      } catch (...) {
        inv.fail();
      }
      if constexpr (traits::is_member) inv.self.call_finished(inv.group);
    }
  }

  /// A streaming generator (design.md, "Streaming generators"): each item is sent as it is
  /// made; the reply, after the last, ends the stream (with the error, after the items made
  /// before it). On the loop thread, also in a threaded actor.
  static void run_generator(invocation& inv) {
    using item = typename std::remove_cvref_t<R>::iterator::value_type;
    static_assert(is_encodable_v<item>,
                  "ray::generator<T>: T cannot be sent between processes; give it a "
                  "`template <class Archive> void serialize(Archive&)` member");
    try {
      argument_reader reader(inv.seg, inv.args);
      auto args = decode_arguments<params>(reader, indices);
      R g = call(inv.instance, args);
      for (const item& v : g) {
        const bool more =
            send_encoded(v, [&](std::size_t size, auto fill, const object_contents* h) {
              return inv.self.stream_item(inv.task_id, size, fill, h);
            });
        if (!more) break;  // the consumer stopped the stream
      }
      inv.self.stream_end(inv.task_id);
      inv.self.reply_value(inv.task_id, 0, [](std::byte*) {});
    } catch (...) {
      try {
        inv.self.stream_end(inv.task_id);
      } catch (...) {  // the error below is the reply
      }
      inv.fail();
    }
  }

  using decoded_arguments =
      decltype(decode_arguments<params>(std::declval<argument_reader&>(), indices));

  /// A threaded actor's plain method, run on one of its method threads. Its arguments are
  /// decoded on the loop thread (a handle among them is made there), from a copy of their
  /// bytes: views (spans, string_views) outlive the message.
  struct threaded_method final : threaded_call {
    explicit threaded_method(const invocation& inv)
        : threaded_call(inv),
          self(inv.instance),
          bytes(inv.args.begin(), inv.args.end()),
          args(decode(inv.seg, bytes)) {}
    static decoded_arguments decode(segment& seg, std::span<const std::byte> b) {
      argument_reader reader(seg, b);
      return decode_arguments<params>(reader, indices);
    }
    void invoke() override {
      if constexpr (std::is_void_v<R>)
        call(self, args);
      else
        value.emplace(call(self, args));
    }
    void send_value(call_host& host, std::uint64_t task_id) override {
      if constexpr (std::is_void_v<R>)
        host.reply_value(task_id, 0, [](std::byte*) {});
      else
        detail::reply(host, task_id, *value);
    }
    void* self;
    std::vector<std::byte> bytes;
    decoded_arguments args;
    std::optional<std::conditional_t<std::is_void_v<R>, int, std::remove_cvref_t<R>>> value;
  };

  static void hand_to_thread(invocation& inv) {
    try {
      inv.self.run_on_thread(std::make_unique<threaded_method>(inv));
    } catch (...) {
      inv.fail();
      inv.self.call_finished(inv.group);
    }
  }

  static detached run_coroutine(invocation inv, std::vector<std::byte> bytes) {
    call_host& w = inv.self;
    segment& seg = inv.seg;
    const std::uint64_t id = inv.task_id;
    void* self = inv.instance;
    inv.args = bytes;  // the copy outlives the message
    try {
      argument_reader reader(seg, bytes);
      auto args = decode_arguments<params>(reader, indices);
      if constexpr (std::is_void_v<call_result_t<R>>) {
        co_await call(self, args);
        w.reply_value(id, 0, [](std::byte*) {});
      } else {
        auto value = co_await call(self, args);
        reply(w, id, value);
      }
    } catch (...) {
      inv.fail();
    }
    if constexpr (traits::is_member) w.call_finished(inv.group);
  }

  static inline const bool registered = register_function(entity_id<F>, &invoke, entity_name_v<F>);
};

}  // namespace detail
CORAY_END_NAMESPACE
