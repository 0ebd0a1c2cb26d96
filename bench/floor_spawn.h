// The kernel's floor for one isolated command, shared by spawn_floor and cell_bench so both
// measure exactly the same work: clone3(CLONE_PIDFD | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC |
// CLONE_NEWUTS | CLONE_NEWNET), the child execs /bin/true, the parent reaps it with
// waitid(P_PIDFD). No cgroup, no mounts, no seccomp, no events.
#pragma once

#include <linux/sched.h>  // struct clone_args, CLONE_PIDFD
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

namespace cellos::bench {

// Returns /bin/true's exit status, 128+N if signal N ended it, or -errno if clone3 or waitid
// failed.
inline int floor_spawn_once() {
  int pidfd = -1;
  clone_args args{};
  args.flags = CLONE_PIDFD | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS |
               CLONE_NEWNET;
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  args.exit_signal = SIGCHLD;
  long pid = ::syscall(SYS_clone3, &args, sizeof args);
  if (pid < 0) return -errno;
  if (pid == 0) {
    // A raw clone3 child is a copy of this single-threaded process, as after fork.
    char* const argv[] = {const_cast<char*>("/bin/true"), nullptr};
    char* const envp[] = {nullptr};
    ::execve(argv[0], argv, envp);
    ::_exit(127);
  }
  siginfo_t info{};
  int rc;
  do rc = ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &info, WEXITED);
  while (rc < 0 && errno == EINTR);
  int wait_errno = errno;
  ::close(pidfd);
  if (rc < 0) return -wait_errno;
  return info.si_code == CLD_EXITED ? info.si_status : 128 + info.si_status;
}

}  // namespace cellos::bench
