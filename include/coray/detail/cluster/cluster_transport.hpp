#pragma once
/// Rank 0's transport in a cluster: this machine's processes through its shm_transport, the
/// other nodes' through frames to the node agents that run them (node_agent.hpp). The
/// orchestrator sees one list of slots: this machine's task workers, then the other nodes' in
/// rank order, then this machine's actor slots, then the other nodes' in rank order. Node n
/// (transport::node_of) is rank n.
///
/// A message to a remote slot travels with the bytes of each store block it names; the
/// node's agent copies them into its own segment (a large block's bytes are received straight
/// into it). A message back names rank 0's blocks (the agent rewrites its offsets) and brings
/// the bytes of those its workers wrote, which are in rank 0's blocks before the orchestrator
/// reads the message (a large block's received straight into them by the link's thread,
/// the small ones copied from the frame here). Loop thread only, but for the lander.
///
/// A node keeps a copy of each large block it was sent or its workers wrote (its secondary
/// copy; rank 0's block stays the primary), and rank 0 keeps a directory of them (`copies_`:
/// which nodes hold the block at an offset, the block told apart from earlier ones there by
/// the stamp rank 0 writes in its header). A message naming a block its node holds carries no
/// bytes (block_bytes::held). Rank 0 decides what each node keeps, within a quarter of its
/// store (copies_of's budget): it makes room by dropping the node's least recently named
/// copies from the directory and telling the node (a drop frame) before the message that
/// needs the room, so a copy rank 0 names is always there; a block larger than the budget is
/// sent without a stamp and not kept. A block freed here and its offset reused: the nodes
/// holding the old one are told to drop it.

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <coray/detail/cluster/channel.hpp>
#include <coray/detail/cluster/frame.hpp>
#include <coray/detail/runtime/shm_transport.hpp>
#include <coray/detail/runtime/transport.hpp>
#include <coray/detail/shm/segment.hpp>
#include <cstdint>
#include <cstring>
#include <memory>
#include <unordered_map>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail::cluster {

/// The nodes of the cluster this process drives (rank 0), for ray::nodes(); empty outside one.
/// Never destroyed: a runtime ended at exit (ray::init's) still clears it.
inline std::vector<node_record>& known_nodes() {
  static auto* nodes = new std::vector<node_record>;
  return *nodes;
}

class cluster_transport final : public transport {
 public:
  /// `nodes`: every rank but 0, with the task workers and actor slots each has.
  cluster_transport(shm_transport& local, segment& seg, std::uint32_t local_workers,
                    std::uint32_t actors, std::unique_ptr<channel> link,
                    std::vector<node_record> nodes)
      : local_(local),
        seg_(seg),
        local_workers_(local_workers),
        local_actors_(actors),
        link_(std::move(link)),
        nodes_(std::move(nodes)) {
    for (std::size_t n = 0; n < nodes_.size(); ++n)
      for (std::uint32_t j = 0; j < nodes_[n].workers; ++j) remote_.push_back({n, j});
    remote_workers_ = static_cast<std::uint32_t>(remote_.size());
    for (std::size_t n = 0; n < nodes_.size(); ++n)
      for (std::uint32_t j = 0; j < nodes_[n].actors; ++j)
        remote_.push_back({n, nodes_[n].workers + j});
    std::uint32_t task_at = local_workers_, actor_at = local_workers_ + remote_workers_ + actors;
    for (const auto& n : nodes_) {
      bases_.push_back({task_at, actor_at});
      task_at += n.workers;
      actor_at += n.actors;
    }
    states_ = std::make_unique<remote_state[]>(remote_.size());
    copy_bytes_.assign(nodes_.size(), 0);
    const auto total = local_workers + static_cast<std::uint32_t>(remote_.size()) + actors;
    signals_.resize(total);
    for (std::uint32_t g = 0; g < total; ++g) {
      if (const int r = remote_index(g); r >= 0) {
        remote_state& s = states_[r];
        signals_[g] = {&s.state, &s.suspended, &s.blocked_mark};
      } else {
        signals_[g] = local_.signals(to_local(g));
      }
    }
    link_->set_bell(&local_.header()->driver_bell);
    // A large block a node's worker wrote lands in rank 0's block the message names.
    link_->set_lander([this](int, const block_record& r) {
      object_block* b = checked_block(r.offset, static_cast<std::size_t>(r.size));
      return b ? landing{b->data(), r.offset} : landing{};
    });
    known_nodes() = nodes_;
  }

  ~cluster_transport() override {
    // Every node ends its processes and says so; then the link stops.
    if (!begun_) link_->begin();
    for (const auto& n : nodes_)
      if (n.alive) link_->post(n.rank, frame_writer(frame_type::shutdown).finish());
    std::size_t waiting = 0;
    for (const auto& n : nodes_) waiting += n.alive ? 1 : 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    int peer;
    std::vector<std::byte> f;
    while (waiting && std::chrono::steady_clock::now() < deadline) {
      if (!link_->take(peer, f)) {
        local_.header()->driver_bell.sleep([&] { return link_->has_frames(); },
                                           std::chrono::milliseconds(10));
        continue;
      }
      try {
        frame_view v(f);
        if (v.head.type == frame_type::bye) --waiting;
      } catch (const codec_error&) {
      }
    }
    known_nodes().clear();
  }

  std::uint32_t remote_workers() const noexcept { return remote_workers_; }

  // ---- where processes run ------------------------------------------------------------
  std::uint32_t node_count() const override {
    return 1 + static_cast<std::uint32_t>(nodes_.size());
  }
  std::uint32_t node_of(std::uint32_t g) const override {
    const int r = remote_index(g);
    return r < 0 ? 0 : static_cast<std::uint32_t>(remote_[r].node) + 1;
  }
  bool node_alive(std::uint32_t n) const override {
    if (n == 0) return local_.can_start();
    return n <= nodes_.size() && nodes_[n - 1].alive;
  }
  bool usage_of(std::uint32_t g, double& cpu_seconds, std::uint64_t& rss_bytes) const override {
    const int r = remote_index(g);
    if (r < 0 || states_[r].cpu_seconds < 0) return false;
    cpu_seconds = states_[r].cpu_seconds;
    rss_bytes = states_[r].rss_bytes;
    return true;
  }
  std::uint64_t copy_holders(const object_block* b) const override {
    const auto it = copies_.find(seg_.offset_of(b));
    return it != copies_.end() && it->second.stamp == b->reserved ? it->second.holders : 0;
  }

  // ---- processes ----------------------------------------------------------------------
  void start(std::uint32_t g) override {
    const int r = remote_index(g);
    if (r < 0) return local_.start(to_local(g));
    remote_state& s = states_[r];
    const where w = remote_[r];
    s.suspended.store(0, std::memory_order_relaxed);
    s.blocked_mark.store(0, std::memory_order_relaxed);
    s.pid = 0;
    s.cpu_seconds = -1;
    s.rss_bytes = 0;
    if (!nodes_[w.node].alive) {
      // Its node is gone: the slot dies at once, as a local one whose supervisor is gone.
      s.state.store(static_cast<std::uint32_t>(slot_state::dead), std::memory_order_release);
      return;
    }
    s.state.store(static_cast<std::uint32_t>(slot_state::starting), std::memory_order_release);
    control(g, frame_type::start, g);  // the slot's number here: its ids carry it
  }
  void start_as(std::uint32_t g, std::uint32_t how) override {
    if (!is_remote(g)) return local_.start_as(to_local(g), how);
    control(g, frame_type::start_as, how);
  }
  void close(std::uint32_t g) override {
    if (!is_remote(g)) return local_.close(to_local(g));
    control(g, frame_type::close);
  }
  void kill(std::uint32_t g) override {
    if (!is_remote(g)) return local_.kill(to_local(g));
    control(g, frame_type::kill);
  }
  int pid(std::uint32_t g) const override {
    const int r = remote_index(g);
    return r >= 0 ? states_[r].pid : local_.pid(to_local(g));
  }
  bool can_start() const override { return local_.can_start(); }
  void await_exit(std::span<const std::uint32_t> slots, std::chrono::milliseconds grace) override {
    std::vector<std::uint32_t> here;
    for (std::uint32_t g : slots)
      if (!is_remote(g)) here.push_back(to_local(g));
    local_.await_exit(here, grace);
  }

  // ---- messages -----------------------------------------------------------------------
  std::size_t max_message_bytes() const override { return local_.max_message_bytes(); }

  bool send(std::uint32_t g, msg_kind kind, std::size_t size, fill_ref fill) override {
    if (!is_remote(g)) return local_.send(to_local(g), kind, size, fill);
    const where to = remote_[remote_index(g)];
    frame_writer w(frame_type::message, to.slot, static_cast<std::uint32_t>(kind));
    w.payload().resize(size);
    fill(w.payload().data());
    attach_blocks(w, kind, to.node);
    link_->post(node_of_slot(g).rank, w.finish(), std::move(w.apart()), &seg_);
    return true;
  }
  bool send_carried(std::uint32_t g, msg_kind kind, object_block* carrier) override {
    if (!is_remote(g)) return local_.send_carried(to_local(g), kind, carrier);
    const where to = remote_[remote_index(g)];
    frame_writer w(frame_type::message, to.slot, static_cast<std::uint32_t>(kind) | in_block_flag);
    w.payload({carrier->data(), static_cast<std::size_t>(carrier->size)});
    attach_blocks(w, kind, to.node);
    link_->post(node_of_slot(g).rank, w.finish(), std::move(w.apart()), &seg_);
    return true;
  }

  // ---- the loop -----------------------------------------------------------------------
  bool poll(transport_events& to) override {
    if (!begun_) {  // the first turn: the supervisor is forked by now
      begun_ = true;
      link_->begin();
    }
    local_events ev{this, &to};
    bool progress = local_.poll(ev);
    int peer;
    for (int budget = 256; budget > 0 && link_->take(peer, frame_); --budget) {
      progress = true;
      handle(peer, to);
    }
    return progress;
  }

  void sleep(std::chrono::nanoseconds limit, transport_events& to, wake_check also) override {
    struct both {
      wake_check also;
      const channel* link;
    } b{also, link_.get()};
    local_events ev{this, &to};
    local_.sleep(limit, ev,
                 {[](const void* p) {
                    auto& x = *static_cast<const both*>(p);
                    return x.link->has_frames() || x.also();
                  },
                  &b});
  }

 private:
  struct where {
    std::size_t node;    // index into nodes_
    std::uint32_t slot;  // the slot on that node
  };
  struct node_bases {
    std::uint32_t tasks;   // the slot of the node's first task worker
    std::uint32_t actors;  // the slot of its first actor slot
  };
  struct remote_state {
    std::atomic<std::uint32_t> state{static_cast<std::uint32_t>(slot_state::empty)};
    std::atomic<std::uint32_t> suspended{0};
    std::atomic<std::uint64_t> blocked_mark{0};
    int pid = 0;
    double cpu_seconds = -1;  // as its node last reported (usage); -1: not yet
    std::uint64_t rss_bytes = 0;
  };

  /// The local transport's events, with its slot numbers turned into the orchestrator's.
  struct local_events final : transport_events {
    cluster_transport* self;
    transport_events* to;
    local_events(cluster_transport* s, transport_events* t) : self(s), to(t) {}
    void on_message(std::uint32_t slot, msg_kind kind, std::span<const std::byte> payload,
                    object_block* carried) override {
      to->on_message(self->to_global(slot), kind, payload, carried);
    }
    void on_death(std::uint32_t slot, const process_death& how) override {
      to->on_death(self->to_global(slot), how);
    }
    void on_lost(const std::string& why) override { to->on_lost(why); }
  };

  /// Slot g's index in remote_ (task workers, then actor slots), or -1 for this machine's.
  int remote_index(std::uint32_t g) const noexcept {
    if (g < local_workers_) return -1;
    if (g - local_workers_ < remote_workers_) return static_cast<int>(g - local_workers_);
    const std::uint32_t actors_at = local_workers_ + remote_workers_ + local_actors_;
    if (g < actors_at || g - actors_at >= remote_.size() - remote_workers_) return -1;
    return static_cast<int>(remote_workers_ + (g - actors_at));
  }
  bool is_remote(std::uint32_t g) const noexcept { return remote_index(g) >= 0; }
  /// A slot of this machine's, as its shm_transport numbers it (task workers, then actors).
  std::uint32_t to_local(std::uint32_t g) const noexcept {
    return g < local_workers_ ? g : g - remote_workers_;
  }
  std::uint32_t to_global(std::uint32_t l) const noexcept {
    return l < local_workers_ ? l : l + remote_workers_;
  }
  node_record& node_of_slot(std::uint32_t g) { return nodes_[remote_[remote_index(g)].node]; }

  void control(std::uint32_t g, frame_type t, std::uint64_t a = 0) {
    frame_writer w(t, remote_[remote_index(g)].slot);
    w.head().a = a;
    link_->post(node_of_slot(g).rank, w.finish());
  }

  /// The bytes of every block the message names, for node `n`'s copies: none for a large one
  /// it holds, a large one's sent apart (the frame holding a reference until they are), a
  /// small one's in the frame; a granted block goes as its size only (the worker writes it
  /// there, and the node keeps what it wrote).
  void attach_blocks(frame_writer& w, msg_kind kind, std::size_t n) {
    const std::vector<std::byte>& p = w.payload();
    const std::uint64_t me = holder_bit(n);
    naming_ = ++tick_;  // what this message names is not dropped to make room for it
    block_walk(kind, p, [&](std::size_t at, block_use use) {
      std::uint64_t off;
      std::memcpy(&off, p.data() + at, sizeof off);
      auto* b = seg_.at<object_block>(off);
      if (use == block_use::granted) {
        std::uint64_t requested = 0;
        std::memcpy(&requested, p.data() + 16, sizeof requested);
        w.block(at, off, use, requested, nullptr, me ? copies_of(b, off).stamp : 0);
        return;
      }
      if (b->size < apart_bytes) {
        w.block(at, off, use, b->size, b->data());
        nodes_[n].bytes_sent += b->size;
        return;
      }
      std::uint32_t stamp = 0;
      if (me) {
        copy_entry& e = copies_of(b, off);
        e.used = naming_;
        if (e.holders & me) return w.block_held(at, off, use, b->size, e.stamp);
        if (count_held(n, e)) stamp = e.stamp;  // the node keeps what it is sent now
      }
      seg_.add_ref(b);
      w.block_apart(at, off, use, b, stamp);
      nodes_[n].bytes_sent += b->size;
    });
    known_nodes()[n].bytes_sent = nodes_[n].bytes_sent;
  }

  /// Which nodes hold a copy of the block at an offset: the block's stamp, and a bit per node
  /// (the first 64 nodes keep copies; the others are sent a block each time).
  struct copy_entry {
    std::uint32_t stamp = 0;
    std::uint64_t holders = 0;
    std::uint64_t size = 0;  // the block's bytes
    std::uint64_t used = 0;  // when a message last named it (tick_)
  };
  static std::uint64_t holder_bit(std::size_t n) noexcept {
    return n < 64 ? std::uint64_t{1} << n : 0;
  }
  /// Block b's entry (b at `off`): a new one, with a new stamp written in b's header, when b
  /// is not the block the entry was made for.
  copy_entry& copies_of(object_block* b, std::uint64_t off) {
    copy_entry& e = copies_[off];
    if (b->reserved == 0 || b->reserved != e.stamp) {
      // The block the entry was made for is gone: its holders let their copies go.
      for (std::size_t n = 0; n < nodes_.size() && e.holders; ++n)
        if (e.holders & holder_bit(n)) {
          e.holders &= ~holder_bit(n);
          copy_bytes_[n] -= e.size;
          drop(n, {{off, e.stamp, 0}});
        }
      if (++next_stamp_ == 0) ++next_stamp_;
      b->reserved = next_stamp_;
      e = {next_stamp_, 0, b->size, 0};
    }
    return e;
  }
  /// Whether node `n` may keep a copy of `size` more bytes within its budget (a quarter of
  /// its store), after dropping its least recently named copies (not those the message being
  /// made names); false for a block larger than the budget.
  bool make_room(std::size_t n, std::uint64_t size) {
    const std::uint64_t budget = nodes_[n].store_bytes / 4;
    if (size > budget) return false;
    if (copy_bytes_[n] + size <= budget) return true;
    const std::uint64_t bit = holder_bit(n);
    std::vector<std::pair<std::uint64_t, std::uint64_t>> order;  // last named, offset
    for (const auto& [off, e] : copies_)
      if ((e.holders & bit) && e.used != naming_) order.emplace_back(e.used, off);
    std::sort(order.begin(), order.end());
    std::vector<copy_key> gone;
    for (const auto& [used, off] : order) {
      if (copy_bytes_[n] + size <= budget) break;
      copy_entry& e = copies_[off];
      e.holders &= ~bit;
      copy_bytes_[n] -= e.size;
      gone.push_back({off, e.stamp, 0});
    }
    drop(n, gone);
    return copy_bytes_[n] + size <= budget;
  }
  /// Counts entry `e`'s block held by node `n`, if it fits the node's budget (make_room).
  bool count_held(std::size_t n, copy_entry& e) {
    if (!make_room(n, e.size)) return false;
    e.holders |= holder_bit(n);
    copy_bytes_[n] += e.size;
    return true;
  }
  /// Tells node `n` to let these copies go (before any message that needs their room).
  void drop(std::size_t n, const std::vector<copy_key>& keys) {
    if (keys.empty() || !nodes_[n].alive) return;
    frame_writer w(frame_type::drop);
    const auto* p = reinterpret_cast<const std::byte*>(keys.data());
    w.payload({p, keys.size() * sizeof(copy_key)});
    link_->post(nodes_[n].rank, w.finish());
  }

  void handle(int peer, transport_events& to) {
    std::size_t n = 0;
    while (n < nodes_.size() && nodes_[n].rank != peer) ++n;
    if (n == nodes_.size()) return;
    frame_view v(frame_);
    const frame_head& h = v.head;
    const node_record& node = nodes_[n];
    if (h.type != frame_type::lost && h.type != frame_type::bye &&
        h.slot >= node.workers + node.actors)
      return;
    // The node numbers its task workers, then its actor slots, from 0.
    const std::uint32_t g = h.slot < node.workers ? bases_[n].tasks + h.slot
                                                  : bases_[n].actors + (h.slot - node.workers);
    switch (h.type) {
      case frame_type::signals: {
        remote_state& s = states_[remote_index(g)];
        if (h.a != static_cast<std::uint32_t>(slot_state::dead))
          s.state.store(static_cast<std::uint32_t>(h.a), std::memory_order_release);
        s.blocked_mark.store(h.c, std::memory_order_release);
        s.suspended.store(static_cast<std::uint32_t>(h.b), std::memory_order_release);
        s.pid = static_cast<int>(h.d);
        break;
      }
      case frame_type::usage: {
        remote_state& s = states_[remote_index(g)];
        if (static_cast<int>(h.a) != s.pid) break;  // an earlier process's
        std::memcpy(&s.cpu_seconds, &h.b, sizeof s.cpu_seconds);
        s.rss_bytes = h.c;
        break;
      }
      case frame_type::death: {
        remote_state& s = states_[remote_index(g)];
        s.state.store(static_cast<std::uint32_t>(slot_state::dead), std::memory_order_release);
        to.on_death(g, {static_cast<int>(h.a), static_cast<int>(h.b), h.c, h.d != 0});
        break;
      }
      case frame_type::message:
        deliver(g, n, v, to);
        break;
      case frame_type::lost:
        nodes_[n].alive = false;
        nodes_[n].why.assign(reinterpret_cast<const char*>(v.payload.data()), v.payload.size());
        known_nodes()[n] = nodes_[n];
        break;
      default:
        break;
    }
  }

  void deliver(std::uint32_t g, std::size_t n, const frame_view& v, transport_events& to) {
    // Blocks the node's workers wrote: their bytes go into rank 0's blocks the message names
    // (those sent apart are there already, unless they named memory outside the store, and the
    // node keeps a copy of them).
    for (const auto& b : v.blocks) {
      const block_record& r = b.record;
      if (r.bytes == block_bytes::landed) {
        if (!r.landed) return;
        nodes_[n].bytes_received += r.size;
        // The node kept the copy its worker wrote: it stays, if it fits the node's budget.
        const auto it = copies_.find(r.offset);
        if (r.stamp && it != copies_.end() && it->second.stamp == r.stamp) {
          copy_entry& e = it->second;
          e.size = r.size;
          naming_ = e.used = ++tick_;
          if (!count_held(n, e)) drop(n, {{r.offset, r.stamp, 0}});
        }
        continue;
      }
      if (r.bytes != block_bytes::inline_) continue;
      object_block* dst = checked_block(r.offset, b.bytes.size());
      if (!dst) return;
      if (!b.bytes.empty()) std::memcpy(dst->data(), b.bytes.data(), b.bytes.size());
      nodes_[n].bytes_received += r.size;
    }
    known_nodes()[n].bytes_received = nodes_[n].bytes_received;
    const auto kind = static_cast<msg_kind>(v.head.kind & ~in_block_flag);
    if (v.head.kind & in_block_flag) {
      object_block* carrier = checked_block(v.head.a, v.payload.size());
      if (!carrier) return;
      if (!v.payload.empty()) std::memcpy(carrier->data(), v.payload.data(), v.payload.size());
      to.on_message(g, kind, {carrier->data(), v.payload.size()}, carrier);
      return;
    }
    to.on_message(g, kind, v.payload, nullptr);
  }

  /// Rank 0's block at `offset` if `bytes` fit in it, else null (a frame that names memory
  /// outside the store is dropped).
  object_block* checked_block(std::uint64_t offset, std::size_t bytes) const {
    if (offset < sizeof(object_block) || offset > seg_.size() - sizeof(object_block))
      return nullptr;
    auto* b = seg_.at<object_block>(offset);
    return bytes <= b->size && offset + sizeof(object_block) + bytes <= seg_.size() ? b : nullptr;
  }

  shm_transport& local_;
  segment& seg_;
  std::uint32_t local_workers_;
  std::uint32_t local_actors_;
  std::uint32_t remote_workers_ = 0;
  std::unique_ptr<channel> link_;
  std::vector<node_record> nodes_;
  std::vector<where> remote_;      // the other nodes' task workers, then their actor slots
  std::vector<node_bases> bases_;  // per node
  std::unique_ptr<remote_state[]> states_;
  std::vector<std::byte> frame_;
  bool begun_ = false;
  std::unordered_map<std::uint64_t, copy_entry> copies_;  // by rank 0's offset
  std::vector<std::uint64_t> copy_bytes_;                 // per node: the copies it keeps
  std::uint32_t next_stamp_ = 0;
  std::uint64_t tick_ = 0, naming_ = 0;
};

}  // namespace detail::cluster
CORAY_END_NAMESPACE
