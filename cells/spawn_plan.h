// A cell's ChildPlan as one flat message: what the launcher hands the spawner (spawner.h) over
// its socket, with the cell's descriptors beside it (SCM_RIGHTS). The launcher's own clone path
// decodes the same bytes, so both paths build the child's plan the same way.
//
// Decoding allocates nothing: the spawner is a fork of its parent that may have had other
// threads (a test binary), so it must not take a malloc lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "cells/child_setup.h"
#include "cells/launcher.h"

namespace cellos::cells {

// The largest plan sent to the spawner (argv and env included): under a unix socket's default
// send buffer. A larger one is cloned by the launcher itself.
inline constexpr size_t kMaxWirePlan = 128 * 1024;
// Pointers a decoded plan may need (argv, env and every path list, with their terminators).
inline constexpr size_t kMaxWirePointers = 4096;

// The cell's descriptors, in the order they travel; absent ones (-1) are not sent.
enum WireFd { kWireStdout, kWireStderr, kWireStatus, kWireCgroup, kWireNetns, kWireWorkspace,
              kWireTmp, kWireFdCount };

struct WirePlan {
  std::string bytes;
  int fds[kWireFdCount] = {-1, -1, -1, -1, -1, -1, -1};
  size_t pointers = 0;  // what decoding needs: one per string, one per list's terminator
};

// Sends `plan` on the unix socket `sock` as one message: a 32-bit mask (`flags` | bit i for each
// fds[i] present), then the bytes, the present fds as SCM_RIGHTS. The spawner and a prepared
// cell (prepared_cell.h) read it the same way. The sendmsg result (-1 with errno set).
ssize_t send_plan(int sock, const WirePlan& plan, uint32_t flags);

// The plan for `o` whose init runs `init_args`; the stdio and status write ends are given.
// False (with *why) when it is not expressible (too many inputs).
bool encode_plan(const LaunchOptions& o, const std::vector<std::string>& init_args, int stdout_w,
                 int stderr_w, int status_w, WirePlan& out, std::string* why);

// What a decoded plan clones with, beside the plan itself.
struct DecodedPlan {
  ChildPlan plan;
  int cgroup_fd = -1;
  bool want_pidfd = true;
};

// Fills `out` from `bytes`, whose strings stay where they are (the plan points into them), and
// `fds` (kWireFdCount entries, -1 for absent). stdin is `stdin_fd`, the init `init_fd`.
// False when the bytes are not a whole plan.
bool decode_plan(const char* bytes, size_t len, const int* fds, int stdin_fd, int init_fd,
                 const char** pointers, size_t n_pointers, DecodedPlan& out);

}  // namespace cellos::cells
