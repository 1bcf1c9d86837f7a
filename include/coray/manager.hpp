#pragma once
/// ray::manager: multiprocessing.Manager() for C++. One actor serves shared dicts, lists and
/// namespaces; what the manager hands out are proxies -- values that copy, pass to tasks and
/// actors as arguments (alone or inside containers), and reach the same object from any
/// process of the runtime.
///
///   void count(ray::dict_proxy<std::string, int> words, std::vector<std::string> text) {
///     for (auto& w : text) words.increment(w, 1);      // atomic in the manager
///   }
///
///   ray::manager m;                                     // starts the serving actor
///   auto d = m.dict<std::string, int>();
///   auto l = m.list<double>();
///   auto ns = m.ns();
///   d.set("apple", 1);
///   int a = d.get("apple");                             // or ray::key_error
///   int b = d.get("pear", 0);                           // a default instead
///   l.append(2.5);
///   ns.set("epoch", 3);
///   int epoch = ns.get<int>("epoch");                   // a wrong type: ray::codec_error
///   ray::task<count>.remote(d, text);
///
/// Every operation is one actor call, blocking by default, and runs alone in the manager, so
/// each one is atomic: `increment`, `setdefault`, `pop`, `popitem`, `compare_exchange` and
/// `update` included. A sequence of operations is not (as with Python's proxies): `d.set(k,
/// d.get(k) + 1)` from two processes can lose an update; use `increment`, or a loop on
/// `compare_exchange`, or a ray::mutex around the sequence.
///
/// Keys are equal when their encodings are (ray::encode): right for numbers, strings, and
/// containers of them; not for unordered containers or floating-point NaN and -0.0.
/// The manager's actor lives while the manager or any proxy of it exists in any process (or
/// until shutdown()); the objects live as long as their manager's actor. If its process dies,
/// every later operation fails with ray::actor_died. Create managers in the driver; proxies
/// work everywhere.

#include <fmt/format.h>

#include <coray/actor.hpp>
#include <coray/async.hpp>
#include <coray/detail/mp/manager_server.hpp>
#include <coray/errors.hpp>
#include <coray/object_store.hpp>
#include <coray/sync_wait.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE

namespace detail {

/// What every proxy holds: the manager's actor and the object's id there.
class manager_proxy_base {
 public:
  /// True for a proxy made by a manager; false for a default-constructed one.
  bool valid() const noexcept { return server_.valid() && id_ != 0; }

  /// Proxies travel as call arguments: the receiving process reaches the same object.
  template <class Archive>
  void serialize(Archive& ar) {
    ar(server_, id_);
  }

  friend bool operator==(const manager_proxy_base& a, const manager_proxy_base& b) noexcept {
    return a.server_ == b.server_ && a.id_ == b.id_;
  }

 protected:
  manager_proxy_base() noexcept = default;
  manager_proxy_base(actor<manager_server> server, std::uint64_t id) noexcept
      : server_(std::move(server)), id_(id) {}

  /// The method's result ref; the call is sent at once.
  template <auto Method, class... A>
  auto send(const char* what, A&&... args) const {
    if (!valid())
      throw usage_error(fmt::format("{}: the proxy is empty (default-constructed)", what));
    return server_.template call<Method>(id_, std::forward<A>(args)...);
  }
  /// The method's result, waiting for it (serving the runtime meanwhile on a loop thread).
  template <auto Method, class... A>
  auto call(const char* what, A&&... args) const {
    return ray::get(send<Method>(what, std::forward<A>(args)...)).get();
  }

  actor<manager_server> server_;
  std::uint64_t id_ = 0;
};

/// The manager's actor type, as a proxy class template names it: a dependent name, so that
/// a call to the actor from a proxy's member is instantiated (and the method's handler
/// registered) only where that member is used, not in every translation unit that includes
/// this header. The non-template proxy and ray::manager call the actor only from
/// manager_impl.hpp, compiled once in compiled mode.
template <class>
struct manager_server_of {
  using type = manager_server;
};

/// `key` as an error message shows it: strings quoted, as Python's KeyError does.
template <class K>
std::string describe_key(const K& key) {
  if constexpr (std::is_convertible_v<const K&, std::string_view>)
    return fmt::format("'{}'", std::string_view(key));
  else if constexpr (fmt::is_formattable<K>::value)
    return fmt::format("{}", key);
  else
    return fmt::format("(a {})", display_name<K>());
}

}  // namespace detail

/// A dict served by a ray::manager (Python's DictProxy): insertion-ordered, keys of type K,
/// values of type V.
template <class K, class V>
class dict_proxy : public detail::manager_proxy_base {
  using server = typename detail::manager_server_of<K>::type;
  static_assert(is_encodable_v<K> && is_decodable_v<K>,
                "ray::dict_proxy<K, V>: K must be encodable and decodable");
  static_assert(is_encodable_v<V> && is_decodable_v<V>,
                "ray::dict_proxy<K, V>: V must be encodable and decodable");

 public:
  using key_type = K;
  using mapped_type = V;

  /// An empty proxy (to be assigned, or filled by decoding); manager::dict makes real ones.
  dict_proxy() noexcept = default;

  /// d[key] = value.
  void set(const K& key, const V& value) {
    call<&server::dict_set>("ray::dict_proxy::set", enc(key), enc(value));
  }
  /// d[key]; throws ray::key_error naming the key if it is absent.
  V get(const K& key) const {
    auto v = call<&server::dict_get>("ray::dict_proxy::get", enc(key));
    if (!v) throw missing(key);
    return dec<V>(*v);
  }
  /// d.get(key, fallback).
  V get(const K& key, V fallback) const {
    auto v = call<&server::dict_get>("ray::dict_proxy::get", enc(key));
    return v ? dec<V>(*v) : std::move(fallback);
  }
  /// d.get(key) as an optional: empty if the key is absent.
  std::optional<V> find(const K& key) const {
    auto v = call<&server::dict_get>("ray::dict_proxy::find", enc(key));
    if (!v) return std::nullopt;
    return dec<V>(*v);
  }
  /// d.setdefault(key, value): the value at `key`, first set to `value` if absent.
  V setdefault(const K& key, const V& value) {
    return dec<V>(
        call<&server::dict_setdefault>("ray::dict_proxy::setdefault", enc(key), enc(value)));
  }
  /// d.pop(key): removes `key` and returns its value; ray::key_error if absent.
  V pop(const K& key) {
    auto v = call<&server::dict_pop>("ray::dict_proxy::pop", enc(key));
    if (!v) throw missing(key);
    return dec<V>(*v);
  }
  /// d.pop(key, fallback).
  V pop(const K& key, V fallback) {
    auto v = call<&server::dict_pop>("ray::dict_proxy::pop", enc(key));
    return v ? dec<V>(*v) : std::move(fallback);
  }
  /// del d[key], without the error: true if the key was there.
  bool erase(const K& key) {
    return call<&server::dict_pop>("ray::dict_proxy::erase", enc(key)).has_value();
  }
  /// d.popitem(): removes and returns the item inserted last; ray::key_error if empty.
  std::pair<K, V> popitem() {
    auto kv = call<&server::dict_popitem>("ray::dict_proxy::popitem");
    if (!kv) throw key_error("ray::dict_proxy::popitem: the dict is empty");
    return {dec<K>(kv->first), dec<V>(kv->second)};
  }
  /// key in d.
  bool contains(const K& key) const {
    return call<&server::dict_contains>("ray::dict_proxy::contains", enc(key));
  }
  /// len(d).
  std::size_t size() const {
    return static_cast<std::size_t>(call<&server::dict_size>("ray::dict_proxy::size"));
  }
  bool empty() const { return size() == 0; }
  /// list(d.keys()), in insertion order.
  std::vector<K> keys() const {
    return dec_all<K>(call<&server::dict_keys>("ray::dict_proxy::keys"));
  }
  /// list(d.values()), in insertion order.
  std::vector<V> values() const {
    return dec_all<V>(call<&server::dict_values>("ray::dict_proxy::values"));
  }
  /// list(d.items()), in insertion order: a snapshot of the whole dict in one call.
  std::vector<std::pair<K, V>> items() const {
    auto kvs = call<&server::dict_items>("ray::dict_proxy::items");
    std::vector<std::pair<K, V>> out;
    out.reserve(kvs.size());
    for (auto& [k, v] : kvs) out.emplace_back(dec<K>(k), dec<V>(v));
    return out;
  }
  /// d.clear().
  void clear() { call<&server::dict_clear>("ray::dict_proxy::clear"); }
  /// d.update(items): all of them in one call, so no other operation sees half.
  template <class Range>
  void update(const Range& items) {
    std::vector<std::pair<detail::encoded, detail::encoded>> kvs;
    for (const auto& [k, v] : items)
      kvs.emplace_back(enc(static_cast<const K&>(k)), enc(static_cast<const V&>(v)));
    call<&server::dict_update>("ray::dict_proxy::update", std::move(kvs));
  }
  void update(std::initializer_list<std::pair<K, V>> items) {
    update<std::initializer_list<std::pair<K, V>>>(items);
  }
  /// Sets `key` to `desired` if its value now is `expected` (std::nullopt: if it is absent),
  /// atomically; false, and no change, otherwise. Values compare by their encodings. A loop
  /// of find and compare_exchange is an atomic read-modify-write of any kind.
  bool compare_exchange(const K& key, const std::optional<V>& expected, const V& desired) {
    std::optional<detail::encoded> e;
    if (expected) e = enc(*expected);
    return call<&server::dict_compare_exchange>("ray::dict_proxy::compare_exchange", enc(key),
                                                std::move(e), enc(desired));
  }
  /// d[key] = d.get(key, 0) + delta, atomically; returns the new value. V must be an integer
  /// (wrapping on overflow) or floating-point type.
  V increment(const K& key, V delta = V(1)) requires std::is_arithmetic_v<V> {
    return dec<V>(call<&server::dict_increment>(
        "ray::dict_proxy::increment", enc(key),
        static_cast<std::uint8_t>(detail::number_kind_of<V>()), enc(delta)));
  }

  /// set() in a coroutine, or sent now and awaited later: `co_await d.set_async(k, v)`.
  async<void> set_async(const K& key, const V& value) {
    return await_void(send<&server::dict_set>("ray::dict_proxy::set_async", enc(key), enc(value)));
  }
  /// get() in a coroutine: `V v = co_await d.get_async(k)`; ray::key_error if absent.
  async<V> get_async(const K& key) const {
    return await_get(send<&server::dict_get>("ray::dict_proxy::get_async", enc(key)), key);
  }

 private:
  friend class manager;
  dict_proxy(actor<detail::manager_server> s, std::uint64_t id) noexcept
      : manager_proxy_base(std::move(s), id) {}

  static detail::encoded enc(const auto& x) { return detail::encode_as_string(x); }
  template <class T>
  static T dec(const detail::encoded& s) {
    return detail::decode_from_string<T>(s);
  }
  template <class T>
  static std::vector<T> dec_all(const std::vector<detail::encoded>& v) {
    std::vector<T> out;
    out.reserve(v.size());
    for (auto& s : v) out.push_back(dec<T>(s));
    return out;
  }
  static key_error missing(const K& key) {
    return key_error(fmt::format("ray::dict_proxy: no key {}", detail::describe_key(key)));
  }
  static async<void> await_void(object_ref<void> r) { co_await ray::get(r); }
  static async<V> await_get(object_ref<std::optional<detail::encoded>> r, K key) {
    std::optional<detail::encoded> v = co_await ray::get(r);
    if (!v) throw missing(key);
    co_return dec<V>(*v);
  }
};

/// A list served by a ray::manager (Python's ListProxy). Indexes follow Python's rules: a
/// negative one counts from the end; one out of range throws ray::index_error.
template <class T>
class list_proxy : public detail::manager_proxy_base {
  using server = typename detail::manager_server_of<T>::type;
  static_assert(is_encodable_v<T> && is_decodable_v<T>,
                "ray::list_proxy<T>: T must be encodable and decodable");

 public:
  using value_type = T;

  list_proxy() noexcept = default;

  /// l.append(v).
  void append(const T& v) { call<&server::list_append>("ray::list_proxy::append", enc(v)); }
  /// l.extend(items): all of them in one call, so they stay together.
  template <class Range>
  void extend(const Range& items) {
    std::vector<detail::encoded> vs;
    for (const auto& v : items) vs.push_back(enc(static_cast<const T&>(v)));
    call<&server::list_extend>("ray::list_proxy::extend", std::move(vs));
  }
  void extend(std::initializer_list<T> items) { extend<std::initializer_list<T>>(items); }
  /// l.insert(i, v): before index i (clamped to the list, as Python's).
  void insert(std::int64_t i, const T& v) {
    call<&server::list_insert>("ray::list_proxy::insert", i, enc(v));
  }
  /// l[i]; ray::index_error if out of range.
  T get(std::int64_t i) const { return dec(call<&server::list_get>("ray::list_proxy::get", i)); }
  T operator[](std::int64_t i) const { return get(i); }
  /// l[i] = v; ray::index_error if out of range.
  void set(std::int64_t i, const T& v) {
    call<&server::list_set>("ray::list_proxy::set", i, enc(v));
  }
  /// l.pop(i) (the last item by default); ray::index_error if empty or out of range.
  T pop(std::int64_t i = -1) { return dec(call<&server::list_pop>("ray::list_proxy::pop", i)); }
  /// len(l).
  std::size_t size() const {
    return static_cast<std::size_t>(call<&server::list_size>("ray::list_proxy::size"));
  }
  bool empty() const { return size() == 0; }
  /// list(l): a copy of the whole list in one call.
  std::vector<T> snapshot() const {
    auto vs = call<&server::list_all>("ray::list_proxy::snapshot");
    std::vector<T> out;
    out.reserve(vs.size());
    for (auto& s : vs) out.push_back(dec(s));
    return out;
  }
  /// l.clear().
  void clear() { call<&server::list_clear>("ray::list_proxy::clear"); }

  /// append() sent now, awaited later: `co_await l.append_async(v)`.
  async<void> append_async(const T& v) {
    return await_void(send<&server::list_append>("ray::list_proxy::append_async", enc(v)));
  }

 private:
  friend class manager;
  list_proxy(actor<detail::manager_server> s, std::uint64_t id) noexcept
      : manager_proxy_base(std::move(s), id) {}

  static detail::encoded enc(const T& x) { return detail::encode_as_string(x); }
  static T dec(const detail::encoded& s) { return detail::decode_from_string<T>(s); }
  static async<void> await_void(object_ref<void> r) { co_await ray::get(r); }
};

/// A namespace served by a ray::manager (Python's Namespace): named values of any encodable
/// types. Each value keeps its type's name, so get<T> of a value set as another type throws
/// ray::codec_error naming both, and a missing name throws ray::key_error (Python's
/// AttributeError).
class namespace_proxy : public detail::manager_proxy_base {
  using server = detail::manager_server;

 public:
  namespace_proxy() noexcept = default;

  /// ns.name = value.
  template <class T>
  void set(std::string name, const T& value) {
    static_assert(is_encodable_v<T> && is_decodable_v<T>,
                  "ray::namespace_proxy::set: the value must be encodable and decodable");
    set_encoded(std::move(name), std::string(detail::type_name_v<T>),
                detail::encode_as_string(value));
  }
  /// ns.name = "text": a string literal is kept as a std::string.
  void set(std::string name, const char* value) { set<std::string>(std::move(name), value); }
  /// ns.name, as a T: ray::key_error if there is no such name, ray::codec_error if its value
  /// was set as another type.
  template <class T>
  T get(const std::string& name) const {
    auto v = fetch<T>(name);
    if (!v) throw key_error(fmt::format("ray::namespace_proxy: no attribute '{}'", name));
    return std::move(*v);
  }
  /// getattr(ns, name, fallback); a value of another type is still a ray::codec_error.
  template <class T>
  T get(const std::string& name, T fallback) const {
    auto v = fetch<T>(name);
    return v ? std::move(*v) : std::move(fallback);
  }
  /// hasattr(ns, name).
  CORAY_API bool contains(const std::string& name) const;
  /// del ns.name, without the error: true if the name was there.
  CORAY_API bool erase(const std::string& name);
  /// The names set, sorted.
  CORAY_API std::vector<std::string> names() const;

 private:
  friend class manager;
  namespace_proxy(actor<detail::manager_server> s, std::uint64_t id) noexcept
      : manager_proxy_base(std::move(s), id) {}

  template <class T>
  std::optional<T> fetch(const std::string& name) const {
    static_assert(is_decodable_v<T>, "ray::namespace_proxy::get: T must be decodable");
    auto v = fetch_encoded(name);
    if (!v) return std::nullopt;
    if (v->first != detail::type_name_v<T>)
      throw codec_error(fmt::format("ray::namespace_proxy: attribute '{}' holds a {}, not a {}",
                                    name, v->first, detail::display_name<T>()));
    return detail::decode_from_string<T>(v->second);
  }
  /// The server's side of set and get: the value's type name and encoding.
  CORAY_API void set_encoded(std::string name, std::string type, detail::encoded value);
  CORAY_API std::optional<std::pair<std::string, detail::encoded>> fetch_encoded(
      const std::string& name) const;
};

/// multiprocessing.Manager(): starts one actor that serves the dicts, lists and namespaces
/// made through it. Copies are handles to the same manager. Its proxies, not the manager,
/// are what travel to tasks and actors.
class manager {
  using server = detail::manager_server;

 public:
  /// Starts the manager's process (returns at once; calls queue behind its start). Driver
  /// only, as ray::spawn is. `opts` names it for ray::get_actor, or sets restarts (a
  /// restarted manager starts empty).
  CORAY_API explicit manager(actor_options opts = {});

  /// A new, empty dict of K to V (Python's Manager().dict()).
  template <class K, class V>
  dict_proxy<K, V> dict() const {
    return {server_, create(server::kind::dict)};
  }
  /// A new dict holding `items` (later ones win for equal keys).
  template <class K, class V>
  dict_proxy<K, V> dict(std::initializer_list<std::pair<K, V>> items) const {
    auto d = dict<K, V>();
    d.update(items);
    return d;
  }
  /// A new, empty list of T (Python's Manager().list()).
  template <class T>
  list_proxy<T> list() const {
    return {server_, create(server::kind::list)};
  }
  /// A new list holding `items`.
  template <class T>
  list_proxy<T> list(const std::vector<T>& items) const {
    auto l = list<T>();
    if (!items.empty()) l.extend(items);
    return l;
  }
  /// A new, empty namespace (Python's Manager().Namespace()).
  CORAY_API namespace_proxy ns() const;

  /// The manager's process id (one call to it).
  CORAY_API int pid() const;
  /// The serving actor's handle (for ray::actor_process and the like).
  const actor<server>& server_actor() const noexcept { return server_; }
  /// Ends the manager's process now (Python's shutdown()); every later operation on its
  /// proxies fails with ray::actor_died.
  void shutdown() {
    if (server_.valid()) ray::kill(server_);
  }

 private:
  CORAY_API std::uint64_t create(server::kind k) const;

  actor<server> server_;
};

CORAY_END_NAMESPACE

#ifndef CORAY_COMPILED_LIB
#include <coray/detail/mp/manager_impl.hpp>
#endif
