// A threaded actor serving blocking I/O: with `max_concurrency = 8`, eight lookups wait on
// the (slow) backend at once, on eight threads of the actor's process, instead of one after
// another. The class does its own locking: its cache is shared by those threads.
#include <chrono>
#include <coray/coray.hpp>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

struct lookup_service {
  /// The record for `key`: from the cache, else from the backend, a blocking call that
  /// answers in 100 ms (a database or an HTTP service).
  std::string lookup(std::string key) {
    {
      const std::lock_guard lock(m);
      if (auto it = cache.find(key); it != cache.end()) return it->second;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // waiting on the backend
    std::string value = "record of " + key;
    const std::lock_guard lock(m);
    cache.emplace(key, value);
    return value;
  }
  std::size_t cached() {
    const std::lock_guard lock(m);
    return cache.size();
  }
  std::mutex m;
  std::map<std::string, std::string> cache;
};

int main(int argc, char** argv) {
  ray::runtime rt(argc, argv);
  auto service = ray::spawn<lookup_service>({.max_concurrency = 8});

  const auto t0 = std::chrono::steady_clock::now();
  std::vector<ray::object_ref<std::string>> records;
  for (int i = 0; i < 8; ++i)
    records.push_back(service.call<&lookup_service::lookup>("user-" + std::to_string(i)));
  std::vector<std::string> got = ray::get(records);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::printf("8 lookups of 100 ms each on 8 threads: %.0f ms (one at a time: 800 ms)\n", ms);

  bool right = ray::get(service.call<&lookup_service::cached>()) == 8;
  for (int i = 0; i < 8; ++i) right = right && got[i] == "record of user-" + std::to_string(i);
  return right ? 0 : 1;
}
