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
#include <span>

namespace cellos::base {

class Completion {
 public:
  virtual void complete(int res) = 0;

 protected:
  ~Completion() = default;
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
  // Asks the kernel to cancel the operation owned by `c`. `c` still gets its own completion
  // (usually -ECANCELED); the cancel request itself reports nowhere.
  virtual void cancel(Completion& c) = 0;
};

}  // namespace cellos::base
