// A streaming generator: a task reads a large file and co_yields its lines one by one; the
// driver consumes each line as soon as it is read, long before the file's end, and the
// reader never runs more than a window of lines ahead of it (Ray's num_returns="streaming").
#include <unistd.h>

#include <coray/coray.hpp>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

ray::generator<std::string> lines_of(std::string path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  for (std::string line; std::getline(in, line);) co_yield line;
}

int main(int argc, char** argv) {
  ray::runtime rt(argc, argv, {.num_workers = 2});

  // A file of 200,000 lines (about 5 MB), made for the example.
  const std::string path = "/tmp/coray_lines_" + std::to_string(getpid()) + ".txt";
  {
    std::ofstream out(path);
    for (int i = 0; i < 200000; ++i) out << "line " << i << " of the example's file\n";
  }

  long lines = 0, words = 0;
  std::string first;
  for (ray::object_ref<std::string> item : ray::task<lines_of>.remote(path)) {
    std::string line = ray::get(item);
    if (lines++ == 0) first = line;
    std::istringstream split(line);
    for (std::string w; split >> w;) ++words;
  }
  std::remove(path.c_str());
  std::printf("%ld lines, %ld words; the first: \"%s\"\n", lines, words, first.c_str());
  return lines == 200000 && words == 200000L * 6 ? 0 : 1;
}
