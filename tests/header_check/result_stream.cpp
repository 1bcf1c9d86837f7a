// result_stream.hpp alone: taking results one by one, iterating and in a coroutine.
#include <coray/result_stream.hpp>
#include <optional>

namespace header_check_result_stream {

ray::async<int> drain(ray::result_stream<int>& stream) {
  int sum = 0;
  while (auto r = co_await stream.next_async()) sum += *r;
  co_return sum;
}

int uses(ray::result_stream<int>& stream) {
  int sum = 0;
  for (int r : stream) sum += r;
  if (std::optional<int> r = stream.next()) sum += *r;
  return sum + ray::sync_wait(drain(stream));
}

}  // namespace header_check_result_stream
