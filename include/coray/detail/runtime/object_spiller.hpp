#pragma once
/// The driver's allocation of object blocks, with spilling (runtime_options::spill_directory):
/// when the store is full, objects only the driver holds and nothing reads in place go to
/// one unnamed file (O_TMPFILE, so a kill -9 leaves nothing) until the new block fits.
/// Driver only, loop thread only.

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <coray/detail/runtime/object_state.hpp>
#include <coray/detail/shm/segment.hpp>
#include <coray/errors.hpp>
#include <cstring>
#include <deque>
#include <string>
#include <unordered_set>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

class object_spiller {
 public:
  /// `directory` empty: no spilling.
  object_spiller(segment& seg, const std::string& directory) : seg_(seg) {
    if (directory.empty()) return;
    fd_ = ::open(directory.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd_ < 0)
      throw ray::runtime_error(
          fmt::format("coray: cannot spill to {}: {}", directory, std::strerror(errno)));
  }
  object_spiller(const object_spiller&) = delete;
  object_spiller& operator=(const object_spiller&) = delete;
  ~object_spiller() {
    if (fd_ >= 0) ::close(fd_);
  }

  bool enabled() const noexcept { return fd_ >= 0; }
  std::uint64_t spilled_objects() const noexcept { return spilled_objects_; }

  /// A new block of `size` payload bytes; spills what it may to make room. Throws
  /// object_store_full when even that is not enough.
  object_block* allocate(std::size_t size) {
    for (;;) {
      try {
        return seg_.new_object(size);
      } catch (const object_store_full&) {
        if (!spill_one()) throw;
      }
    }
  }

  /// A driver state now holds a block: it may be spilled, and the state API lists it.
  void adopted(object_state& s) { held_.insert(&s); }
  /// A driver state is going away. Most hold no block (inline values): one test each.
  void released(object_state& s) noexcept {
    if (!s.block && !s.spilled()) return;
    held_.erase(&s);
    if (s.spilled()) punch(s);
  }
  /// Each driver state with a value in the store or in the spill file (ray::state's
  /// list_objects). Loop thread.
  template <class F>
  void for_each_held(F&& f) const {
    for (const object_state* s : held_) f(*s);
  }

  /// Brings a spilled object back into the store (into `b`, a block of its size).
  void restore(object_state& s, object_block* b) {
    std::size_t done = 0;
    const std::uint64_t size = s.spill_size();
    while (done < size) {
      ssize_t n =
          ::pread(fd_, b->data() + done, size - done, s.spill_offset() + static_cast<off_t>(done));
      if (n <= 0) {
        seg_.release(b);
        throw ray::runtime_error(std::string("coray: reading a spilled object failed: ") +
                                 std::strerror(errno));
      }
      done += static_cast<std::size_t>(n);
    }
    punch(s);
    s.block = b;
  }

  void clear() noexcept { held_.clear(); }

 private:
  /// Writes one object held by the driver alone, with nothing reading it in place, to the
  /// file and frees its block. False if there is none (or the disk is full).
  bool spill_one() {
    if (!enabled()) return false;
    for (object_state* s : held_) {
      if (!s->block || s->pins || s->block->refs.load(std::memory_order_relaxed) != 1 ||
          s->st != object_state::status::ready)
        continue;
      const std::size_t size = static_cast<std::size_t>(s->block->size);
      const off_t at = static_cast<off_t>(end_);
      std::size_t done = 0;
      while (done < size) {
        ssize_t n =
            ::pwrite(fd_, s->block->data() + done, size - done, at + static_cast<off_t>(done));
        if (n <= 0) return false;  // disk full: the store stays full
        done += static_cast<std::size_t>(n);
      }
      end_ += (size + 4095) & ~std::uint64_t{4095};
      s->set_spilled(at, size);
      seg_.release(s->block);
      s->block = nullptr;
      ++spilled_objects_;
      return true;
    }
    return false;
  }

  /// Frees a spilled copy's disk space.
  void punch(object_state& s) noexcept {
    ::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, s.spill_offset(),
                static_cast<off_t>(s.spill_size()));
    s.clear_spilled();
  }

  segment& seg_;
  int fd_ = -1;
  std::uint64_t end_ = 0;
  std::uint64_t spilled_objects_ = 0;
  // Driver objects in the store (spillable when nothing reads them) or spilled (skipped).
  std::unordered_set<object_state*> held_;
};

}  // namespace detail
CORAY_END_NAMESPACE
