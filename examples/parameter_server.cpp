// A parameter server, as Ray's docs build one: a supervisor task spawns the server actor it
// manages, workers compute gradients against the current weights, and each gradient is
// pushed to the server by ref (the server's call waits for it; the supervisor does not).
// The supervisor hands the server's handle back, so the driver can read the trained weights.
#include <cmath>
#include <coray/coray.hpp>
#include <cstdio>
#include <vector>

struct parameter_server {
  explicit parameter_server(int dim) : weights(static_cast<std::size_t>(dim), 0.0) {}
  std::vector<double> apply(std::vector<double> gradient) {
    for (std::size_t i = 0; i < weights.size(); ++i) weights[i] -= rate * gradient[i];
    return weights;
  }
  std::vector<double> get_weights() const { return weights; }
  std::vector<double> weights;
  double rate = 0.1;
};

// Worker `w` pulls each weight toward its own target, w + 1: the gradient of
// (weight - target)^2 / 2. Together the workers pull toward the targets' mean.
std::vector<double> compute_gradient(std::vector<double> weights, int w) {
  std::vector<double> gradient(weights.size());
  for (std::size_t i = 0; i < weights.size(); ++i) gradient[i] = weights[i] - (w + 1.0);
  return gradient;
}

// The supervisor: spawns the server, runs `rounds` rounds of one gradient per worker.
ray::actor<parameter_server> train(int dim, int workers, int rounds) {
  auto server = ray::spawn<parameter_server>(dim);
  ray::object_ref<std::vector<double>> weights = server.call<&parameter_server::get_weights>();
  for (int r = 0; r < rounds; ++r) {
    std::vector<ray::object_ref<std::vector<double>>> gradients;
    for (int w = 0; w < workers; ++w)
      gradients.push_back(ray::task<compute_gradient>.remote(weights, w));
    for (const auto& g : gradients) weights = server.call<&parameter_server::apply>(g);
  }
  ray::get(weights).get();  // the last round is applied before the handle goes back
  return server;
}

int main(int argc, char** argv) {
  ray::runtime rt(argc, argv, {.num_workers = 2});
  ray::actor<parameter_server> server = ray::get(ray::task<train>.remote(4, 3, 30));
  std::vector<double> weights = ray::get(server.call<&parameter_server::get_weights>());
  std::printf("trained weights:");
  for (double w : weights) std::printf(" %.3f", w);
  std::printf(" (the workers' targets average 2)\n");
  for (double w : weights)
    if (std::fabs(w - 2.0) > 0.25) return 1;
  return 0;
}
