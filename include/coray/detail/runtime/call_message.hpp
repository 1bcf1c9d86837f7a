#pragma once
/// The call format: how a call's arguments are laid out, from the moment `task<f>.remote`
/// encodes them to the moment the callee's invoker reads them. This file is its only writer
/// (`task_spec`'s add_*, `write_call_args`) and its only reader (`call_reader`,
/// `read_submission`); the driver and the workers both rewrite dependencies through
/// `write_call_args`.
///
/// A call is a `task_header` followed by `nargs` 16-byte `arg_entry` records, each followed
/// by its inline bytes padded to 16. In the process that made the call an entry may name a
/// dependency (an `object_ref` argument); before the call reaches its callee every
/// dependency is replaced by the value it stands for.

#include <algorithm>
#include <coray/detail/runtime/object_state.hpp>
#include <coray/detail/runtime/recycled.hpp>
#include <coray/detail/runtime/resource_request.hpp>
#include <coray/detail/runtime/stream_state.hpp>
#include <coray/detail/shm/segment.hpp>
#include <coray/errors.hpp>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

inline constexpr std::size_t pad16(std::size_t n) noexcept { return (n + 15) & ~std::size_t{15}; }

struct task_header {
  std::uint64_t task_id;
  std::uint64_t fn_id;
  std::uint32_t nargs;
  /// submit: actor ids after the args; construct: max_concurrency and the flags below;
  /// run_task: an actor call's concurrency group (its group_hash; 0: its method's).
  std::uint32_t extra;
  std::uint64_t target;      // submit: the actor to call, 0 for any task worker; construct: its id
  std::int32_t max_retries;  // submit: retries after a crash or a retryable exception;
                             // construct: how many times the actor was built before
  /// run_task, construct: the GPUs the call runs with, a mask of indices; submit: an actor
  /// call's concurrency group, as run_task's `extra`.
  std::uint32_t gpus;
  std::uint64_t retry_matcher;  // which exceptions are retried: 0 none, 1 all, else a matcher id
  std::uint32_t refs;           // submit: ids of the refs inside the arguments, after the actor ids
  std::uint32_t returns;        // submit: results the caller awaits by the ids after task_id
                                // (ray::returns); returns_stream: a streaming generator's call
};
static_assert(sizeof(task_header) == 56);

/// In a construct message's `extra`, beside the actor's max_concurrency: its plain methods
/// run on its loop thread, one at a time, however many calls may run at once
/// (actor_options::threaded false); without it they run on method threads.
inline constexpr std::uint32_t plain_methods_on_loop = std::uint32_t{1} << 31;
/// In a construct message's `extra`: the actor has concurrency groups, sent as one more
/// argument after the constructor's (a std::vector<std::pair<std::string, std::uint32_t>>).
inline constexpr std::uint32_t has_concurrency_groups = std::uint32_t{1} << 30;
/// The largest max_concurrency, below the flags.
inline constexpr std::uint32_t max_concurrency_limit = has_concurrency_groups - 1;
/// In a submission's `extra`, beside its count of actor ids: the call asks for resources
/// other than a task's default ({CPU: 1}), written last (write_resource_request). A default
/// call carries nothing more.
inline constexpr std::uint32_t carries_resources = std::uint32_t{1} << 31;

/// One task argument; inline bytes follow the entry, padded to 16.
struct arg_entry {
  /// dependency_list: a std::vector<T> argument given as refs, assembled from the values of
  /// `len` dependencies (indices ref.. in the driver; a worker's submission lists their ids
  /// after the entry).
  enum tag_t : std::uint8_t {
    inline_value = 0,
    block_value = 1,
    dependency = 2,
    dependency_list = 3
  };
  std::uint8_t tag = inline_value;
  std::uint8_t owned = 0;  // block_value: the sender's reference passes to the call (else borrowed)
  std::uint8_t pad = 0;    // dependency_list: zero bytes between the count and the elements
  std::uint8_t reserved = 0;
  std::uint32_t len = 0;
  std::uint64_t ref = 0;  // block offset, or dependency index (driver) / object id (worker submit)
};
static_assert(sizeof(arg_entry) == 16);

/// Bytes an entry's payload occupies after it in a call.
inline std::size_t entry_payload(const arg_entry& e) noexcept {
  if (e.tag == arg_entry::inline_value) return pad16(e.len);
  if (e.tag == arg_entry::dependency_list && e.owned) return pad16(e.len * sizeof(std::uint64_t));
  return 0;
}

/// Walks argument records. Bounds are checked: a worker reads what another process wrote.
class call_reader {
 public:
  struct entry {
    arg_entry e;
    const std::byte* payload;  // entry_payload(e) bytes
  };
  call_reader(std::span<const std::byte> args) noexcept
      : p_(args.data()), end_(args.data() + args.size()) {}

  /// The next record; throws codec_error if the bytes end first.
  entry next() {
    if (static_cast<std::size_t>(end_ - p_) < sizeof(arg_entry))
      throw codec_error("coray: call has fewer arguments than its function");
    entry out;
    std::memcpy(&out.e, p_, sizeof out.e);
    p_ += sizeof out.e;
    out.payload = p_;
    const std::size_t n = entry_payload(out.e);
    const std::size_t need = out.e.tag == arg_entry::inline_value ? out.e.len : n;
    if (static_cast<std::size_t>(end_ - p_) < need)
      throw codec_error("coray: malformed call arguments");
    p_ += std::min<std::size_t>(n, static_cast<std::size_t>(end_ - p_));
    return out;
  }

  /// The bytes of the next argument as its callee reads them: inline, or its store block.
  std::span<const std::byte> next_value(segment& seg) {
    entry x = next();
    if (x.e.tag == arg_entry::block_value) {
      auto* b = seg.at<object_block>(x.e.ref);
      return {b->data(), static_cast<std::size_t>(b->size)};
    }
    if (x.e.tag != arg_entry::inline_value) throw codec_error("coray: malformed call arguments");
    return {x.payload, x.e.len};
  }

 private:
  const std::byte* p_;
  const std::byte* end_;
};

/// Calls f(entry, payload) for each of `nargs` records of arguments written by this process.
template <class F>
void for_each_entry(std::span<const std::byte> args, std::uint32_t nargs, F&& f) {
  const std::byte* p = args.data();
  for (std::uint32_t i = 0; i < nargs; ++i) {
    arg_entry e;
    std::memcpy(&e, p, sizeof e);
    f(e, p + sizeof e);
    p += sizeof e + entry_payload(e);
  }
}

/// A call's list of actor handles (kept alive while it travels) may also name mutable shared
/// blocks (ray::shared_value, ray::mutex): the block's offset, tagged with this bit.
inline constexpr std::uint64_t pinned_block_tag = std::uint64_t{1} << 63;

/// A call's argument records. Most calls carry one or a few small arguments (an int's record
/// is 32 bytes): the first 32 bytes are in place, in the task_spec and then in the driver's
/// task_record, so a call of one small argument allocates nothing for it; up to 64 come from a
/// per-thread list of buffers (small_buffer_allocator) instead of malloc, which took about 280
/// of the driver's instructions per call (malloc on submit, free on finish); more, from
/// operator new. Bytes that resize adds are zero, as a vector's would be (the padding of an
/// inline argument travels in the message).
class call_bytes {
 public:
  call_bytes() noexcept {}  // NOLINT: the union's member is chosen by cap_
  call_bytes(call_bytes&& o) noexcept : size_(o.size_), cap_(o.cap_) {
    if (o.cap_ > in_place) {
      heap_ = o.heap_;
      o.cap_ = in_place;
      o.size_ = 0;
    } else {
      std::memcpy(here_, o.here_, in_place);
    }
  }
  call_bytes& operator=(call_bytes&& o) noexcept {
    if (this != &o) {
      release();
      ::new (static_cast<void*>(this)) call_bytes(std::move(o));
    }
    return *this;
  }
  call_bytes(const call_bytes&) = delete;  // copy_bytes copies
  call_bytes& operator=(const call_bytes&) = delete;
  ~call_bytes() { release(); }

  std::byte* data() noexcept { return cap_ > in_place ? heap_ : here_; }
  const std::byte* data() const noexcept { return cap_ > in_place ? heap_ : here_; }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  operator std::span<const std::byte>() const noexcept {  // NOLINT: implicit, as a vector's
    return {data(), size_};
  }
  /// Grows (new bytes zero) or shrinks to `n` bytes, keeping the first ones.
  void resize(std::size_t n) {
    if (n > cap_) grow(n);
    if (n > size_) std::memset(data() + size_, 0, n - size_);
    size_ = static_cast<std::uint32_t>(n);
  }

 private:
  static constexpr std::uint32_t in_place = 32, pooled = 64;
  using pool = small_buffer_allocator<std::byte, pooled, 4096>;

  void grow(std::size_t n) {
    if (n > std::uint32_t(-1)) throw std::length_error("coray: a call's arguments exceed 4 GiB");
    const std::size_t cap = n <= pooled ? pooled : std::max<std::size_t>(n, std::size_t{cap_} * 2);
    std::byte* p = pool().allocate(cap);
    std::memcpy(p, data(), size_);
    release_heap();
    heap_ = p;
    cap_ = static_cast<std::uint32_t>(cap);
  }
  void release_heap() noexcept {
    if (cap_ > in_place) pool().deallocate(heap_, cap_);
  }
  void release() noexcept {
    release_heap();
    cap_ = in_place;
    size_ = 0;
  }

  std::uint32_t size_ = 0;
  std::uint32_t cap_ = in_place;
  union {
    std::byte here_[in_place];
    std::byte* heap_;
  };
};
/// `to` becomes a copy of `from`.
inline void copy_bytes(call_bytes& to, const call_bytes& from) {
  to.resize(from.size());
  if (!from.empty()) std::memcpy(to.data(), from.data(), from.size());
}

/// A remote call as built by task<f>.remote(): the callee, its encoded arguments, the objects
/// it depends on and the store blocks its large arguments occupy. The add_* members are the
/// only writers of argument records.
struct task_spec {
  std::uint64_t fn_id = 0;
  std::string_view name;
  call_bytes args;  // arg_entry records
  std::uint32_t nargs = 0;
  std::vector<state_ptr> deps;        // arg_entry::dependency refers to these by index
  std::vector<object_block*> blocks;  // owned; released when the task ends
  std::uint64_t target_actor = 0;     // the actor to call; 0 for any task worker
  int max_retries = 0;                // re-runs after a crash or a retryable exception
  std::uint64_t retry_matcher = 0;    // 0: exceptions are final; 1: all retried; else a matcher
  held_contents held;  // refs and actor handles inside the arguments: kept alive until it ends
  std::shared_ptr<const resource_request> resources;  // a task's requirement; null: {CPU: 1}
  std::uint32_t group = 0;  // an actor call's concurrency group (group_hash); 0: its method's
  /// A call of a function returning ray::returns: the caller's refs, one per result, which
  /// take their values when the call's own result (a ref to each) settles; null otherwise.
  std::unique_ptr<std::vector<state_ptr>> returns;
  /// A call of a streaming generator: where its items go (the driver's); null otherwise.
  std::shared_ptr<stream_state> stream;

  /// Appends an inline argument of `size` bytes written by `fill`.
  template <class Fill>
  void add_inline(std::size_t size, Fill&& fill) {
    std::size_t at = args.size();
    args.resize(at + sizeof(arg_entry) + pad16(size));
    arg_entry e{.tag = arg_entry::inline_value, .len = static_cast<std::uint32_t>(size)};
    std::memcpy(args.data() + at, &e, sizeof e);
    fill(args.data() + at + sizeof(arg_entry));
    ++nargs;
  }
  /// Appends a block made for this call; the call owns its reference.
  void add_block(segment& seg, object_block* b) {
    blocks.push_back(b);
    add_entry({.tag = arg_entry::block_value, .owned = 1, .ref = seg.offset_of(b)});
  }
  /// Appends a std::vector<T> argument given as refs: each element is a dependency, and
  /// `pad` zero bytes separate the count from the elements in the vector's encoding.
  void add_dependency_list(const std::vector<state_ptr>& refs, std::uint8_t pad) {
    add_entry({.tag = arg_entry::dependency_list,
               .pad = pad,
               .len = static_cast<std::uint32_t>(refs.size()),
               .ref = deps.size()});
    deps.insert(deps.end(), refs.begin(), refs.end());
  }
  void add_dependency(state_ptr s) {
    add_entry({.tag = arg_entry::dependency, .ref = deps.size()});
    deps.push_back(std::move(s));
  }

 private:
  void add_entry(const arg_entry& e) {
    std::size_t at = args.size();
    args.resize(at + sizeof e);
    std::memcpy(args.data() + at, &e, sizeof e);
    ++nargs;
  }
};

/// What ray::spawn asks besides the constructor's call; a worker's spawn sends it encoded.
struct actor_spawn_fields {
  std::uint64_t type_id = 0;
  std::string type_name;
  std::string name;
  std::uint32_t max_concurrency = 1;  // | plain_methods_on_loop
  int max_restarts = 0;
  int max_task_retries = 0;
  /// How its process is started: 0 by the runtime's start method, else 1 + a start_method_id
  /// (a ray::process of a context that chose one).
  std::uint32_t start_as = 0;
  placement where;  // which node, in a cluster
};
/// What ray::spawn asks of the driver.
struct actor_spawn_request : actor_spawn_fields {
  task_spec constructor;  // fn_id: the constructor invoker; args: the constructor's
  /// What it holds for life; null: nothing (it needs 1 CPU to be placed, as Ray's actors).
  std::shared_ptr<const resource_request> resources;
};

/// The encoded size of the vector a dependency list stands for: count, padding, elements.
inline std::size_t dependency_list_bytes(const arg_entry& e, const std::vector<state_ptr>& deps) {
  std::size_t n = sizeof(std::uint64_t) + e.pad;
  for (std::uint32_t i = 0; i < e.len; ++i) n += deps[e.ref + i]->value_bytes().size();
  return n;
}

/// Writes that vector's encoding from the elements' values (all ready) at `out`.
inline void write_dependency_list(std::byte* out, const arg_entry& e,
                                  const std::vector<state_ptr>& deps) {
  const std::uint64_t count = e.len;
  std::memcpy(out, &count, sizeof count);
  out += sizeof count;
  std::memset(out, 0, e.pad);
  out += e.pad;
  for (std::uint32_t i = 0; i < e.len; ++i) {
    auto bytes = deps[e.ref + i]->value_bytes();
    if (!bytes.empty()) std::memcpy(out, bytes.data(), bytes.size());
    out += bytes.size();
  }
}

/// The arguments of a call with each dependency rewritten for the next hop: a settled one
/// becomes its value (inline bytes, or its store block, borrowed: the receiver takes a
/// reference of its own), a pending one its object id (only a worker's submission to the
/// driver has those; the driver sends a call once every dependency is ready). A list whose
/// elements are all settled is assembled into the vector's encoding; else it travels as ids
/// (`owned` marks that form).
class call_args_rewriter {
 public:
  call_args_rewriter(std::span<const std::byte> args, std::uint32_t nargs,
                     const std::vector<state_ptr>& deps)
      : args_(args), nargs_(nargs), deps_(deps) {}

  /// Bytes write() produces.
  std::size_t size() const {
    std::size_t size = 0;
    for_each_entry(args_, nargs_, [&](const arg_entry& e, const std::byte*) {
      size += sizeof(arg_entry);
      if (e.tag == arg_entry::inline_value) size += pad16(e.len);
      if (e.tag == arg_entry::dependency) {
        auto& d = *deps_[e.ref];
        if (d.settled() && !d.block) size += pad16(d.bytes.size());
      }
      if (e.tag == arg_entry::dependency_list) {
        if (list_ready(e)) {
          size += pad16(dependency_list_bytes(e, deps_));
        } else {
          for (std::uint32_t i = 0; i < e.len; ++i)
            if (!deps_[e.ref + i]->id)
              throw usage_error(
                  "coray: a list of refs mixing values put in a task with pending results cannot "
                  "be passed from a task yet");
          size += pad16(e.len * sizeof(std::uint64_t));
        }
      }
    });
    return size;
  }

  /// Writes the rewritten records at `p` (size() bytes).
  void write(std::byte* p, segment& seg) const {
    for_each_entry(args_, nargs_, [&](const arg_entry& e, const std::byte* data) {
      arg_entry o = e;
      const std::byte* src = data;
      if (e.tag == arg_entry::dependency_list) {
        if (list_ready(e)) {
          o = {.tag = arg_entry::inline_value,
               .len = static_cast<std::uint32_t>(dependency_list_bytes(e, deps_))};
          std::memcpy(p, &o, sizeof o);
          write_dependency_list(p + sizeof o, e, deps_);
          p += sizeof o + pad16(o.len);
        } else {
          o.owned = 1;  // ids follow
          std::memcpy(p, &o, sizeof o);
          p += sizeof o;
          for (std::uint32_t i = 0; i < e.len; ++i) {
            const std::uint64_t id = deps_[e.ref + i]->id;
            std::memcpy(p + i * sizeof id, &id, sizeof id);
          }
          p += pad16(e.len * sizeof(std::uint64_t));
        }
        return;
      }
      if (e.tag == arg_entry::dependency) {
        auto& d = *deps_[e.ref];
        if (!d.settled()) {
          o.ref = d.id;
        } else if (d.block) {
          o = {.tag = arg_entry::block_value, .ref = seg.offset_of(d.block)};
        } else {
          o = {.tag = arg_entry::inline_value, .len = static_cast<std::uint32_t>(d.bytes.size())};
          src = d.bytes.data();
        }
      }
      std::memcpy(p, &o, sizeof o);
      p += sizeof o;
      if (o.tag == arg_entry::inline_value) {
        if (o.len) std::memcpy(p, src, o.len);
        p += pad16(o.len);
      }
    });
  }

 private:
  bool list_ready(const arg_entry& e) const {
    for (std::uint32_t i = 0; i < e.len; ++i)
      if (!deps_[e.ref + i]->settled()) return false;
    return true;
  }
  std::span<const std::byte> args_;
  std::uint32_t nargs_;
  const std::vector<state_ptr>& deps_;
};

/// A resource request as a submission carries it, after everything else: CPU and GPU
/// amounts, each custom resource (its name's length, its name, its amount), then the
/// length of all that, so that a reader finds it from the end.
inline std::size_t resource_request_bytes(const resource_request& r) noexcept {
  std::size_t n = 2 * sizeof(resource_amount) + 4 * sizeof(std::uint32_t) + sizeof(std::uint64_t);
  for (const auto& [name, a] : r.custom) n += sizeof(std::uint32_t) + name.size() + sizeof a;
  return n + sizeof(std::uint32_t);
}
inline void write_resource_request(std::byte* out, const resource_request& r) noexcept {
  std::byte* p = out;
  auto put = [&](const void* v, std::size_t n) {
    if (n) std::memcpy(p, v, n);
    p += n;
  };
  put(&r.cpu, sizeof r.cpu);
  put(&r.gpu, sizeof r.gpu);
  const std::int32_t node = r.where.node;
  const std::uint32_t how = (r.where.soft ? 1u : 0u) | (r.where.spread ? 2u : 0u);
  put(&node, sizeof node);
  put(&how, sizeof how);
  put(&r.where.group, sizeof r.where.group);
  put(&r.where.bundle, sizeof r.where.bundle);
  const auto count = static_cast<std::uint32_t>(r.custom.size());
  put(&count, sizeof count);
  for (const auto& [name, a] : r.custom) {
    const auto len = static_cast<std::uint32_t>(name.size());
    put(&len, sizeof len);
    put(name.data(), name.size());
    put(&a, sizeof a);
  }
  const auto total = static_cast<std::uint32_t>(p - out);
  put(&total, sizeof total);
}
/// Reads the request at the end of `payload` and returns the bytes before it; throws
/// codec_error if it is malformed (lengths out of bounds, an amount below 0).
inline std::span<const std::byte> read_resource_request(std::span<const std::byte> payload,
                                                        resource_request& r) {
  auto malformed = [] { throw codec_error("coray: a malformed resource request"); };
  std::uint32_t total;
  if (payload.size() < sizeof total) malformed();
  std::memcpy(&total, payload.data() + payload.size() - sizeof total, sizeof total);
  if (total > payload.size() - sizeof total) malformed();
  const std::byte* p = payload.data() + payload.size() - sizeof total - total;
  const std::byte* const end = p + total;
  auto get = [&](void* v, std::size_t n) {
    if (static_cast<std::size_t>(end - p) < n) malformed();
    if (n) std::memcpy(v, p, n);
    p += n;
  };
  get(&r.cpu, sizeof r.cpu);
  get(&r.gpu, sizeof r.gpu);
  std::int32_t node;
  std::uint32_t how, count;
  std::uint64_t group;
  std::int32_t bundle;
  get(&node, sizeof node);
  get(&how, sizeof how);
  get(&group, sizeof group);
  get(&bundle, sizeof bundle);
  get(&count, sizeof count);
  if (r.cpu < 0 || r.gpu < 0 || node < -1 || how > 3 || bundle < -1) malformed();
  r.where = {node, (how & 1) != 0, (how & 2) != 0, group, bundle};
  for (std::uint32_t i = 0; i < count; ++i) {
    std::uint32_t len;
    get(&len, sizeof len);
    if (static_cast<std::size_t>(end - p) < len) malformed();
    std::string name(reinterpret_cast<const char*>(p), len);
    p += len;
    resource_amount a;
    get(&a, sizeof a);
    if (a <= 0) malformed();
    r.custom.emplace(std::move(name), a);
  }
  if (p != end) malformed();
  return payload.first(payload.size() - sizeof total - total);
}

/// The message that sends a call: its header, its arguments with dependencies rewritten
/// (call_args_rewriter) and, in a worker's submission, the actor handles it carries and the
/// ids of the refs inside its arguments (h.refs of them), then the resources it asks for
/// when they are not a task's default (`resources`; h.extra says so: carries_resources).
class call_message_writer {
 public:
  call_message_writer(const task_header& h, std::span<const std::byte> args,
                      const std::vector<state_ptr>& deps,
                      std::span<const std::uint64_t> actors = {},
                      std::span<const std::uint64_t> refs = {},
                      const resource_request* resources = nullptr)
      : h_(h),
        args_(args, h.nargs, deps),
        args_size_(args_.size()),
        actors_(actors),
        refs_(refs),
        resources_(resources),
        resources_size_(resources ? resource_request_bytes(*resources) : 0) {}

  std::size_t size() const noexcept {
    return sizeof(task_header) + args_size_ + actors_.size_bytes() + refs_.size_bytes() +
           resources_size_;
  }
  void write(std::byte* out, segment& seg) const {
    std::memcpy(out, &h_, sizeof h_);
    args_.write(out + sizeof h_, seg);
    std::byte* tail = out + sizeof h_ + args_size_;
    if (!actors_.empty()) std::memcpy(tail, actors_.data(), actors_.size_bytes());
    if (!refs_.empty()) std::memcpy(tail + actors_.size_bytes(), refs_.data(), refs_.size_bytes());
    if (resources_) [[unlikely]]
      write_resource_request(tail + actors_.size_bytes() + refs_.size_bytes(), *resources_);
  }

 private:
  task_header h_;
  call_args_rewriter args_;
  std::size_t args_size_;
  std::span<const std::uint64_t> actors_;
  std::span<const std::uint64_t> refs_;
  const resource_request* resources_;
  std::size_t resources_size_;
};

/// A worker's submission read back into the driver's form: the call, with dependencies by id
/// turned into indices into spec.deps and the refs inside its arguments into spec.held
/// (`resolve(id)` and `resolve_ref(id)` give the state, or null for an id the sender does not
/// hold; the second also makes a ref's id known to the driver's directory), blocks
/// collected with `take_block(offset, owned)`, and `known` false when it names an object or
/// a block its sender does not hold (or is malformed).
struct submission {
  task_header header{};
  task_spec spec;
  bool known = true;
};
template <class HoldsBlock, class Resolve, class ResolveRef, class TakeBlock>
submission read_submission(std::span<const std::byte> payload, HoldsBlock&& holds_block,
                           Resolve&& resolve, ResolveRef&& resolve_ref, TakeBlock&& take_block) {
  submission out;
  task_header& h = out.header;
  task_spec& spec = out.spec;
  if (payload.size() < sizeof h) throw codec_error("coray: malformed submission");
  std::memcpy(&h, payload.data(), sizeof h);
  if (h.extra & carries_resources) [[unlikely]] {
    // The call's resource request, last: the rest is read as a default call's.
    resource_request r;
    payload = payload.first(sizeof h + read_resource_request(payload.subspan(sizeof h), r).size());
    h.extra &= ~carries_resources;
    spec.resources = std::make_shared<const resource_request>(std::move(r));
  }
  spec.fn_id = h.fn_id;
  spec.target_actor = h.target;
  spec.max_retries = h.max_retries;
  spec.retry_matcher = h.retry_matcher;
  spec.group = h.gpus;
  const std::size_t actor_bytes = std::size_t{h.extra} * sizeof(std::uint64_t);
  const std::size_t ref_bytes = std::size_t{h.refs} * sizeof(std::uint64_t);
  if (payload.size() < sizeof h + actor_bytes + ref_bytes)
    throw codec_error("coray: malformed submission");
  const std::byte* tail = payload.data() + payload.size() - actor_bytes - ref_bytes;
  if (h.extra || h.refs) [[unlikely]] {
    object_contents& held = contents_of(spec.held);
    held.actors.resize(h.extra);
    if (actor_bytes) std::memcpy(held.actors.data(), tail, actor_bytes);
    for (std::uint32_t k = 0; k < h.refs; ++k) {
      std::uint64_t id;
      std::memcpy(&id, tail + actor_bytes + k * sizeof id, sizeof id);
      state_ptr s = resolve_ref(id);
      if (!s) {
        out.known = false;
        continue;
      }
      held.refs.push_back(std::move(s));
    }
    for (std::uint64_t& a : held.actors)
      if ((a & pinned_block_tag) && !holds_block(a & ~pinned_block_tag)) {
        a = 0;  // a block its sender does not hold: the call is refused
        out.known = false;
      }
  }
  auto dep = [&](std::uint64_t id) {
    state_ptr s = resolve(id);
    if (!s) {
      out.known = false;
      s = state_ptr::adopt(new object_state);  // a placeholder: the caller fails the call
    }
    spec.deps.push_back(std::move(s));
  };
  call_reader reader(
      payload.subspan(sizeof h, payload.size() - sizeof h - actor_bytes - ref_bytes));
  for (std::uint32_t i = 0; i < h.nargs; ++i) {
    auto [e, data] = reader.next();
    if (e.tag == arg_entry::dependency_list) {
      if (!e.owned) throw codec_error("coray: malformed submission");  // lists travel as ids
      const std::uint32_t n = e.len;
      e.owned = 0;
      e.ref = spec.deps.size();
      for (std::uint32_t k = 0; k < n; ++k) {
        std::uint64_t id;
        std::memcpy(&id, data + k * sizeof id, sizeof id);
        dep(id);
      }
    } else if (e.tag == arg_entry::dependency) {
      const std::uint64_t id = e.ref;
      e.ref = spec.deps.size();
      dep(id);
    } else if (e.tag == arg_entry::block_value) {
      spec.blocks.push_back(take_block(e.ref, e.owned != 0));
    }
    const std::size_t at = spec.args.size();
    spec.args.resize(at + sizeof e + entry_payload(e));
    std::memcpy(spec.args.data() + at, &e, sizeof e);
    if (e.tag == arg_entry::inline_value && e.len)
      std::memcpy(spec.args.data() + at + sizeof e, data, e.len);
  }
  spec.nargs = h.nargs;
  return out;
}

}  // namespace detail
CORAY_END_NAMESPACE
