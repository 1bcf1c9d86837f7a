// progress.hpp alone: a bar counted by hand, a get with progress, a stream with progress.
#include <coray/progress.hpp>
#include <string>
#include <vector>

namespace header_check_progress {

std::string uses(std::vector<ray::object_ref<int>> refs, ray::result_stream<int> stream) {
  ray::progress_bar bar(10, {.description = "steps"});
  bar.update(3);
  std::vector<int> values = ray::get_with_progress(std::move(refs), {.description = "refs"});
  int sum = 0;
  for (int r : ray::with_progress(std::move(stream), values.size())) sum += r;
  return bar.line(std::chrono::seconds(1)) + std::to_string(sum + static_cast<int>(bar.done()));
}

}  // namespace header_check_progress
