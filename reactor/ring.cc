#include "reactor/ring.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <string>

namespace cellos::reactor {
namespace {

// liburing 2.3 predates IORING_OP_WAITID (kernel 6.7): the opcode number and SQE layout are the
// kernel's ABI, filled by hand as later liburings' io_uring_prep_waitid fills them.
constexpr uint8_t kOpWaitid = 50;

uint64_t tag(base::Completion& c) { return reinterpret_cast<uint64_t>(&c); }
// The low bit tells run_once which interface the address is (see ring.h).
constexpr uint64_t kMultishot = 1;
// user_data of close(fd): nobody waits for it, but close() of the ring does (see untracked_).
constexpr uint64_t kFireAndForget = 2;
// user_data of the timer queue's kernel timeouts: (id << 3) | kTick. A completion's address is
// 8-aligned, so its low three bits are 0; kMultishot sets bit 0; kFireAndForget is the value 2.
constexpr uint64_t kTick = 4;
constexpr uint64_t kLowBits = 7;
uint64_t tag(base::MultishotCompletion& c) { return reinterpret_cast<uint64_t>(&c) | kMultishot; }

// Fallback for kernels without IORING_OP_WAITID: a pidfd polls readable once its process has
// exited; then a non-blocking waitid(2) reaps it. Owns itself; deleted when done.
class PollThenWait final : public base::Completion {
 public:
  PollThenWait(int pidfd, siginfo_t* info, base::Completion& next)
      : pidfd_(pidfd), info_(info), next_(next) {}
  void complete(int res) override {
    if (res >= 0) {
      std::memset(info_, 0, sizeof *info_);
      res = ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_), info_,
                     WEXITED | WNOHANG) == 0
                ? 0
                : -errno;
    }
    base::Completion& next = next_;
    delete this;
    next.complete(res);
  }

 private:
  int pidfd_;
  siginfo_t* info_;
  base::Completion& next_;
};

// Slots in the ring's registered file table: at most this many small-file reads in flight
// (four per finishing cell, for a moment); more wait for none, they read with plain syscalls.
constexpr unsigned kFileSlots = 256;

}  // namespace

// One read_small_file: OPENAT (direct) -> READ (fixed file) -> CLOSE (direct), linked. Each SQE
// has a completion of its own here, so the object goes only after all three have reported.
// The READ is hard-linked to the CLOSE: a failed read still frees the slot; a failed OPENAT
// cancels both (nothing to close).
class SmallRead {
 public:
  SmallRead(Ring& ring, std::string path, size_t limit, base::IoPort::FileText done,
            unsigned slot)
      : ring_(ring), path_(std::move(path)), limit_(std::min(limit, buf_.size())),
        done_(std::move(done)), slot_(slot) {}
  struct Step final : base::Completion {
    SmallRead* self = nullptr;
    int res = 0;
    void complete(int r) override {
      res = r;
      self->step_done();
    }
  };
  void queue() {
    ring_.reserve(3);
    open_.self = read_.self = close_.self = this;
    io_uring_sqe* sqe = ring_.next_sqe();
    io_uring_prep_openat_direct(sqe, AT_FDCWD, path_.c_str(), O_RDONLY, 0, slot_);
    sqe->flags |= IOSQE_IO_LINK;
    io_uring_sqe_set_data64(sqe, tag(open_));
    sqe = ring_.next_sqe();
    io_uring_prep_read(sqe, static_cast<int>(slot_), buf_.data(), static_cast<unsigned>(limit_), 0);
    sqe->flags |= IOSQE_FIXED_FILE | IOSQE_IO_HARDLINK;
    io_uring_sqe_set_data64(sqe, tag(read_));
    sqe = ring_.next_sqe();
    io_uring_prep_close_direct(sqe, slot_);
    io_uring_sqe_set_data64(sqe, tag(close_));
  }

 private:
  void step_done() {
    if (--pending_ > 0) return;
    ring_.free_slots_.push_back(slot_);
    base::Result<std::string> r =
        open_.res < 0   ? base::sys_error("open", "\"" + path_ + "\"", -open_.res)
        : read_.res < 0 ? base::sys_error("read", "\"" + path_ + "\"", -read_.res)
                        : base::Result<std::string>(std::string(buf_.data(), static_cast<size_t>(read_.res)));
    base::IoPort::FileText done = std::move(done_);
    delete this;
    done(std::move(r));
  }
  static uint64_t tag(base::Completion& c) { return reinterpret_cast<uint64_t>(&c); }

  Ring& ring_;
  std::string path_;
  std::array<char, 4096> buf_;
  size_t limit_;
  base::IoPort::FileText done_;
  unsigned slot_;
  int pending_ = 3;
  Step open_, read_, close_;
};

// A provided-buffer ring: the ring of buffer descriptors (page-aligned, pinned by the kernel at
// registration) and the buffers it points at, registered under one group id.
class ProvidedBuffers final : public base::BufferRing {
 public:
  static base::Result<std::unique_ptr<ProvidedBuffers>> create(Ring& ring,
                                                               const base::BufferRingOptions& o);
  ~ProvidedBuffers() override {
    // Unregister first: from then on the kernel never writes into the memory freed below.
    if (registered_) io_uring_unregister_buf_ring(&ring_.ring_, group_);
    if (registered_) ring_.groups_[group_] = false;
    if (descs_ != nullptr) ::munmap(descs_, descs_len_);
  }
  unsigned count() const override { return count_; }
  size_t buffer_size() const override { return size_; }
  std::span<const std::byte> data(int id, size_t len) const override {
    return {buffers_.get() + static_cast<size_t>(id) * size_, std::min(len, size_)};
  }
  void recycle(int id) override {
    add(id, 0);
    io_uring_buf_ring_advance(descs_, 1);
  }
  uint16_t group() const { return group_; }

 private:
  explicit ProvidedBuffers(Ring& ring) : ring_(ring) {}
  void add(int id, int offset) {
    io_uring_buf_ring_add(descs_, buffers_.get() + static_cast<size_t>(id) * size_,
                          static_cast<unsigned>(size_), static_cast<unsigned short>(id),
                          io_uring_buf_ring_mask(count_), offset);
  }
  Ring& ring_;
  io_uring_buf_ring* descs_ = nullptr;
  size_t descs_len_ = 0;
  std::unique_ptr<std::byte[]> buffers_;
  unsigned count_ = 0;
  size_t size_ = 0;
  uint16_t group_ = 0;
  bool registered_ = false;
};

base::Result<std::unique_ptr<ProvidedBuffers>> ProvidedBuffers::create(
    Ring& ring, const base::BufferRingOptions& o) {
  if (o.count == 0 || o.count > 32768 || (o.count & (o.count - 1)) != 0 || o.buffer_size == 0 ||
      o.buffer_size > (1u << 31))
    return base::value_error("buffer ring", "count must be a power of two <= 32768, size > 0");
  std::unique_ptr<ProvidedBuffers> b(new ProvidedBuffers(ring));
  b->count_ = o.count;
  b->size_ = o.buffer_size;
  b->descs_len_ = o.count * sizeof(io_uring_buf);
  void* m = ::mmap(nullptr, b->descs_len_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
  if (m == MAP_FAILED) return base::sys_error("mmap", "buffer ring");
  b->descs_ = static_cast<io_uring_buf_ring*>(m);
  b->buffers_.reset(new std::byte[o.count * o.buffer_size]);
  auto& groups = ring.groups_;
  size_t g = 0;
  while (g < groups.size() && groups[g]) ++g;
  if (g > UINT16_MAX) return base::sys_error("buffer ring", "group ids", ENOSPC);
  if (g == groups.size()) groups.push_back(false);
  b->group_ = static_cast<uint16_t>(g);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(b->descs_);
  reg.ring_entries = o.count;
  reg.bgid = b->group_;
  int rc = io_uring_register_buf_ring(&ring.ring_, &reg, 0);
  if (rc < 0)
    return base::sys_error("io_uring_register_buf_ring", "group " + std::to_string(g), -rc);
  groups[g] = true;
  b->registered_ = true;
  io_uring_buf_ring_init(b->descs_);
  for (unsigned i = 0; i < o.count; ++i) b->add(static_cast<int>(i), static_cast<int>(i));
  io_uring_buf_ring_advance(b->descs_, static_cast<int>(o.count));
  return b;
}

base::Result<std::unique_ptr<Ring>> Ring::create(const RingOptions& options) {
  std::unique_ptr<Ring> r(new Ring());
  io_uring_params p{};
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL;
  int rc = io_uring_queue_init_params(options.entries, &r->ring_, &p);
  if (rc == -EINVAL) {
    // Kernels before 6.1 lack DEFER_TASKRUN; the loop is still correct without it.
    p = io_uring_params{};
    rc = io_uring_queue_init_params(options.entries, &r->ring_, &p);
  }
  if (rc < 0) return base::sys_error("io_uring_queue_init", "", -rc);
  r->initialised_ = true;
  // Buffered writes to regular files (cell logs, the event log) are handed by the kernel to
  // io_uring's own io-worker threads (iou-wrk-*, kernel tasks that run no user code) on ext4.
  // They keep disk stalls off the reactor thread; cap them so thousands of cells writing logs
  // cannot make thousands of kernel threads. Failure only leaves the kernel's default cap.
  unsigned max_workers[2] = {options.max_io_workers, options.max_io_workers};
  (void)io_uring_register_iowq_max_workers(&r->ring_, max_workers);
  if (options.use_waitid) r->probe();
  // A sparse file table for read_small_file's direct descriptors; without it (old kernels),
  // those reads are plain syscalls.
  if (io_uring_register_files_sparse(&r->ring_, kFileSlots) == 0)
    for (unsigned i = kFileSlots; i > 0; --i) r->free_slots_.push_back(i - 1);
  return r;
}

Ring::~Ring() { close(); }

void Ring::close() {
  if (initialised_) {
    // Queued closes are carried out, not dropped with the ring: the process may live on
    // (tests, a library user), and a descriptor left open leaks, and a pipe's write end left
    // open keeps its reader from ever seeing EOF.
    for (const Reaped& r : reaped_)
      if (r.data == kFireAndForget) --untracked_;
    while (untracked_ > 0) {
      if (int rc = io_uring_submit_and_wait(&ring_, 1); rc < 0 && rc != -EINTR) break;
      io_uring_cqe* cqe = nullptr;
      while (io_uring_peek_cqe(&ring_, &cqe) == 0) {
        if (io_uring_cqe_get_data64(cqe) == kFireAndForget) --untracked_;
        io_uring_cqe_seen(&ring_, cqe);
      }
    }
    io_uring_queue_exit(&ring_);
  }
  reaped_.clear();
  free_slots_.clear();
  timers_.clear();
  ticks_.clear();
  initialised_ = false;
}

void Ring::submitted() {
  pending_timespecs_.clear();
}

void Ring::reserve(unsigned n) {
  while (io_uring_sq_space_left(&ring_) < n) {
    int rc = io_uring_submit(&ring_);
    submitted();
    if (rc == -EBUSY || rc == -EAGAIN) reap_into_backlog();
    else if (rc < 0 && rc != -EINTR) {
      std::fprintf(stderr, "cellos-reactor: io_uring_submit: %s\n", std::strerror(-rc));
      std::abort();
    }
  }
}

void Ring::close(int fd) {
  if (fd < 0) return;
  if (!initialised_) return base::IoPort::close(fd);
  io_uring_sqe* sqe = next_sqe();
  io_uring_prep_close(sqe, fd);
  io_uring_sqe_set_data64(sqe, kFireAndForget);
  ++untracked_;
}

void Ring::read_small_file(std::string path, size_t limit, FileText done) {
  if (!initialised_ || free_slots_.empty())
    return base::IoPort::read_small_file(std::move(path), limit, std::move(done));
  const unsigned slot = free_slots_.back();
  free_slots_.pop_back();
  (new SmallRead(*this, std::move(path), limit, std::move(done), slot))->queue();
}

void Ring::probe() {
  io_uring_probe* pr = io_uring_get_probe_ring(&ring_);
  if (pr == nullptr) return;
  has_waitid_ = pr->last_op >= kOpWaitid && (pr->ops[kOpWaitid].flags & IO_URING_OP_SUPPORTED);
  io_uring_free_probe(pr);
}

void Ring::reap_into_backlog() {
  io_uring_cqe* cqe = nullptr;
  if (io_uring_peek_cqe(&ring_, &cqe) != 0) {
    // Nothing to take: wait for the kernel to complete something (progress, never a spin).
    if (int rc = io_uring_wait_cqe(&ring_, &cqe); rc < 0 && rc != -EINTR) {
      std::fprintf(stderr, "cellos-reactor: io_uring_wait_cqe: %s\n", std::strerror(-rc));
      std::abort();
    }
  }
  while (io_uring_peek_cqe(&ring_, &cqe) == 0) {
    reaped_.push_back({io_uring_cqe_get_data64(cqe), cqe->res, cqe->flags});
    io_uring_cqe_seen(&ring_, cqe);
  }
}

io_uring_sqe* Ring::next_sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  while (sqe == nullptr) {
    // The submission queue is full: hand what is queued to the kernel and take a fresh slot.
    int rc = io_uring_submit(&ring_);
    submitted();
    if (rc == -EBUSY || rc == -EAGAIN) {
      // The completion queue is full (or the kernel is short of memory for the request): take
      // completions off it, to dispatch later from run_once (never from inside a handler that
      // is queueing an operation), then try again.
      reap_into_backlog();
    } else if (rc < 0 && rc != -EINTR) {
      // Any other error means the ring itself is broken (a bad SQE is reported on its CQE):
      // no cell can be supervised any more, and spinning would hide it.
      std::fprintf(stderr, "cellos-reactor: io_uring_submit: %s\n", std::strerror(-rc));
      std::abort();
    }
    sqe = io_uring_get_sqe(&ring_);
  }
  return sqe;
}

unsigned Ring::dispatch(const Reaped& r) {
  if (r.data == 0) return 0;  // a cancel request's own CQE: nobody waits for it
  if (r.data == kFireAndForget) {
    --untracked_;
    return 0;
  }
  if ((r.data & kLowBits) == kTick) return on_tick(r.data >> 3);
  if (r.data & kMultishot) {
    base::Shot shot{r.res, -1, (r.flags & IORING_CQE_F_MORE) != 0};
    if (r.flags & IORING_CQE_F_BUFFER) shot.buffer = static_cast<int>(r.flags >> IORING_CQE_BUFFER_SHIFT);
    reinterpret_cast<base::MultishotCompletion*>(r.data & ~kMultishot)->shot(shot);
  } else {
    reinterpret_cast<base::Completion*>(r.data)->complete(r.res);
  }
  return 1;
}

void Ring::arm_tick(TimerQueue::Clock::time_point deadline) {
  // A kernel timeout already armed for this deadline or an earlier one wakes the loop in time.
  for (const auto& [id, at] : ticks_)
    if (at <= deadline) return;
  const auto ns = std::max<int64_t>(
      0, std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - TimerQueue::Clock::now())
             .count());
  // The SQE first: taking it may submit (queue full) and clear pending_timespecs_.
  io_uring_sqe* sqe = next_sqe();
  __kernel_timespec& ts = pending_timespecs_.emplace_back();
  ts.tv_sec = ns / 1000000000;
  ts.tv_nsec = ns % 1000000000;
  io_uring_prep_timeout(sqe, &ts, 0, 0);
  const uint64_t id = next_tick_++;
  io_uring_sqe_set_data64(sqe, (id << 3) | kTick);
  ticks_.emplace(id, deadline);
}

unsigned Ring::on_tick(uint64_t id) {
  ticks_.erase(id);
  // A relative kernel timeout ends no earlier than its deadline (it counts from the
  // submission, after the deadline was computed); anything not yet due gets a tick of its own.
  const auto now = TimerQueue::Clock::now();
  const uint64_t before = timers_.next_seq();
  unsigned n = 0;
  while (base::Completion* c = timers_.pop_due(now, before)) due_.push_back(c);
  // Completed in deadline order; a handler may add timers (queued for the next turn) or cancel
  // one of these (it still completes, with -ETIME: it was due).
  std::vector<base::Completion*> due;
  due.swap(due_);
  for (size_t i = 0; i < due.size(); ++i) {
    due_.assign(due.begin() + static_cast<std::ptrdiff_t>(i) + 1, due.end());
    due[i]->complete(-ETIME);
    ++n;
  }
  due_.clear();
  if (auto e = timers_.earliest()) arm_tick(*e);
  return n;
}

void Ring::read(int fd, std::span<std::byte> buf, base::Completion& c) {
  io_uring_sqe* sqe = next_sqe();
  // Offset -1: read at the file position, which is what pipes and sockets need.
  io_uring_prep_read(sqe, fd, buf.data(), static_cast<unsigned>(buf.size()), -1);
  io_uring_sqe_set_data64(sqe, tag(c));
}

void Ring::accept(int fd, base::Completion& c) {
  io_uring_sqe* sqe = next_sqe();
  io_uring_prep_accept(sqe, fd, nullptr, nullptr, SOCK_CLOEXEC);
  io_uring_sqe_set_data64(sqe, tag(c));
}

void Ring::write(int fd, std::span<const std::byte> buf, base::Completion& c) {
  io_uring_sqe* sqe = next_sqe();
  io_uring_prep_write(sqe, fd, buf.data(), static_cast<unsigned>(buf.size()), -1);
  io_uring_sqe_set_data64(sqe, tag(c));
}

void Ring::timeout(std::chrono::nanoseconds after, base::Completion& c) {
  const auto deadline =
      TimerQueue::Clock::now() + std::max(after, std::chrono::nanoseconds(0));
  timers_.add(deadline, c);
  arm_tick(deadline);
}

void Ring::wait_exit(int pidfd, siginfo_t* info, base::Completion& c) {
  io_uring_sqe* sqe = next_sqe();
  if (!has_waitid_) {
    // The poll belongs to an internal completion, so cancel(c) cannot reach it: cells never
    // cancel their exit watch (they kill the cell and let it be reaped).
    io_uring_prep_poll_add(sqe, pidfd, POLLIN);
    io_uring_sqe_set_data64(sqe, tag(*new PollThenWait(pidfd, info, c)));
    return;
  }
  std::memset(info, 0, sizeof *info);
  io_uring_prep_rw(kOpWaitid, sqe, pidfd, nullptr, P_PIDFD, 0);
  sqe->file_index = WEXITED;
  sqe->addr2 = reinterpret_cast<uint64_t>(info);
  io_uring_sqe_set_data64(sqe, tag(c));
}

void Ring::wait_exit_pid(pid_t pid, siginfo_t* info, base::Completion& c) {
  if (!has_waitid_) return c.complete(-EOPNOTSUPP);
  io_uring_sqe* sqe = next_sqe();
  std::memset(info, 0, sizeof *info);
  io_uring_prep_rw(kOpWaitid, sqe, pid, nullptr, P_PID, 0);
  sqe->file_index = WEXITED;
  sqe->addr2 = reinterpret_cast<uint64_t>(info);
  io_uring_sqe_set_data64(sqe, tag(c));
}

void Ring::cancel(base::Completion& c) {
  if (!initialised_) return;  // closed: nothing is in flight any more
  if (timers_.remove(c)) {
    // A queued timer: completed with -ECANCELED from the next run_once, as the kernel's
    // cancel of a timeout would be (never from inside the caller).
    reaped_.push_back({tag(c), -ECANCELED, 0});
    return;
  }
  // Due and being completed by the current tick: it completes with -ETIME.
  if (std::find(due_.begin(), due_.end(), &c) != due_.end()) return;
  io_uring_sqe* sqe = next_sqe();
  io_uring_prep_cancel64(sqe, tag(c), 0);
  io_uring_sqe_set_data64(sqe, 0);
}

void Ring::cancel(base::MultishotCompletion& c) {
  if (!initialised_) return;
  io_uring_sqe* sqe = next_sqe();
  io_uring_prep_cancel64(sqe, tag(c), 0);
  io_uring_sqe_set_data64(sqe, 0);
}

void Ring::poll(int fd, short events, base::Completion& c) {
  io_uring_sqe* sqe = next_sqe();
  io_uring_prep_poll_add(sqe, fd, static_cast<unsigned>(static_cast<unsigned short>(events)));
  io_uring_sqe_set_data64(sqe, tag(c));
}

base::Result<std::unique_ptr<base::BufferRing>> Ring::buffer_ring(
    const base::BufferRingOptions& o) {
  auto b = ProvidedBuffers::create(*this, o);
  if (!b) return std::move(b).error();
  return std::unique_ptr<base::BufferRing>(std::move(b).value());
}

void Ring::recv_multishot(int fd, base::BufferRing& ring, base::MultishotCompletion& c) {
  io_uring_sqe* sqe = next_sqe();
  // Length 0 and no address: each datagram lands in a buffer the kernel selects from the group.
  io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = static_cast<ProvidedBuffers&>(ring).group();
  io_uring_sqe_set_data64(sqe, tag(c));
}

base::Result<unsigned> Ring::run_once() {
  // Completions already set aside: submit what is queued, but wait for nothing.
  int rc = reaped_.empty() ? io_uring_submit_and_wait(&ring_, 1) : io_uring_submit(&ring_);
  submitted();
  if (rc < 0 && rc != -EINTR && rc != -ETIME && rc != -EBUSY)
    return base::sys_error("io_uring_submit_and_wait", "", -rc);
  unsigned n = 0;
  // Completions a full queue made us set aside come first: they happened first.
  std::vector<Reaped> backlog;
  backlog.swap(reaped_);
  for (const Reaped& r : backlog) n += dispatch(r);
  io_uring_cqe* cqe = nullptr;
  // Dispatch one at a time: a completion handler may queue new SQEs or destroy objects whose
  // other operations are still in flight (they get their own CQEs later).
  while (io_uring_peek_cqe(&ring_, &cqe) == 0) {
    Reaped r{io_uring_cqe_get_data64(cqe), cqe->res, cqe->flags};
    io_uring_cqe_seen(&ring_, cqe);
    n += dispatch(r);
  }
  return n;
}

}  // namespace cellos::reactor
