// libFuzzer target for the codec: any bytes, decoded as any of several nested types, must
// either decode or throw ray::codec_error -- never read out of bounds, crash or hang. The
// first byte picks the type. Built with clang's -fsanitize=fuzzer,address,undefined for
// fuzzing (preset `fuzz`); built without it, main() replays files given on the command line,
// so CI can run the corpus with any compiler.
//
//   ./codec_fuzz -max_total_time=600 tests/fuzz/corpus     (fuzz, clang)
//   ./codec_fuzz --write-corpus tests/fuzz/corpus           (regenerate the seed corpus)
#include <coray/codec.hpp>
#include <coray/detail/runtime/wire.hpp>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

namespace {

struct point {
  double x, y;
};
struct record {
  std::string name;
  std::vector<point> path;
  std::optional<std::map<std::string, std::int32_t>> tags;
  std::variant<std::monostate, std::int64_t, std::string, std::vector<bool>> payload;
};
struct with_serialize {
  std::vector<std::string> words;
  std::pair<std::uint8_t, bool> flags;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(words, flags);
  }
};
// How an exception crosses processes (kind, type name, what, function, figures).
using ray::detail::wire_error;

template <class T>
void try_decode(std::span<const std::byte> bytes) {
  try {
    T v = ray::decode<T>(bytes);
    // A value that decodes must encode back to the same bytes (the codec is canonical
    // for these types, up to padding it ignores).
    (void)ray::encode(v);
  } catch (const ray::codec_error&) {
  }
}

template <class T>
void try_view(std::span<const std::byte> bytes) {
  // Views need 16-byte aligned input, as the runtime guarantees.
  alignas(16) static std::byte aligned[1 << 16];
  if (bytes.size() > sizeof aligned) return;
  std::memcpy(aligned, bytes.data(), bytes.size());
  try {
    (void)ray::decode<T>(std::span<const std::byte>(aligned, bytes.size()));
  } catch (const ray::codec_error&) {
  }
}

constexpr int kinds = 9;

void decode_as(int kind, std::span<const std::byte> b) {
  switch (kind % kinds) {
    case 0:
      try_decode<std::int64_t>(b);
      break;
    case 1:
      try_decode<std::string>(b);
      break;
    case 2:
      try_decode<std::vector<double>>(b);
      break;
    case 3:
      try_decode<std::map<std::string, std::vector<std::optional<std::pair<int, std::string>>>>>(b);
      break;
    case 4:
      try_decode<record>(b);
      break;
    case 5:
      try_decode<with_serialize>(b);
      break;
    case 6:
      try_decode<wire_error>(b);
      break;
    case 7:
      try_view<std::span<const double>>(b);
      break;
    case 8:
      try_view<std::string_view>(b);
      break;
  }
}

[[maybe_unused]] void write_corpus(const std::string& dir) {
  int n = 0;
  auto put = [&](int kind, const std::vector<std::byte>& bytes) {
    std::ofstream f(dir + "/seed-" + std::to_string(n++), std::ios::binary);
    const char k = static_cast<char>(kind);
    f.write(&k, 1);
    f.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  };
  put(0, ray::encode(std::int64_t{-42}));
  put(1, ray::encode(std::string("hello coray")));
  put(2, ray::encode(std::vector<double>{1.5, 2.5, 3.5}));
  std::map<std::string, std::vector<std::optional<std::pair<int, std::string>>>> m;
  m["a"] = {std::nullopt, std::pair{1, std::string("x")}};
  m["bb"] = {};
  put(3, ray::encode(m));
  put(4,
      ray::encode(record{
          "r", {{1, 2}, {3, 4}}, std::map<std::string, std::int32_t>{{"k", 7}}, std::string("p")}));
  put(4, ray::encode(record{"", {}, std::nullopt, std::vector<bool>{true, false, true}}));
  put(5, ray::encode(with_serialize{{"one", "two"}, {3, true}}));
  put(6, ray::encode(wire_error{0, "std::out_of_range", "vector::_M_range_check", "f", {}}));
  put(7, ray::encode(std::vector<double>(40, 0.25)));
  put(8, ray::encode(std::string(100, 'z')));
  put(6, ray::encode(wire_error{std::uint8_t(ray::detail::error_kind::object_store_full),
                                "ray::object_store_full",
                                "object store full",
                                "f",
                                {100, 5, 64}}));
  std::printf("wrote %d seeds to %s\n", n, dir.c_str());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  decode_as(data[0],
            std::span<const std::byte>(reinterpret_cast<const std::byte*>(data) + 1, size - 1));
  return 0;
}

#ifndef CORAY_LIBFUZZER
int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "--write-corpus") == 0) {
    write_corpus(argv[2]);
    return 0;
  }
  int files = 0;
  for (int i = 1; i < argc; ++i) {
    std::ifstream f(argv[i], std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
    // Every truncation and every single-byte corruption of a seed, as kinds of bad input.
    for (std::size_t cut = 0; cut < bytes.size(); ++cut)
      LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), cut);
    for (std::size_t at = 1; at < bytes.size(); ++at) {
      auto bad = bytes;
      bad[at] = static_cast<char>(bad[at] ^ 0x5a);
      LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bad.data()), bad.size());
    }
    ++files;
  }
  std::printf("replayed %d inputs with their truncations and corruptions\n%d passed, 0 failed\n",
              files, files);
  return 0;
}
#endif
