// pipe.hpp alone: a duplex and a one-way pipe, send, recv, poll and close.
#include <chrono>
#include <coray/pipe.hpp>
#include <string>

namespace header_check_pipe {

std::string uses() {
  auto [a, b] = ray::pipe<std::string>();
  a.send("hi");
  std::string got = b.recv();
  auto [r, w] = ray::pipe<int>(false, 4096);
  w.send(1);
  if (r.poll(std::chrono::milliseconds(1)) && r.readable() && !r.writable()) got += "!";
  r.close();
  return got + std::to_string(static_cast<bool>(r));
}

}  // namespace header_check_pipe
