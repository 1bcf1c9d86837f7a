// process.hpp alone: a process started, joined, signalled, and one made through a context.
#include <chrono>
#include <coray/process.hpp>
#include <string>

namespace header_check_process {

void run(std::string, int) {}

int uses() {
  ray::process p(ray::target<run>, "name", 1);
  p.daemon(true);
  p.start();
  (void)p.join(std::chrono::milliseconds(1));
  if (p.is_alive()) p.terminate();
  p.kill();
  p.join();
  auto q = ray::get_context("spawn").process(ray::target<run>, std::string("x"), 2);
  q.start();
  q.join();
  return p.exitcode().value_or(0) + q.pid() + static_cast<int>(p.name().size());
}

}  // namespace header_check_process
