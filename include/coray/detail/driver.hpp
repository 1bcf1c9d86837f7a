#pragma once
/// The driver: the user's process. It owns the segment, the supervisor and the results of
/// every call; it schedules calls onto workers (its own and the nested ones workers make),
/// holds back calls until their object_ref arguments are ready, and fails the calls of a
/// worker that dies with worker_crashed before asking the supervisor for a replacement.

#include <coray/detail/supervisor.hpp>
#include <coray/detail/system.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

struct driver_config {
  std::uint32_t num_workers;
  std::size_t object_store_bytes;
  start_method_id method;
  std::size_t inline_threshold;
  std::uint32_t spin_us;
  std::uint32_t max_tasks_in_flight_per_worker;
  std::vector<std::string> argv;
};

inline std::uint32_t next_epoch() noexcept {
  static std::uint32_t e = 0;
  return ++e;
}

class driver final : public process {
 public:
  static constexpr std::size_t mailbox_capacity = 1024;

  explicit driver(driver_config cfg) : cfg_(std::move(cfg)) {
    epoch = next_epoch();
    const std::size_t mb_bytes = mailbox::bytes_for(mailbox_capacity);
    const std::size_t control = shared_header::bytes_for(cfg_.num_workers) + 2 * cfg_.num_workers * (mb_bytes + 64);
    seg.create(segment::root_bytes + cfg_.object_store_bytes + control + (1 << 20));

    hdr = new (seg.allocate(shared_header::bytes_for(cfg_.num_workers))) shared_header{};
    seg.header_root().header_offset = seg.offset_of(hdr);
    hdr->driver_pid = getpid();
    hdr->max_workers = cfg_.num_workers;
    hdr->spin_us = cfg_.spin_us;
    hdr->inline_threshold = cfg_.inline_threshold;
    hdr->mailbox_capacity = mailbox_capacity;
    workers_.resize(cfg_.num_workers);
    for (std::uint32_t i = 0; i < cfg_.num_workers; ++i) {
      worker_shared* w = new (&hdr->worker(i)) worker_shared{};
      w->inbox = seg.offset_of(mailbox::create(seg.allocate(mb_bytes), mailbox_capacity));
      w->outbox = seg.offset_of(mailbox::create(seg.allocate(mb_bytes), mailbox_capacity));
      workers_[i].index = i;
      workers_[i].shared = w;
      workers_[i].inbox = seg.at<mailbox>(w->inbox);
      workers_[i].outbox = seg.at<mailbox>(w->outbox);
    }
    start_supervisor();
    for (std::uint32_t i = 0; i < cfg_.num_workers; ++i) start_worker(i);
    process::current() = this;
  }

  ~driver() override {
    if (process::current() == this) process::current() = nullptr;
    // Closing the command pipe tells the supervisor to end every worker and exit.
    if (command_fd_ >= 0) ::close(command_fd_);
    if (supervisor_ > 0) {
      int st;
      while (waitpid(supervisor_, &st, 0) < 0 && errno == EINTR) {
      }
    }
    tasks_.clear();
    runnable_.clear();
  }

  bool is_driver() const noexcept override { return true; }
  std::uint32_t num_workers() const noexcept { return cfg_.num_workers; }

  state_ptr submit(task_spec&& spec) override {
    auto rec = std::make_unique<task_record>();
    rec->id = next_task_id_++;
    rec->fn_id = spec.fn_id;
    rec->name = spec.name;
    rec->nargs = spec.nargs;
    rec->args = std::move(spec.args);
    rec->deps = std::move(spec.deps);
    rec->blocks = std::move(spec.blocks);
    rec->result = make_state();
    state_ptr result = rec->result;
    admit(std::move(rec));
    dispatch();
    return result;
  }

  /// Pids of the live workers, in slot order.
  std::vector<int> worker_pids() const {
    std::vector<int> pids;
    for (auto& w : workers_) pids.push_back(w.shared->pid.load(std::memory_order_acquire));
    return pids;
  }

 protected:
  bool poll() override {
    bool progress = false;
    for (auto& w : workers_) progress |= drain(w, 64);
    if (hdr->deaths.load(std::memory_order_acquire) != seen_deaths_) {
      handle_deaths();
      progress = true;
    }
    progress |= flush_forwards();
    progress |= dispatch();
    return progress;
  }

  void sleep(std::chrono::nanoseconds limit) override {
    hdr->driver_bell.sleep(
        [this] {
          if (hdr->deaths.load(std::memory_order_acquire) != seen_deaths_) return true;
          for (auto& w : workers_)
            if (!w.outbox->empty()) return true;
          return false;
        },
        limit);
    check_supervisor();
  }

 private:
  struct task_record {
    std::uint64_t id = 0;
    std::uint64_t fn_id = 0;
    std::string_view name;
    std::uint32_t nargs = 0;
    std::vector<std::byte> args;
    std::vector<state_ptr> deps;
    std::vector<object_block*> blocks;
    state_ptr result;
    std::uint32_t pending_deps = 0;
    bool failed_dep = false;
    int submitter = -1;  // worker slot that made this nested call, -1 for the driver
    std::uint32_t submitter_generation = 0;
    int worker = -1;  // where it runs
    std::uint64_t dispatch_seq = 0;
    driver* self = nullptr;
  };

  struct worker_view {
    std::uint32_t index = 0;
    worker_shared* shared = nullptr;
    mailbox* inbox = nullptr;
    mailbox* outbox = nullptr;
    std::uint32_t generation = 0;
    std::uint64_t dispatched = 0;        // run_task messages sent to this generation
    std::uint32_t in_flight = 0;         // dispatched and not done
    std::deque<std::pair<std::uint64_t, std::uint64_t>> order;  // (dispatch_seq, task id)
    std::deque<std::pair<std::uint64_t, state_ptr>> forwards;   // nested results to send
    std::unordered_map<std::uint64_t, state_ptr> held;          // nested results it holds
  };

  // ---- admission and dependencies -----------------------------------------------------

  void admit(std::unique_ptr<task_record> rec) {
    task_record* r = rec.get();
    r->self = this;
    tasks_.emplace(r->id, std::move(rec));
    for (auto& d : r->deps) {
      if (d->st == object_state::status::failed) {
        r->failed_dep = true;
        r->result->set_error(d->error);
      } else if (d->st == object_state::status::pending) {
        ++r->pending_deps;
        d->waiters.push_back({&driver::on_dependency, r});
      }
    }
    if (r->pending_deps == 0) {
      if (r->failed_dep) finish(r->id);
      else runnable_.push_back(r);
    }
  }

  static void on_dependency(void* ctx, object_state& dep) {
    auto* r = static_cast<task_record*>(ctx);
    if (dep.st == object_state::status::failed && !r->failed_dep) {
      r->failed_dep = true;
      r->result->set_error(dep.error);
    }
    if (--r->pending_deps == 0) {
      if (r->failed_dep) r->self->finish(r->id);
      else r->self->runnable_.push_back(r);
    }
  }

  void finish(std::uint64_t id) {
    auto it = tasks_.find(id);
    if (it == tasks_.end()) return;
    for (auto* b : it->second->blocks) seg.release(b);
    tasks_.erase(it);
  }

  // ---- dispatch -----------------------------------------------------------------------

  worker_view* pick_worker() {
    worker_view* best = nullptr;
    std::uint32_t best_load = cfg_.max_tasks_in_flight_per_worker;
    for (auto& w : workers_) {
      auto st = static_cast<slot_state>(w.shared->state.load(std::memory_order_acquire));
      if (st == slot_state::dead) continue;
      std::uint32_t susp = w.shared->suspended.load(std::memory_order_relaxed);
      std::uint32_t load = w.in_flight > susp ? w.in_flight - susp : 0;
      if (load < best_load) {
        best = &w;
        best_load = load;
        if (load == 0) break;
      }
    }
    return best;
  }

  bool dispatch() {
    bool progress = false;
    while (!runnable_.empty()) {
      worker_view* w = pick_worker();
      if (!w) break;
      task_record* r = runnable_.front();
      if (!send_task(*w, *r)) break;
      runnable_.pop_front();
      progress = true;
    }
    return progress;
  }

  template <class F>
  static void for_each_entry(const task_record& r, F&& f) {
    const std::byte* p = r.args.data();
    for (std::uint32_t i = 0; i < r.nargs; ++i) {
      arg_entry e;
      std::memcpy(&e, p, sizeof e);
      f(e, p + sizeof e);
      p += sizeof e + (e.tag == arg_entry::inline_value ? pad16(e.len) : 0);
    }
  }

  bool send_task(worker_view& w, task_record& r) {
    std::size_t size = sizeof(task_header);
    for_each_entry(r, [&](const arg_entry& e, const std::byte*) {
      size += sizeof(arg_entry);
      if (e.tag == arg_entry::inline_value) size += pad16(e.len);
      if (e.tag == arg_entry::dependency && !r.deps[e.ref]->block) size += pad16(r.deps[e.ref]->bytes.size());
    });
    bool sent = try_send(seg, *w.inbox, w.shared->bell, msg_kind::run_task, size, [&](std::byte* out) {
      task_header h{r.id, r.fn_id, r.nargs, 0, 0};
      std::memcpy(out, &h, sizeof h);
      std::byte* p = out + sizeof h;
      for_each_entry(r, [&](const arg_entry& e, const std::byte* data) {
        arg_entry o = e;
        const std::byte* src = data;
        if (e.tag == arg_entry::dependency) {
          // The record keeps the dependency (and so its block) alive until the task ends.
          auto& d = *r.deps[e.ref];
          if (d.block) {
            o = {arg_entry::block_value, {}, 0, seg.offset_of(d.block)};
          } else {
            o = {arg_entry::inline_value, {}, static_cast<std::uint32_t>(d.bytes.size()), 0};
            src = d.bytes.data();
          }
        }
        std::memcpy(p, &o, sizeof o);
        p += sizeof o;
        if (o.tag == arg_entry::inline_value) {
          std::memcpy(p, src, o.len);
          p += pad16(o.len);
        }
      });
    });
    if (!sent) return false;
    r.worker = static_cast<int>(w.index);
    r.dispatch_seq = w.dispatched++;
    w.order.emplace_back(r.dispatch_seq, r.id);
    ++w.in_flight;
    return true;
  }

  // ---- receiving ----------------------------------------------------------------------

  bool drain(worker_view& w, int budget) {
    bool progress = false;
    while (budget-- > 0) {
      mailbox_slot* s = w.outbox->peek();
      if (!s) break;
      message_view m = view_message(seg, *s);
      switch (m.kind) {
        case msg_kind::task_done: on_task_done(w, m.payload); break;
        case msg_kind::submit: on_submit(w, m.payload); break;
        case msg_kind::release: {
          std::uint64_t id;
          std::memcpy(&id, m.payload.data(), sizeof id);
          w.held.erase(id);
          break;
        }
        default: break;
      }
      finish_message(seg, *w.outbox, *s);
      progress = true;
    }
    return progress;
  }

  void on_task_done(worker_view& w, std::span<const std::byte> payload) {
    result_header h;
    std::memcpy(&h, payload.data(), sizeof h);
    auto it = tasks_.find(h.id);
    if (it == tasks_.end()) {
      if (h.status == result_header::value_block) seg.release(seg.at<object_block>(h.block));
      return;
    }
    task_record& r = *it->second;
    if (w.in_flight) --w.in_flight;
    while (!w.order.empty() && !tasks_.count(w.order.front().second)) w.order.pop_front();
    auto body = payload.subspan(sizeof h, h.len);
    switch (h.status) {
      case result_header::value_inline: r.result->set_inline(body); break;
      case result_header::value_block: r.result->set_block(seg.at<object_block>(h.block)); break;
      default: r.result->set_error(to_exception(decode<wire_error>(body))); break;
    }
    if (r.submitter >= 0) forward(r);
    finish(h.id);
    while (!w.order.empty() && !tasks_.count(w.order.front().second)) w.order.pop_front();
  }

  /// A nested call from a worker: its dependencies arrive by value or by the id of another
  /// nested result that worker holds.
  void on_submit(worker_view& w, std::span<const std::byte> payload) {
    task_header h;
    std::memcpy(&h, payload.data(), sizeof h);
    auto rec = std::make_unique<task_record>();
    rec->id = h.task_id;
    rec->fn_id = h.fn_id;
    rec->nargs = h.nargs;
    rec->submitter = static_cast<int>(w.index);
    rec->submitter_generation = w.generation;
    if (auto* f = find_function(h.fn_id)) rec->name = f->name;
    rec->args.assign(payload.begin() + sizeof h, payload.end());
    rec->result = make_state();
    bool unknown = false;
    std::byte* p = rec->args.data();
    for (std::uint32_t i = 0; i < rec->nargs; ++i) {
      arg_entry e;
      std::memcpy(&e, p, sizeof e);
      if (e.tag == arg_entry::block_value) rec->blocks.push_back(seg.at<object_block>(e.ref));
      if (e.tag == arg_entry::dependency) {
        auto held = w.held.find(e.ref);
        if (held == w.held.end()) {
          unknown = true;
        } else {
          e.ref = rec->deps.size();
          rec->deps.push_back(held->second);
          std::memcpy(p, &e, sizeof e);
        }
      }
      p += sizeof e + (e.tag == arg_entry::inline_value ? pad16(e.len) : 0);
    }
    w.held.emplace(rec->id, rec->result);
    if (unknown) {
      rec->result->set_error(std::make_exception_ptr(
          ray::runtime_error("coray: a nested call used an object_ref its worker does not hold")));
      task_record* r = rec.get();
      tasks_.emplace(r->id, std::move(rec));
      forward(*r);
      finish(r->id);
      return;
    }
    admit(std::move(rec));
  }

  void forward(task_record& r) {
    worker_view& w = workers_[static_cast<std::size_t>(r.submitter)];
    if (w.generation != r.submitter_generation || !w.held.count(r.id)) return;
    w.forwards.emplace_back(r.id, r.result);
    flush_forwards(w);
  }

  bool flush_forwards() {
    bool progress = false;
    for (auto& w : workers_) progress |= flush_forwards(w);
    return progress;
  }

  bool flush_forwards(worker_view& w) {
    bool progress = false;
    while (!w.forwards.empty()) {
      auto& [id, st] = w.forwards.front();
      if (!send_result(w, id, *st)) break;
      w.forwards.pop_front();
      progress = true;
    }
    return progress;
  }

  bool send_result(worker_view& w, std::uint64_t id, object_state& s) {
    if (s.st == object_state::status::failed) {
      wire_error e;
      try {
        std::rethrow_exception(s.error);
      } catch (...) {
        e = describe_current_exception("");
      }
      std::size_t n = encoded_size(e);
      return try_send(seg, *w.inbox, w.shared->bell, msg_kind::object_ready, sizeof(result_header) + n,
                      [&](std::byte* out) {
                        result_header h{id, result_header::error, static_cast<std::uint32_t>(n), 0, 0};
                        std::memcpy(out, &h, sizeof h);
                        encode_to(std::span<std::byte>(out + sizeof h, n), e);
                      });
    }
    if (s.block) {
      result_header h{id, result_header::value_block, 0, seg.offset_of(s.block), 0};
      bool ok = try_send(seg, *w.inbox, w.shared->bell, msg_kind::object_ready, sizeof h,
                         [&](std::byte* out) { std::memcpy(out, &h, sizeof h); });
      if (ok) seg.add_ref(s.block);  // the worker's handle
      return ok;
    }
    return try_send(seg, *w.inbox, w.shared->bell, msg_kind::object_ready, sizeof(result_header) + s.bytes.size(),
                    [&](std::byte* out) {
                      result_header h{id, result_header::value_inline, static_cast<std::uint32_t>(s.bytes.size()), 0, 0};
                      std::memcpy(out, &h, sizeof h);
                      std::memcpy(out + sizeof h, s.bytes.data(), s.bytes.size());
                    });
  }

  // ---- worker deaths ------------------------------------------------------------------

  void handle_deaths() {
    seen_deaths_ = hdr->deaths.load(std::memory_order_acquire);
    for (auto& w : workers_) {
      if (static_cast<slot_state>(w.shared->state.load(std::memory_order_acquire)) != slot_state::dead) continue;
      drain(w, 1 << 30);  // replies it managed to send count
      const std::uint64_t started = w.shared->tasks_started.load(std::memory_order_acquire);
      const int pid = w.shared->pid.load(std::memory_order_relaxed);
      const std::string how = describe_exit(w.shared->wait_status.load(std::memory_order_relaxed));
      std::vector<task_record*> requeue;
      for (auto& [seq, id] : w.order) {
        auto it = tasks_.find(id);
        if (it == tasks_.end()) continue;
        task_record& r = *it->second;
        if (seq < started) {
          r.result->set_error(std::make_exception_ptr(worker_crashed(
              "coray: worker " + std::to_string(w.index) + " (pid " + std::to_string(pid) + ") " + how +
              " while running " + std::string(r.name.empty() ? "a task" : r.name))));
          if (r.submitter >= 0) forward(r);
          finish(id);
        } else {
          requeue.push_back(&r);  // never started: run it elsewhere
        }
      }
      runnable_.insert(runnable_.begin(), requeue.begin(), requeue.end());
      w.order.clear();
      w.forwards.clear();
      w.held.clear();
      w.in_flight = 0;
      w.dispatched = 0;
      restart_worker(w);
    }
  }

  void restart_worker(worker_view& w) {
    mailbox::create(w.inbox, mailbox_capacity);
    mailbox::create(w.outbox, mailbox_capacity);
    ++w.generation;
    w.shared->tasks_started.store(0, std::memory_order_relaxed);
    w.shared->suspended.store(0, std::memory_order_relaxed);
    w.shared->pid.store(0, std::memory_order_relaxed);
    w.shared->generation.store(w.generation, std::memory_order_relaxed);
    start_worker(w.index);
  }

  // ---- processes ------------------------------------------------------------------------

  void start_supervisor() {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) throw ray::runtime_error("coray: pipe2 failed");
    std::fflush(nullptr);  // buffered output must not be written twice
    pid_t pid = fork();
    if (pid < 0) throw ray::runtime_error("coray: fork of the supervisor failed");
    if (pid == 0) {
      ::close(fds[1]);
      supervisor_main({&seg, hdr, fds[0], cfg_.method, epoch, cfg_.argv});
    }
    ::close(fds[0]);
    command_fd_ = fds[1];
    supervisor_ = pid;
    hdr->supervisor_pid = pid;
  }

  void start_worker(std::uint32_t slot) {
    hdr->worker(slot).state.store(static_cast<std::uint32_t>(slot_state::starting), std::memory_order_release);
    supervisor_command c{supervisor_command::start, slot};
    if (write(command_fd_, &c, sizeof c) != sizeof c) throw ray::runtime_error("coray: the supervisor is gone");
  }

  void check_supervisor() {
    int st;
    if (supervisor_ > 0 && waitpid(supervisor_, &st, WNOHANG) == supervisor_) {
      supervisor_ = -1;
      std::fprintf(stderr, "coray: the supervisor process %s; workers are gone\n", describe_exit(st).c_str());
      for (auto& w : workers_) w.shared->state.store(static_cast<std::uint32_t>(slot_state::dead));
    }
  }

  driver_config cfg_;
  std::vector<worker_view> workers_;
  std::unordered_map<std::uint64_t, std::unique_ptr<task_record>> tasks_;
  std::deque<task_record*> runnable_;
  std::uint64_t next_task_id_ = 1;
  std::uint32_t seen_deaths_ = 0;
  int command_fd_ = -1;
  pid_t supervisor_ = -1;
};

}  // namespace detail
CORAY_END_NAMESPACE
