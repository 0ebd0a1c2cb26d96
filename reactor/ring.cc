#include "reactor/ring.h"

#include <sys/wait.h>

#include <cstring>

namespace cellos::reactor {
namespace {

// liburing 2.3 predates IORING_OP_WAITID (kernel 6.7): the opcode number and SQE layout are the
// kernel's ABI, filled by hand (see DESIGN.md, "Kernel facts").
constexpr uint8_t kOpWaitid = 50;

uint64_t tag(base::Completion& c) { return reinterpret_cast<uint64_t>(&c); }

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

}  // namespace

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
  return r;
}

Ring::~Ring() {
  if (initialised_) io_uring_queue_exit(&ring_);
}

void Ring::probe() {
  io_uring_probe* pr = io_uring_get_probe_ring(&ring_);
  if (pr == nullptr) return;
  has_waitid_ = pr->last_op >= kOpWaitid && (pr->ops[kOpWaitid].flags & IO_URING_OP_SUPPORTED);
  io_uring_free_probe(pr);
}

io_uring_sqe* Ring::next_sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  while (sqe == nullptr) {
    // The submission queue is full: hand what is queued to the kernel and take a fresh slot.
    io_uring_submit(&ring_);
    pending_timespecs_.clear();
    sqe = io_uring_get_sqe(&ring_);
  }
  return sqe;
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
  auto ns = after.count() < 0 ? 0 : after.count();
  // The SQE first: taking it may submit (queue full) and clear pending_timespecs_.
  io_uring_sqe* sqe = next_sqe();
  __kernel_timespec& ts = pending_timespecs_.emplace_back();
  ts.tv_sec = ns / 1000000000;
  ts.tv_nsec = ns % 1000000000;
  io_uring_prep_timeout(sqe, &ts, 0, 0);
  io_uring_sqe_set_data64(sqe, tag(c));
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
  io_uring_sqe* sqe = next_sqe();
  io_uring_prep_cancel64(sqe, tag(c), 0);
  io_uring_sqe_set_data64(sqe, 0);
}

base::Result<unsigned> Ring::run_once() {
  int rc = io_uring_submit_and_wait(&ring_, 1);
  pending_timespecs_.clear();
  if (rc < 0 && rc != -EINTR && rc != -ETIME && rc != -EBUSY)
    return base::sys_error("io_uring_submit_and_wait", "", -rc);
  unsigned n = 0;
  io_uring_cqe* cqe = nullptr;
  // Dispatch one at a time: a completion handler may queue new SQEs or destroy objects whose
  // other operations are still in flight (they get their own CQEs later).
  while (io_uring_peek_cqe(&ring_, &cqe) == 0) {
    uint64_t data = io_uring_cqe_get_data64(cqe);
    int res = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
    if (data == 0) continue;  // a cancel request's own CQE: nobody waits for it
    reinterpret_cast<base::Completion*>(data)->complete(res);
    ++n;
  }
  return n;
}

}  // namespace cellos::reactor
