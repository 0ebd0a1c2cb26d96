// Ring: the reactor's one io_uring, and the IoPort the rest of the tree drives it through.
//
// SINGLE_ISSUER|DEFER_TASKRUN: only the reactor thread submits, and completion work runs when
// that thread waits, never in interrupt context on another CPU. No SQPOLL: it burns a core.
// Every SQE's user_data is the address of a base::Completion (see base/io.h), or of a
// base::MultishotCompletion with the low bit set (both are vtable'd, so their addresses are at
// least 8-aligned and the bit is free); a CQE with user_data 0 belongs to a fire-and-forget
// request (cancel) and is dropped.
#pragma once

#include <liburing.h>
#include <poll.h>

#include <chrono>
#include <deque>
#include <map>
#include <string>
#include <memory>
#include <vector>

#include "base/io.h"
#include "base/result.h"
#include "reactor/timer_queue.h"

namespace cellos::reactor {

struct RingOptions {
  unsigned entries = 256;
  // Off: watch child exits with the POLL_ADD fallback even where IORING_OP_WAITID exists, so
  // the fallback is tested on kernels that never need it.
  bool use_waitid = true;
  // Bound on io_uring's kernel io-workers, for bounded and for unbounded work each.
  unsigned max_io_workers = 4;
};

class Ring final : public base::IoPort {
 public:
  static base::Result<std::unique_ptr<Ring>> create(const RingOptions& options);
  ~Ring() override;
  // Tears the ring down without dispatching anything; later cancels are no-ops, so owners of
  // completions may be destroyed afterwards without touching a dead ring.
  void close();
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  void read(int fd, std::span<std::byte> buf, base::Completion& c) override;
  void write(int fd, std::span<const std::byte> buf, base::Completion& c) override;
  void timeout(std::chrono::nanoseconds after, base::Completion& c) override;
  void wait_exit(int pidfd, siginfo_t* info, base::Completion& c) override;
  bool can_wait_pid() const override { return has_waitid_; }
  void wait_exit_pid(pid_t pid, siginfo_t* info, base::Completion& c) override;
  void cancel(base::Completion& c) override;
  void poll(int fd, short events, base::Completion& c) override;
  // Registers a provided-buffer ring (IORING_REGISTER_PBUF_RING) under a group id of its own;
  // the BufferRing unregisters it when destroyed, and must not outlive this Ring.
  base::Result<std::unique_ptr<base::BufferRing>> buffer_ring(
      const base::BufferRingOptions& o) override;
  void recv_multishot(int fd, base::BufferRing& ring, base::MultishotCompletion& c) override;
  void cancel(base::MultishotCompletion& c) override;
  // Completes with the accepted socket (close-on-exec), or -errno: the status socket and the
  // cells' secret brokers.
  void accept(int listen_fd, base::Completion& c) override;
  // IORING_OP_CLOSE with no completion anyone waits for; the small
  // file read as three linked SQEs, OPENAT into a direct descriptor (a slot of the ring's own
  // file table, never the process's), READ from it, CLOSE it: one submission, no syscall of
  // the reactor's own (cells' cgroup counters). Falls back to IoPort's plain syscalls when
  // the ring is closed or has no free slot.
  void close(int fd) override;
  void read_small_file(std::string path, size_t limit, FileText done) override;

  // Submits what is queued, waits for at least one completion and dispatches every completion
  // that is ready. Returns how many were dispatched.
  base::Result<unsigned> run_once();

  // Whether IORING_OP_WAITID is usable; without it, child exit is watched with POLL_ADD on the
  // pidfd (readable when the process exits) followed by a non-blocking waitid(2).
  bool has_waitid() const { return has_waitid_; }

 private:
  Ring() = default;
  io_uring_sqe* next_sqe();
  void probe();

  friend class ProvidedBuffers;
  friend class SmallRead;
  // Makes room for `n` SQEs without a submission in between (a linked chain must not be cut).
  void reserve(unsigned n);
  void submitted();  // what the kernel has copied at submission may go
  // Direct-descriptor slots of the registered file table, for read_small_file.
  std::vector<unsigned> free_slots_;
  // close(fd) requests not yet completed: close() of the ring waits for them.
  uint64_t untracked_ = 0;
  io_uring ring_{};
  // Buffer group ids in use: each BufferRing registers under the lowest free one.
  std::vector<bool> groups_;
  bool initialised_ = false;
  bool has_waitid_ = false;
  // A timeout SQE points at its timespec until the kernel copies it at submission; the deque
  // keeps their addresses stable until the next submit, then is cleared.
  std::deque<__kernel_timespec> pending_timespecs_;
  // Completions taken off a full completion queue so submission could go on (next_sqe), not
  // yet dispatched: run_once dispatches them first, in order.
  struct Reaped {
    uint64_t data;
    int res;
    uint32_t flags;
  };
  std::vector<Reaped> reaped_;
  void reap_into_backlog();
  // How many waiting completions it completed (a kernel timeout of the timer queue's may
  // complete several timers, or none).
  unsigned dispatch(const Reaped& r);

  // Timers (timer_queue.h): queued here; the kernel holds one IORING_OP_TIMEOUT per deadline
  // the queue's earliest was at when it was armed ("ticks", by id), usually just one.
  TimerQueue timers_;
  std::map<uint64_t, TimerQueue::Clock::time_point> ticks_;
  uint64_t next_tick_ = 0;
  // Timers being completed by the current tick: a cancel of one of them does nothing more (it
  // completes with -ETIME, as a kernel timeout that was due would have).
  std::vector<base::Completion*> due_;
  void arm_tick(TimerQueue::Clock::time_point deadline);
  unsigned on_tick(uint64_t id);
};

}  // namespace cellos::reactor
