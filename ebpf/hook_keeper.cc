// The keeper of the cgroup-BPF hooks' static keys (hook_keeper.h).
#include "ebpf/hook_keeper.h"

#include <bpf/bpf.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <iterator>

#include "base/fd.h"
#include "ebpf/probe_pins.h"

namespace cellos::ebpf {
namespace {

constexpr bpf_attach_type kKeptHooks[] = {BPF_CGROUP_INET_EGRESS, BPF_CGROUP_INET_INGRESS,
                                          BPF_CGROUP_INET4_CONNECT, BPF_CGROUP_INET6_CONNECT};
static_assert(std::size(kKeptHooks) == std::size(kPinnedProgs));

std::string keep_pin(const std::string& pin_path, size_t i) {
  return pin_path + "/keep_" + kPinnedProgs[i];
}

}  // namespace

bool hooks_kept(const std::string& pin_path) {
  // The links are pinned in order, so the last one present means all are.
  const std::string last = keep_pin(pin_path, std::size(kPinnedProgs) - 1);
  base::Fd link(bpf_obj_get(last.c_str()));
  if (!link) return false;
  bpf_link_info info{};
  __u32 len = sizeof info;
  if (bpf_obj_get_info_by_fd(link.get(), &info, &len) != 0) return false;
  // A link whose cgroup was removed stays pinned but is attached nowhere: id 0.
  return info.type == BPF_LINK_TYPE_CGROUP && info.cgroup.cgroup_id != 0;
}

base::Result<void> keep_hooks(const std::string& pin_path, const std::string& keeper_cgroup,
                              std::span<const int> progs) {
  if (progs.size() != std::size(kKeptHooks))
    return base::value_error("hook keeper", "expected one program per hook");
  if (hooks_kept(pin_path)) return base::ok();
  if (::mkdir(keeper_cgroup.c_str(), 0755) != 0 && errno != EEXIST)
    return base::sys_error("mkdir", "cgroup " + keeper_cgroup);
  base::Fd keep(::open(keeper_cgroup.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!keep) return base::sys_error("open", "cgroup " + keeper_cgroup);
  struct statfs fs{};
  if (::fstatfs(keep.get(), &fs) != 0 || fs.f_type != CGROUP2_SUPER_MAGIC)
    return base::value_error("hook keeper", keeper_cgroup + " is not a cgroup2 directory");
  for (size_t i = 0; i < progs.size(); ++i) {
    base::Fd link(bpf_link_create(progs[i], keep.get(), kKeptHooks[i], nullptr));
    if (!link) return base::sys_error("bpf_link_create", std::string("keeper ") + kPinnedProgs[i], errno);
    const std::string pin = keep_pin(pin_path, i);
    // A stale pin (its cgroup removed) is replaced; unpinning it releases its link.
    ::unlink(pin.c_str());
    if (bpf_obj_pin(link.get(), pin.c_str()) != 0) return base::sys_error("bpf_obj_pin", pin, errno);
  }  // the fds close here: the pins hold the links
  return base::ok();
}

}  // namespace cellos::ebpf
