// spawn_floor: the kernel's floor for starting an isolated command.
//
//   spawn_floor [-n N]     (default 1)
//
// N times: clone3(CLONE_PIDFD | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS |
// CLONE_NEWNET), the child execs /bin/true, the parent reaps it with waitid(P_PIDFD). Nothing
// else: no cgroup, no mounts, no seccomp, no events. Whatever cellos-reactor `run` spends
// beyond this is the runtime's own cost. Exits with the last failing child's status (0 if all
// succeeded), so the benchmark driver can check every invocation.
#include <linux/sched.h>  // struct clone_args, CLONE_PIDFD
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

constexpr uint64_t kFlags = CLONE_PIDFD | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC |
                            CLONE_NEWUTS | CLONE_NEWNET;

// One isolated /bin/true. Returns its exit status, or 128+N if signal N ended it, or -1.
int spawn_once() {
  int pidfd = -1;
  clone_args args{};
  args.flags = kFlags;
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  args.exit_signal = SIGCHLD;
  long pid = ::syscall(SYS_clone3, &args, sizeof args);
  if (pid < 0) {
    std::fprintf(stderr, "spawn_floor: clone3: %s\n", std::strerror(errno));
    return -1;
  }
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
  if (rc < 0) {
    std::fprintf(stderr, "spawn_floor: waitid(P_PIDFD): %s\n", std::strerror(wait_errno));
    return -1;
  }
  return info.si_code == CLD_EXITED ? info.si_status : 128 + info.si_status;
}

}  // namespace

int main(int argc, char** argv) {
  long n = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
      char* end = nullptr;
      n = std::strtol(argv[++i], &end, 10);
      if (*end != '\0' || n < 1) {
        std::fprintf(stderr, "spawn_floor: -n wants a positive integer, got \"%s\"\n", argv[i]);
        return 2;
      }
    } else {
      std::fprintf(stderr, "usage: spawn_floor [-n N]\n");
      return 2;
    }
  }
  int status = 0;
  for (long i = 0; i < n; ++i) {
    int s = spawn_once();
    if (s < 0) return 1;
    if (s != 0) status = s;
  }
  return status;
}
