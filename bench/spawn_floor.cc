// spawn_floor: the kernel's floor for starting an isolated command.
//
//   spawn_floor [-n N]     (default 1)
//
// N times: clone3(CLONE_PIDFD | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS |
// CLONE_NEWNET), the child execs /bin/true, the parent reaps it with waitid(P_PIDFD). Nothing
// else: no cgroup, no mounts, no seccomp, no events. Whatever cellos-reactor `run` spends
// beyond this is the runtime's own cost. Exits with the last failing child's status (0 if all
// succeeded), so the benchmark driver can check every invocation.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "bench/floor_spawn.h"

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
    int s = cellos::bench::floor_spawn_once();
    if (s < 0) {
      std::fprintf(stderr, "spawn_floor: clone3/waitid: %s\n", std::strerror(-s));
      return 1;
    }
    if (s != 0) status = s;
  }
  return status;
}
