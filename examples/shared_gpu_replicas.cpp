// Two replicas of a model on one GPU: each actor asks for half of it (`num_gpus = 0.5`), so
// both are placed on GPU 0 and run with CUDA_VISIBLE_DEVICES=0, and a third half would wait
// for one of them to end. The runtime declares its GPU (`num_gpus = 1`), so the program runs
// the same on a machine without one; the "GPU work" is a CPU loop standing in for kernels.
#include <cmath>
#include <coray/coray.hpp>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <string>
#include <vector>

struct replica {
  explicit replica(int index) : id(index), weights(1 << 16) {
    std::iota(weights.begin(), weights.end(), 0.0f);  // stands in for loading onto the GPU
  }
  /// The GPU this replica was given (ray::get_gpu_ids(), which CUDA_VISIBLE_DEVICES holds).
  std::string gpu() const {
    const auto ids = ray::get_gpu_ids();
    const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
    std::printf("replica %d: ray::get_gpu_ids() = %s, CUDA_VISIBLE_DEVICES = %s\n", id,
                ids.empty() ? "none" : ids.front().c_str(), visible ? visible : "unset");
    return ids.size() == 1 ? ids.front() : std::string();
  }
  /// A batch of inference: one score per input.
  std::vector<float> infer(const std::vector<float>& inputs) const {
    std::vector<float> scores;
    scores.reserve(inputs.size());
    for (float x : inputs) {
      double s = 0;
      for (std::size_t i = 0; i < weights.size(); i += 64) s += std::sin(x * weights[i]);
      scores.push_back(static_cast<float>(s));
    }
    return scores;
  }
  int id;
  std::vector<float> weights;
};

int main(int argc, char** argv) {
  ray::runtime rt(argc, argv, {.num_gpus = 1});
  std::vector<ray::actor<replica>> replicas;
  for (int i = 0; i < 2; ++i) replicas.push_back(ray::spawn<replica>({.num_gpus = 0.5}, i));

  const std::string first = ray::get(replicas[0].call<&replica::gpu>());
  const std::string second = ray::get(replicas[1].call<&replica::gpu>());
  const bool same_gpu = !first.empty() && first == second;
  std::printf("GPU free while both replicas live: %g of %g\n", ray::available_resources()["GPU"],
              ray::cluster_resources()["GPU"]);

  // Batches spread over the replicas, which share the GPU.
  std::vector<ray::object_ref<std::vector<float>>> scores;
  for (int b = 0; b < 8; ++b) {
    std::vector<float> batch(256, 0.001f * static_cast<float>(b + 1));
    scores.push_back(replicas[static_cast<std::size_t>(b) % 2].call<&replica::infer>(batch));
  }
  std::size_t scored = 0;
  for (const auto& s : ray::get(scores).get()) scored += s.size();
  std::printf("scored %zu inputs on one GPU\n", scored);
  return same_gpu && scored == 8 * 256 ? 0 : 1;
}
