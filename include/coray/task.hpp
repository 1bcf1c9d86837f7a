#pragma once
/// Remote tasks: ray::task<f>.remote(args...) runs f in a worker process and returns an
/// object_ref to its result at once. Arguments are checked against f's parameters at
/// compile time; object_ref arguments are dependencies (f runs once they are ready and
/// receives their values). f may be a coroutine (returning ray::async<R>) that awaits
/// nested calls; the worker runs other tasks meanwhile.
///
///   int add(int a, int b) { return a + b; }
///   ray::object_ref<int> r = ray::task<add>.remote(1, 2);

#include <coray/async.hpp>
#include <coray/codec.hpp>
#include <coray/detail/runtime/registry.hpp>
#include <coray/detail/runtime/worker.hpp>
#include <coray/object_ref.hpp>
#include <coray/object_store.hpp>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

CORAY_BEGIN_NAMESPACE

template <class T>
class actor;

namespace detail {

/// What a callee is: its parameters, its return type and how to call it (with the actor's
/// object for a member function).
template <class F>
struct function_traits {
  static constexpr bool is_function = false;
  static constexpr bool is_member = false;
};
template <class R, class... A>
struct function_traits<R (*)(A...)> {
  static constexpr bool is_function = true;
  static constexpr bool is_member = false;
  using return_type = R;
  using params = std::tuple<A...>;
  static constexpr std::size_t arity = sizeof...(A);
  template <auto F, class... X>
  static decltype(auto) call(void*, X&&... x) {
    return F(std::forward<X>(x)...);
  }
};
template <class R, class... A>
struct function_traits<R (*)(A...) noexcept> : function_traits<R (*)(A...)> {};

template <class C, class R, class... A>
struct member_traits {
  static constexpr bool is_function = true;
  static constexpr bool is_member = true;
  using class_type = C;
  using return_type = R;
  using params = std::tuple<A...>;
  static constexpr std::size_t arity = sizeof...(A);
  template <auto F, class... X>
  static decltype(auto) call(void* self, X&&... x) {
    return (static_cast<C*>(self)->*F)(std::forward<X>(x)...);
  }
};
template <class C, class R, class... A>
struct function_traits<R (C::*)(A...)> : member_traits<C, R, A...> {};
template <class C, class R, class... A>
struct function_traits<R (C::*)(A...) const> : member_traits<C, R, A...> {};
template <class C, class R, class... A>
struct function_traits<R (C::*)(A...) noexcept> : member_traits<C, R, A...> {};
template <class C, class R, class... A>
struct function_traits<R (C::*)(A...) const noexcept> : member_traits<C, R, A...> {};

/// The value a call produces: R, or X for a coroutine returning ray::async<X>.
template <class R>
struct call_result {
  using type = R;
};
template <class X>
struct call_result<async<X>> {
  using type = X;
};
template <class R>
using call_result_t = typename call_result<R>::type;

template <class T>
struct is_actor : std::false_type {};
template <class T>
struct is_actor<actor<T>> : std::true_type {};
template <class T>
inline constexpr bool is_actor_v = is_actor<std::remove_cvref_t<T>>::value;

/// A std::vector of object_refs: passed for a vector parameter, each element a dependency.
template <class T>
struct is_ref_vector : std::false_type {};
template <class U, class A>
struct is_ref_vector<std::vector<object_ref<U>, A>> : std::true_type {
  using value_type = U;
};
template <class T>
inline constexpr bool is_ref_vector_v = is_ref_vector<std::remove_cvref_t<T>>::value;

template <class P>
inline constexpr bool is_mutable_ref_v =
    std::is_lvalue_reference_v<P> && !std::is_const_v<std::remove_reference_t<P>>;

/// Whether argument A may be passed for parameter P.
template <class P, class A>
constexpr bool argument_fits() {
  using S = storage_type_t<std::remove_cvref_t<P>>;
  if constexpr (is_mutable_ref_v<P>)
    return false;
  else if constexpr (is_actor_v<P> || is_actor_v<A>)
    return std::is_same_v<std::remove_cvref_t<P>, std::remove_cvref_t<A>>;
  else if constexpr (is_object_ref_v<A>)
    return std::is_same_v<typename is_object_ref<std::remove_cvref_t<A>>::value_type, S>;
  else if constexpr (is_ref_vector_v<A>)
    return std::is_same_v<std::vector<typename is_ref_vector<std::remove_cvref_t<A>>::value_type>,
                          S>;
  else if constexpr (wire_compatible_v<std::remove_cvref_t<P>, std::remove_cvref_t<A>>)
    return true;
  else
    return std::is_convertible_v<A, S>;
}

template <class Params, class... A, std::size_t... I>
constexpr bool arguments_fit(std::index_sequence<I...>) {
  return (argument_fits<std::tuple_element_t<I, Params>, A>() && ...);
}

template <class Params>
constexpr bool parameters_storable() {
  return []<std::size_t... I>(std::index_sequence<I...>) {
    return ((
        is_actor_v<std::tuple_element_t<I, Params>> ||
        is_encodable_v<storage_type_t<std::remove_cvref_t<std::tuple_element_t<I, Params>>>>)&&...);
  }
  (std::make_index_sequence<std::tuple_size_v<Params>>{});
}

template <class V>
void add_value(task_spec& spec, process& p, const V& v) {
  // Actor handles inside the value are kept alive for the call's duration.
  struct collecting {
    std::vector<std::uint64_t>* saved;
    explicit collecting(std::vector<std::uint64_t>& into)
        : saved(std::exchange(actor_collector(), &into)) {}
    ~collecting() { actor_collector() = saved; }
  } collect(spec.actors);
  const std::size_t size = encoded_size(v);
  if (size > p.inline_threshold()) {
    object_block* b = p.allocate_block(size);
    encode_to(std::span<std::byte>(b->data(), size), v);
    spec.add_block(p.seg, b);
  } else {
    spec.add_inline(size, [&](std::byte* out) { encode_to(std::span<std::byte>(out, size), v); });
  }
}

template <class P, class A>
void add_argument(task_spec& spec, process& p, A&& a) {
  using S = storage_type_t<std::remove_cvref_t<P>>;
  if constexpr (is_object_ref_v<A>) {
    spec.add_dependency(a.state());
  } else if constexpr (is_ref_vector_v<A>) {
    // The elements' encodings, after the count, make the vector's: raw elements start
    // aligned (the argument starts 16-aligned, the count takes 8 bytes).
    using U = typename is_ref_vector<std::remove_cvref_t<A>>::value_type;
    constexpr std::size_t align = is_raw_copyable_v<U> ? wire_align_v<U> : 1;
    constexpr std::size_t pad = (align - sizeof(std::uint64_t) % align) % align;
    std::vector<state_ptr> refs;
    refs.reserve(a.size());
    for (const auto& r : a) {
      if (!r.valid())
        throw ray::runtime_error("ray::task<f>.remote: an object_ref in the list is empty");
      refs.push_back(r.state());
    }
    spec.add_dependency_list(refs, static_cast<std::uint8_t>(pad));
  } else if constexpr (wire_compatible_v<std::remove_cvref_t<P>, std::remove_cvref_t<A>>) {
    add_value(spec, p, a);
  } else {
    add_value(spec, p, S(std::forward<A>(a)));
  }
}

/// Walks a call's argument records in a worker.
class argument_reader {
 public:
  argument_reader(segment& seg, std::span<const std::byte> args)
      : seg_(seg), p_(args.data()), end_(args.data() + args.size()) {}
  std::span<const std::byte> next() {
    if (static_cast<std::size_t>(end_ - p_) < sizeof(arg_entry))
      throw codec_error("coray: call has fewer arguments than its function");
    arg_entry e;
    std::memcpy(&e, p_, sizeof e);
    p_ += sizeof e;
    if (e.tag == arg_entry::block_value) {
      auto* b = seg_.at<object_block>(e.ref);
      return {b->data(), static_cast<std::size_t>(b->size)};
    }
    if (e.tag != arg_entry::inline_value || static_cast<std::size_t>(end_ - p_) < e.len)
      throw codec_error("coray: malformed call arguments");
    std::span<const std::byte> bytes(p_, e.len);
    p_ += std::min<std::size_t>(pad16(e.len), static_cast<std::size_t>(end_ - p_));
    return bytes;
  }

 private:
  segment& seg_;
  const std::byte* p_;
  const std::byte* end_;
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

template <class V>
void reply(worker& w, std::uint64_t id, const V& v) {
  const std::size_t size = encoded_size(v);
  w.reply_value(id, size, [&](std::byte* out) { encode_to(std::span<std::byte>(out, size), v); });
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
    if constexpr (is_async<R>::value) {
      // The body outlives this message: keep a copy of its arguments.
      run_coroutine(inv, std::vector<std::byte>(inv.args.begin(), inv.args.end()));
    } else {
      try {
        argument_reader reader(inv.self.seg, inv.args);
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
      if constexpr (traits::is_member) inv.self.call_finished();
    }
  }

  static detached run_coroutine(invocation inv, std::vector<std::byte> bytes) {
    worker& w = inv.self;
    const std::uint64_t id = inv.task_id;
    void* self = inv.instance;
    inv.args = bytes;  // the copy outlives the message
    try {
      argument_reader reader(w.seg, bytes);
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
    if constexpr (traits::is_member) w.call_finished();
  }

  static inline const bool registered = register_function(entity_id<F>, &invoke, entity_name<F>());
};

/// The message of a call of F with `args` (already checked against F's parameters).
template <auto F, class... A>
task_spec make_call(process& p, A&&... args) {
  using params = typename function_traits<decltype(F)>::params;
  (void)invoker<F>::registered;
  task_spec spec;
  spec.fn_id = entity_id<F>;
  spec.name = entity_name<F>();
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (add_argument<std::tuple_element_t<I, params>>(spec, p, std::forward<A>(args)), ...);
  }
  (std::make_index_sequence<sizeof...(A)>{});
  return spec;
}

}  // namespace detail

/// Which exceptions of a task are retried: none (false, the default), all (true), or those
/// of given types (ray::retry_on<E...>, matching derived types too).
struct retry_policy {
  constexpr retry_policy(bool all = false) noexcept : matcher(all ? 1 : 0) {}
  constexpr retry_policy(std::uint64_t id, std::nullptr_t) noexcept : matcher(id) {}
  std::uint64_t matcher;
};

namespace detail {
template <class E, class... Rest>
bool exception_is(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const E&) {
    return true;
  } catch (...) {
    if constexpr (sizeof...(Rest) > 0)
      return exception_is<Rest...>(e);
    else
      return false;
  }
}
template <class... E>
retry_policy make_retry_policy() {
  // Named by its types (a function template instance's printed name lacks them under clang).
  std::string key = "retry_on";
  ((key += ',', key += type_name<E>()), ...);
  const std::uint64_t id = fnv1a(key) | 2;  // 0 and 1 mean none and all
  register_retry_matcher(id, &exception_is<E...>);
  return retry_policy(id, nullptr);
}
}  // namespace detail

/// Retry a task when it throws one of E... (or a type derived from one):
/// `ray::task<f>.options({.retry_exceptions = ray::retry_on<std::runtime_error>})`.
template <class... E>
inline const retry_policy retry_on = detail::make_retry_policy<E...>();

/// Per-call options of a task, as Ray's `f.options(...)`.
struct task_options {
  /// Re-runs after the worker running the task dies (and after a retryable exception).
  /// The final error says how many attempts were made.
  int max_retries = 3;
  /// Whether an exception thrown by the task is retried too.
  retry_policy retry_exceptions = false;
};

/// The remote form of the free function F: `ray::task<f>.remote(args...)`.
template <auto F>
struct remote_function {
  using traits = detail::function_traits<decltype(F)>;
  static_assert(traits::is_function && !traits::is_member,
                "ray::task<f>: f must be a free function or a static member function (call member "
                "functions on an actor: actor.call<&T::method>(...))");
  using params = typename traits::params;
  using result_type = detail::call_result_t<typename traits::return_type>;
  static_assert(std::is_void_v<result_type> || is_encodable_v<result_type>,
                "ray::task<f>: f's return type cannot be sent between processes; give it a "
                "`template <class Archive> void serialize(Archive&)` member");
  static_assert(detail::parameters_storable<params>(),
                "ray::task<f>: a parameter of f cannot be sent between processes (it must be "
                "encodable, a std::span<const T> or a std::string_view)");

  constexpr remote_function() noexcept = default;
  constexpr explicit remote_function(task_options o) noexcept : options_(o) {}

  /// The same function with other options: `ray::task<f>.options({.max_retries = 0}).remote(...)`.
  constexpr remote_function options(task_options o) const noexcept { return remote_function(o); }

  /// Submits the call and returns its result's ref at once. Thread-safe in the driver (any
  /// thread); inside a task, from the thread that runs the task.
  template <class... A>
  object_ref<result_type> remote(A&&... args) const {
    static_assert(sizeof...(A) == traits::arity,
                  "ray::task<f>.remote(...): wrong number of arguments for f");
    if constexpr (sizeof...(A) == traits::arity) {
      constexpr bool fits =
          detail::arguments_fit<params, A...>(std::make_index_sequence<sizeof...(A)>{});
      static_assert(
          fits,
          "ray::task<f>.remote(...): an argument does not match f's parameter: pass the "
          "parameter's type, a value convertible to it, or an object_ref of it (non-const "
          "reference parameters are not allowed)");
      if constexpr (fits) {
        return object_ref<result_type>(
            detail::submit_from_any_thread("ray::task<f>.remote", [&](detail::process& p) {
              auto spec = detail::make_call<F>(p, std::forward<A>(args)...);
              spec.max_retries = options_.max_retries;
              spec.retry_matcher = options_.retry_exceptions.matcher;
              return spec;
            }));
      }
    }
    return {};
  }

 private:
  task_options options_{};
};

/// `ray::task<f>`: the handle through which f is called remotely.
template <auto F>
inline constexpr remote_function<F> task{};

CORAY_END_NAMESPACE
