#include "reactor/cgroup_parent.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sstream>

#include "base/fd.h"

namespace cellos::reactor {
namespace {

std::string relative(const std::string& cgroup_path) {
  size_t i = cgroup_path.find_first_not_of('/');
  return i == std::string::npos ? "" : cgroup_path.substr(i);
}

std::string join(const std::string& base, const std::string& rest) {
  return base.empty() ? rest : base + "/" + rest;
}

}  // namespace

std::string unified_cgroup_of(const std::string& self_cgroup) {
  std::istringstream lines(self_cgroup);
  std::string line;
  while (std::getline(lines, line))
    if (line.rfind("0::", 0) == 0) return relative(line.substr(3));
  return "";
}

CgroupPlacement cgroup_placement_for_run(const cells::Config& config) {
  const std::string base = relative(config.host.cgroup_parent);
  return {join(base, "cellos/" + config.host.id), ""};
}

base::Result<CgroupPlacement> cgroup_placement_for_daemon(const cells::Config& config,
                                                          const std::string& unified_root,
                                                          const std::string& self_cgroup) {
  if (!config.host.cgroup_parent.empty()) return cgroup_placement_for_run(config);
  const std::string own = unified_cgroup_of(self_cgroup);
  if (own.empty()) return cgroup_placement_for_run(config);
  // Already moved (a re-exec, or a second start in the same unit): our own cgroup is the leaf.
  std::string delegated = own;
  if (own == "supervisor" || own.ends_with("/supervisor"))
    delegated = own.size() == 10 ? "" : own.substr(0, own.size() - 11);
  if (delegated.empty()) return cgroup_placement_for_run(config);
  const std::string leaf = unified_root + "/" + delegated + "/supervisor";
  if (::mkdir(leaf.c_str(), 0755) != 0 && errno != EEXIST)
    return base::sys_error("mkdir", "cgroup \"" + leaf + "\"");
  if (own != delegated + "/supervisor") {
    auto procs = base::open_at(AT_FDCWD, leaf + "/cgroup.procs", O_WRONLY | O_CLOEXEC);
    if (!procs) return std::move(procs).error();
    if (::write(procs->get(), "0", 1) != 1)
      return base::sys_error("write", "\"" + leaf + "/cgroup.procs\"");
  }
  return CgroupPlacement{delegated + "/cellos/" + config.host.id, delegated};
}

}  // namespace cellos::reactor
