// Seed 000: Pool.map against a serial loop, for x*10 over 100 random numbers.
//
//   def task(x): return x*10
//   mppool = MultiPool(processes=cpu_nums)
//   raypool = RayPool(processes=cpu_nums)
//   result = raypool.map(task, random_list)        # Ray's Pool shim: slower than serial
//   result = mppool.map(task, random_list)
//   result = [task(i) for i in random_list]
//
// ray::pool maps in a few chunks (about four per process), so even 100 tiny items cost a
// handful of messages; the seed found Ray's shim far slower than a serial loop.
#include <chrono>
#include <coray/coray.hpp>
#include <cstdio>
#include <random>
#include <vector>

double task(double x) { return x * 10; }

std::vector<double> generate_random_data(int number) {
  std::mt19937_64 gen(42);
  std::uniform_real_distribution<double> random(0.0, 1.0);
  std::vector<double> v(static_cast<std::size_t>(number));
  for (double& x : v) x = random(gen);
  return v;
}

int main(int argc, char** argv) {
  ray::runtime rt(argc, argv);
  using clock = std::chrono::steady_clock;
  auto seconds_since = [](clock::time_point t) {
    return std::chrono::duration<double>(clock::now() - t).count();
  };

  ray::pool pool;  // one process per usable core, like Pool(processes=cpu_count())
  const int number = 100;
  std::vector<double> random_list = generate_random_data(number);
  std::printf("generate number : %d\n", number);
  pool.map<task>(
      random_list);  // the processes are up (Python's Pool starts them in its constructor)

  auto s = clock::now();
  std::vector<double> parallel = pool.map<task>(random_list);
  std::printf("coray Pool.map time : %.6f s\n", seconds_since(s));

  s = clock::now();
  std::vector<double> sequential;
  for (double x : random_list) sequential.push_back(task(x));
  std::printf("Sequential time : %.6f s\n", seconds_since(s));

  return parallel == sequential ? 0 : 1;
}
