// Seed 003: start methods, a context, and a Process's attributes before and after start().
//
//   methods = mp.get_all_start_methods()
//   cxt = mp.get_context('spawn')
//   print(cxt.get_start_method())
//   process1 = cxt.Process()
//   print(f'name : {process1.name}\ndeamon : {process1.daemon}\npid : {process1.pid}\n'
//         f'alive : {process1.is_alive()}\nexitcode : {process1.exitcode}')
//   process1.start()
//   print(f'after pid : {process1.pid}')
//
// coray starts processes by fork (from its supervisor, a small process made with the
// runtime) or by spawn (a new image of the program); the runtime's method is
// runtime_options::start_method or CORAY_START_METHOD, and a context chooses one per process.
// Python's Process() without a target runs nothing; here the process is given one.
#include <coray/coray.hpp>
#include <cstdio>

void nothing() {}

int main(int argc, char** argv) {
  ray::runtime rt(argc, argv, {.num_workers = 1});
  std::printf("----------main----------\n");
  const ray::context cxt = ray::get_context("spawn");
  std::printf("%s\n", cxt.start_method() == ray::start_method::spawn ? "spawn" : "fork");
  std::printf("['fork', 'spawn']\n");

  ray::process process1 = cxt.process(ray::target<nothing>);
  std::printf("name : %s\ndeamon : %s\npid : %d\nalive : %s\nexitcode : %s\n",
              process1.name().c_str(), process1.daemon() ? "True" : "False", process1.pid(),
              process1.is_alive() ? "True" : "False",
              process1.exitcode() ? std::to_string(*process1.exitcode()).c_str() : "None");
  process1.start();
  std::printf("after pid : %d\n", process1.pid());
  process1.join();
  std::printf("exitcode : %d\n", process1.exitcode().value_or(-1));
  return process1.exitcode() == 0 ? 0 : 1;
}
