// The completion contract between the reactor and everything below it.
//
// Code in cells/, netns/ and sinks/ never sees io_uring: it asks an IoPort to start an
// operation and hands it a Completion, whose complete() the reactor calls exactly once with
// the operation's result (bytes, 0, or -errno) when the kernel finishes it. The reactor puts
// the Completion's address in the SQE's user_data, so a Completion must stay alive and must
// not be reused until complete() has run: owners count what is in flight and outlive it.
#pragma once

#include <signal.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <functional>
#include <span>
#include <string>

#include "base/result.h"

namespace cellos::base {

class Completion {
 public:
  virtual void complete(int res) = 0;

 protected:
  ~Completion() = default;
};

// One completion of a multishot operation. The kernel keeps the operation armed and reports
// each result separately until it reports one with `more` false: only then may the owner
// destroy or re-arm the MultishotCompletion.
struct Shot {
  int res = 0;      // bytes received, or -errno
  int buffer = -1;  // the provided buffer holding those bytes (BufferRing id), or -1: none
  bool more = false;
};

class MultishotCompletion {
 public:
  virtual void shot(const Shot& s) = 0;

 protected:
  ~MultishotCompletion() = default;
};

// N buffers of one size, lent to the kernel for receives: the kernel picks a free one per
// datagram and names it in the Shot, the consumer reads it and gives it back with recycle().
// While every buffer is out, a multishot receive ends with -ENOBUFS (Shot.more false): its owner
// recycles what it holds and arms it again. Must not outlive the IoPort that made it.
struct BufferRingOptions {
  unsigned count = 16;        // a power of two, at most 32768 (the kernel's rule)
  size_t buffer_size = 8192;  // each buffer holds one datagram; a longer one is truncated
};

class BufferRing {
 public:
  virtual ~BufferRing() = default;
  virtual unsigned count() const = 0;
  virtual size_t buffer_size() const = 0;
  // The first `len` bytes of buffer `id` (as a Shot named them).
  virtual std::span<const std::byte> data(int id, size_t len) const = 0;
  // Hands buffer `id` back to the kernel. Each id the kernel delivered, exactly once.
  virtual void recycle(int id) = 0;
};

class IoPort {
 public:
  virtual ~IoPort() = default;
  virtual void read(int fd, std::span<std::byte> buf, Completion& c) = 0;
  // A write at the fd's current position (pipes, terminals, O_APPEND files).
  virtual void write(int fd, std::span<const std::byte> buf, Completion& c) = 0;
  // Completes with -ETIME when the time has passed, -ECANCELED when cancelled.
  virtual void timeout(std::chrono::nanoseconds after, Completion& c) = 0;
  // Reaps the process behind a pidfd (WEXITED); fills *info. Completes with 0 or -errno.
  virtual void wait_exit(int pidfd, siginfo_t* info, Completion& c) = 0;
  // Whether wait_exit_pid works: a child's exit watched by its pid alone, with no pidfd held.
  // A child's pid cannot be reused until it is reaped, so this is as safe as a pidfd for our
  // own children, and saves a descriptor per cell (thousands of cells, a 20000-fd limit).
  virtual bool can_wait_pid() const { return false; }
  virtual void wait_exit_pid(pid_t pid, siginfo_t* info, Completion& c) {
    (void)pid, (void)info;
    c.complete(-EOPNOTSUPP);
  }
  // One-shot POLL_ADD: completes with the revents that fired (> 0), or -errno.
  virtual void poll(int fd, short events, Completion& c) {
    (void)fd, (void)events;
    c.complete(-EOPNOTSUPP);
  }
  // Accepts one connection on a listening socket: completes with the new socket (close-on-exec)
  // or -errno.
  virtual void accept(int listen_fd, Completion& c) {
    (void)listen_fd;
    c.complete(-EOPNOTSUPP);
  }
  // A BufferRing registered with this port, for recv_multishot.
  virtual Result<std::unique_ptr<BufferRing>> buffer_ring(const BufferRingOptions& o) {
    (void)o;
    return sys_error("buffer_ring", "", EOPNOTSUPP);
  }
  // Multishot receive on a socket into `ring`'s buffers: one Shot per datagram, each naming the
  // buffer that holds it, until a Shot with more=false (an error, -ENOBUFS when every buffer
  // is out, -ECANCELED after cancel(c)).
  virtual void recv_multishot(int fd, BufferRing& ring, MultishotCompletion& c) {
    (void)fd, (void)ring;
    c.shot(Shot{-EOPNOTSUPP, -1, false});
  }
  virtual void cancel(MultishotCompletion& c) { (void)c; }
  // File work the reactor thread would otherwise do with a syscall of its own per cell: the
  // ring carries it in the io_uring_enter it makes anyway. The defaults here make the plain
  // syscalls at once (ports without a ring).
  //
  // Closes `fd`, which the caller gives up now. The descriptor stays open (and its number
  // taken) until the next submission, which the reactor makes before it waits: a pipe's write
  // end closed so still gives its reader EOF.
  virtual void close(int fd);
  // Reads at most `limit` bytes (up to 4096) of the small file at `path` (cgroup counters, ...)
  // and calls `done` with its text or the error, from a completion round (never from inside
  // this call on a ring with a free slot; the default, and a ring without one, read at once
  // and call it before returning).
  using FileText = std::function<void(Result<std::string>)>;
  virtual void read_small_file(std::string path, size_t limit, FileText done);
  // Asks the kernel to cancel the operation owned by `c`. `c` still gets its own completion
  // (usually -ECANCELED); the cancel request itself reports nowhere.
  virtual void cancel(Completion& c) = 0;
};

}  // namespace cellos::base
