// Errors: every coray error keeps its type (and its figures) across processes; misuse is
// ray::usage_error, a broken invariant ray::internal_error.
#include <doctest/doctest.h>

#include <coray/coray.hpp>
#include <cstddef>
#include <string>
#include <type_traits>
#include <typeinfo>

namespace {

// Throws the coray error whose number on the wire is `kind`.
void throw_error_of_kind(int kind) {
  ray::detail::for_each_error([kind]<class E>(std::type_identity<E>, ray::detail::error_kind k) {
    if (static_cast<int>(k) != kind) return;
    if constexpr (std::is_same_v<E, ray::task_error>)
      throw E("my::exception", "raised in a worker", "throw_error_of_kind");
    else if constexpr (std::is_same_v<E, ray::object_store_full>)
      throw E(1, 2, 3);
    else
      throw E("raised in a worker");
  });
}

int put_now(ray::queue<int> q, int v) {
  q.put_nowait(v);
  return v;
}
int get_now(ray::queue<int> q) { return q.get_nowait(); }

struct stock {
  explicit stock(ray::queue<int> q) : q(std::move(q)) {}
  int take() { return q.get_nowait(); }
  ray::queue<int> q;
};

int find_missing_actor() {
  (void)ray::get_actor<stock>("nobody");
  return 0;
}

// Figures past 32 bits, so a narrowing on the way would show.
constexpr std::size_t big_request = std::size_t{5} << 32;
void store_full_in_worker() { throw ray::object_store_full(big_request, 4096, 1 << 30); }

void inner_queue_empty() { throw ray::queue_empty("ray::queue: empty, two calls down"); }
ray::async<int> middle_awaits_inner() {
  co_await ray::get(ray::task<inner_queue_empty>.remote());
  co_return 1;
}
int outer_blocks_on_middle() { return ray::get(ray::task<middle_awaits_inner>.remote()); }

struct out_of_stock : ray::queue_empty {
  using ray::queue_empty::queue_empty;
};
void throw_out_of_stock() { throw out_of_stock("sold out"); }

void cancel_in_a_task() { ray::cancel(ray::put(1)); }
void throw_internal_error() { throw ray::internal_error("an invariant broke"); }
void queue_empty_every_time() { throw ray::queue_empty("still empty"); }

}  // namespace

TEST_CASE("every coray error in the list keeps its type across processes") {
  ray::runtime rt({.num_workers = 1});
  ray::detail::for_each_error([&]<class E>(std::type_identity<E>, ray::detail::error_kind k) {
    INFO(ray::detail::demangle(typeid(E).name()));
    try {
      ray::get(ray::task<throw_error_of_kind>.remote(static_cast<int>(k))).get();
      FAIL("no error arrived");
    } catch (const ray::error& e) {
      CHECK(typeid(e) == typeid(E));
    }
  });
}

TEST_CASE("a task that throws ray::queue_full is caught as ray::queue_full by its caller") {
  ray::runtime rt({.num_workers = 1});
  ray::queue<int> q(1);
  q.put(1);
  CHECK_THROWS_WITH_AS(ray::get(ray::task<put_now>.remote(q, 2)).get(),
                       doctest::Contains("maxsize 1"), ray::queue_full);
}

TEST_CASE("a task or actor method that throws ray::queue_empty is caught as ray::queue_empty") {
  ray::runtime rt({.num_workers = 1});
  ray::queue<int> q;
  CHECK_THROWS_AS(ray::get(ray::task<get_now>.remote(q)).get(), ray::queue_empty);
  auto s = ray::spawn<stock>(q);
  CHECK_THROWS_AS(ray::get(s.call<&stock::take>()).get(), ray::queue_empty);
  q.put(7);
  CHECK(ray::get(s.call<&stock::take>()).get() == 7);
}

TEST_CASE("actor_not_found crosses processes") {
  ray::runtime rt({.num_workers = 1});
  CHECK_THROWS_WITH_AS(ray::get(ray::task<find_missing_actor>.remote()).get(),
                       doctest::Contains("'nobody'"), ray::actor_not_found);
}

TEST_CASE("object_store_full raised in a worker keeps its requested, free and capacity figures") {
  ray::runtime rt({.num_workers = 1});
  try {
    ray::get(ray::task<store_full_in_worker>.remote()).get();
    FAIL("expected object_store_full");
  } catch (const ray::object_store_full& e) {
    CHECK(e.requested() == big_request);
    CHECK(e.free_bytes() == 4096);
    CHECK(e.capacity() == std::size_t{1} << 30);
    CHECK(std::string(e.what()) ==
          "object store full: requested 21474836480 bytes, 4096 free of 1073741824");
  }
}

TEST_CASE("a coray error raised two nested calls deep keeps its type and message") {
  ray::runtime rt({.num_workers = 2});
  CHECK_THROWS_WITH_AS(ray::get(ray::task<outer_blocks_on_middle>.remote()).get(),
                       doctest::Contains("two calls down"), ray::queue_empty);
}

TEST_CASE("a user's subclass of a coray error arrives as the coray error it derives from") {
  ray::runtime rt({.num_workers = 1});
  CHECK_THROWS_WITH_AS(ray::get(ray::task<throw_out_of_stock>.remote()).get(),
                       doctest::Contains("sold out"), ray::queue_empty);
}

TEST_CASE("a retried coray error keeps its type and says which attempt failed") {
  ray::runtime rt({.num_workers = 1});
  auto ref =
      ray::task<queue_empty_every_time>.options({.max_retries = 1, .retry_exceptions = true}).remote();
  CHECK_THROWS_WITH_AS(ray::get(ref).get(), doctest::Contains("attempt 2 of 2"), ray::queue_empty);
}

TEST_CASE("usage errors are ray::usage_error and still ray::runtime_error") {
  static_assert(std::is_base_of_v<ray::runtime_error, ray::usage_error>);
  CHECK_THROWS_WITH_AS(ray::put(1), doctest::Contains("no runtime"), ray::usage_error);
  CHECK_THROWS_AS(ray::put(1), ray::runtime_error);
  ray::runtime rt({.num_workers = 1});
  CHECK_THROWS_AS(ray::runtime({.num_workers = 1}), ray::usage_error);
  CHECK_THROWS_AS(ray::get(ray::object_ref<int>()).get(), ray::usage_error);
  CHECK_THROWS_WITH_AS(ray::get(ray::task<cancel_in_a_task>.remote()).get(),
                       doctest::Contains("only available in the driver"), ray::usage_error);
}

TEST_CASE("internal errors are ray::internal_error, not runtime_error, in any process") {
  static_assert(std::is_base_of_v<ray::error, ray::internal_error>);
  static_assert(!std::is_base_of_v<ray::runtime_error, ray::internal_error>);
  ray::runtime rt({.num_workers = 1});
  CHECK_THROWS_WITH_AS(ray::get(ray::task<throw_internal_error>.remote()).get(),
                       doctest::Contains("an invariant broke"), ray::internal_error);
}

TEST_CASE("an error of a kind this process does not know arrives as internal_error") {
  ray::detail::wire_error w{200, "from::the_future", "new error", "f", {}};
  CHECK_THROWS_WITH_AS(std::rethrow_exception(ray::detail::to_exception(w)),
                       doctest::Contains("unknown kind 200"), ray::internal_error);
}
