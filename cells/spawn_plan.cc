#include "cells/spawn_plan.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "cells/rootless.h"

namespace cellos::cells {
namespace {

constexpr uint32_t kMagic = 0x43454c31;  // "CEL1"

// The string lists of a plan, in the order they follow the header.
enum List { kInitArgv, kEnv, kWorkdir, kHostname, kKnobPaths, kKnobValues, kV1Procs, kHostPaths,
            kMasked, kBroker, kInputHost, kInputCell, kResolv, kNestedExe, kNestedConfig,
            kNestedState, kListCount };

struct Header {
  uint32_t magic = kMagic;
  uint32_t uid = 0, gid = 0;
  uint32_t want_pidfd = 1;
  uint32_t rootless = 0;  // ChildPlan::rootless
  // ChildPlan::nested: a descriptor number valid in the cloning process (the launcher's own
  // clone: nested plans never go to the spawner), and the user namespace bound.
  int32_t nested_sync_fd = -1;
  uint32_t nested_max_userns = 0;
  uint32_t counts[kListCount] = {};
};

void put_list(std::string& out, Header& h, List l, const std::vector<std::string>& v) {
  h.counts[l] = static_cast<uint32_t>(v.size());
  for (const auto& s : v) out.append(s.c_str(), std::strlen(s.c_str()) + 1);  // to a NUL, as before
}

void put_one(std::string& out, Header& h, List l, const std::string& s, bool optional) {
  if (optional && s.empty()) return;
  h.counts[l] = 1;
  out.append(s.c_str(), std::strlen(s.c_str()) + 1);
}

}  // namespace

bool encode_plan(const LaunchOptions& o, const std::vector<std::string>& init_args, int stdout_w,
                 int stderr_w, int status_w, WirePlan& out, std::string* why) {
  if (o.knob_paths.size() != o.knob_values.size()) {
    *why = "cgroup limit paths and values differ in number";
    return false;
  }
  if (o.input_host_paths.size() != o.input_paths.size() || o.input_paths.size() > kMaxPlanInputs) {
    *why = "inputs: host and cell paths differ in number, or too many";
    return false;
  }
  if ((o.workspace_mount_fd < 0) != (o.tmp_mount_fd < 0)) {
    *why = "held workspace and /tmp come together";
    return false;
  }
  Header h;
  h.uid = o.uid;
  h.gid = o.gid;
  h.want_pidfd = o.want_pidfd ? 1 : 0;
  h.rootless = running_rootless() ? 1 : 0;
  std::string body;
  put_list(body, h, kInitArgv, init_args);
  put_list(body, h, kEnv, o.env);
  put_one(body, h, kWorkdir, o.workdir, false);
  put_one(body, h, kHostname, o.hostname, false);
  std::vector<std::string> knobs, values, v1;
  for (const char* p : o.knob_paths) knobs.emplace_back(p);
  for (const char* p : o.knob_values) values.emplace_back(p);
  for (const char* p : o.v1_procs_paths) v1.emplace_back(p);
  put_list(body, h, kKnobPaths, knobs);
  put_list(body, h, kKnobValues, values);
  put_list(body, h, kV1Procs, v1);
  put_list(body, h, kHostPaths, o.host_paths);
  put_list(body, h, kMasked, o.masked_paths);
  put_one(body, h, kBroker, o.broker_dir, true);
  put_list(body, h, kInputHost, o.input_host_paths);
  put_list(body, h, kInputCell, o.input_paths);
  put_one(body, h, kResolv, o.resolv_conf, true);
  if (o.nested) {
    h.rootless = 1;
    h.nested_sync_fd = o.nested->sync_fd;
    h.nested_max_userns = o.nested->max_user_namespaces;
    put_one(body, h, kNestedExe, o.nested->exe, false);
    put_one(body, h, kNestedConfig, o.nested->config, false);
    put_one(body, h, kNestedState, o.nested->state_dir, false);
  }
  out.pointers = kListCount;
  for (uint32_t c : h.counts) out.pointers += c;
  out.bytes.assign(reinterpret_cast<const char*>(&h), sizeof h);
  out.bytes += body;
  out.fds[kWireStdout] = stdout_w;
  out.fds[kWireStderr] = stderr_w;
  out.fds[kWireStatus] = status_w;
  out.fds[kWireCgroup] = o.cgroup_v2_dirfd;
  out.fds[kWireNetns] = o.netns_fd;
  out.fds[kWireWorkspace] = o.workspace_mount_fd;
  out.fds[kWireTmp] = o.tmp_mount_fd;
  return true;
}

bool decode_plan(const char* bytes, size_t len, const int* fds, int stdin_fd, int init_fd,
                 const char** pointers, size_t n_pointers, DecodedPlan& out) {
  Header h;
  if (len < sizeof h) return false;
  std::memcpy(&h, bytes, sizeof h);
  if (h.magic != kMagic) return false;
  const char* at = bytes + sizeof h;
  const char* end = bytes + len;
  size_t used = 0;
  // Each list: its strings' addresses, then a null (argv and env need it; the rest ignore it).
  const char* const* lists[kListCount];
  for (int l = 0; l < kListCount; ++l) {
    if (h.counts[l] > n_pointers || used + h.counts[l] + 1 > n_pointers) return false;
    lists[l] = pointers + used;
    for (uint32_t i = 0; i < h.counts[l]; ++i) {
      const void* nul = std::memchr(at, '\0', static_cast<size_t>(end - at));
      if (!nul) return false;
      pointers[used++] = at;
      at = static_cast<const char*>(nul) + 1;
    }
    pointers[used++] = nullptr;
  }
  if (at != end) return false;
  if (h.counts[kInitArgv] == 0 || h.counts[kWorkdir] != 1 || h.counts[kHostname] != 1 ||
      h.counts[kKnobPaths] != h.counts[kKnobValues] || h.counts[kInputHost] != h.counts[kInputCell] ||
      h.counts[kInputCell] > kMaxPlanInputs || (fds[kWireWorkspace] < 0) != (fds[kWireTmp] < 0))
    return false;
  ChildPlan& p = out.plan;
  p = ChildPlan{};
  p.init_argv = lists[kInitArgv];
  p.envp = lists[kEnv];
  p.workdir = lists[kWorkdir][0];
  p.hostname = lists[kHostname][0];
  p.uid = h.uid;
  p.gid = h.gid;
  p.stdin_fd = stdin_fd;
  p.stdout_fd = fds[kWireStdout];
  p.stderr_fd = fds[kWireStderr];
  p.status_fd = fds[kWireStatus];
  p.init_fd = init_fd;
  p.knob_paths = lists[kKnobPaths];
  p.knob_values = lists[kKnobValues];
  p.n_knobs = static_cast<int>(h.counts[kKnobPaths]);
  p.v1_procs_paths = lists[kV1Procs];
  p.n_v1_procs_paths = static_cast<int>(h.counts[kV1Procs]);
  p.netns_fd = fds[kWireNetns];
  p.host_paths = lists[kHostPaths];
  p.n_host_paths = static_cast<int>(h.counts[kHostPaths]);
  p.masked_paths = lists[kMasked];
  p.n_masked_paths = static_cast<int>(h.counts[kMasked]);
  p.broker_dir = h.counts[kBroker] ? lists[kBroker][0] : nullptr;
  p.input_host_paths = lists[kInputHost];
  p.input_paths = lists[kInputCell];
  p.n_inputs = static_cast<int>(h.counts[kInputCell]);
  p.workspace_mount_fd = fds[kWireWorkspace];
  p.tmp_mount_fd = fds[kWireTmp];
  p.resolv_conf = h.counts[kResolv] ? lists[kResolv][0] : nullptr;
  p.rootless = h.rootless != 0;
  if (h.counts[kNestedExe] == 1 && h.counts[kNestedConfig] == 1 && h.counts[kNestedState] == 1) {
    p.nested = true;
    p.nested_sync_fd = h.nested_sync_fd;
    p.nested_max_user_namespaces = h.nested_max_userns;
    p.nested_exe = lists[kNestedExe][0];
    p.nested_config = lists[kNestedConfig][0];
    p.nested_state_dir = lists[kNestedState][0];
  }
  out.cgroup_fd = fds[kWireCgroup];
  out.want_pidfd = h.want_pidfd != 0;
  return true;
}

ssize_t send_plan(int sock, const WirePlan& plan, uint32_t flags) {
  uint32_t mask = flags;
  int fds[kWireFdCount];
  int n_fds = 0;
  for (int i = 0; i < kWireFdCount; ++i)
    if (plan.fds[i] >= 0) {
      mask |= 1u << i;
      fds[n_fds++] = plan.fds[i];
    }
  iovec iov[2] = {{&mask, sizeof mask}, {const_cast<char*>(plan.bytes.data()), plan.bytes.size()}};
  msghdr m{};
  m.msg_iov = iov;
  m.msg_iovlen = 2;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kWireFdCount)];
  if (n_fds > 0) {
    m.msg_control = control;
    m.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
    cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
    std::memcpy(CMSG_DATA(c), fds, sizeof(int) * n_fds);
  }
  ssize_t sent;
  while ((sent = ::sendmsg(sock, &m, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
  }
  return sent;
}

}  // namespace cellos::cells
