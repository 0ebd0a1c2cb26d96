#include "cells/oci_bundle.h"

#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "cells/root_view.h"

namespace cellos::cells {
namespace {

using Json = nlohmann::json;

Json bind_ro(const std::string& path, const std::string& source) {
  return {{"destination", path},
          {"type", "bind"},
          {"source", source},
          {"options", {"rbind", "ro", "nosuid", "nodev"}}};
}

Json tmpfs(const std::string& path, std::vector<std::string> options) {
  return {{"destination", path}, {"type", "tmpfs"}, {"source", "tmpfs"}, {"options", options}};
}

}  // namespace

base::Result<std::string> oci_config_json(const OciBundleOptions& o) {
  for (const auto& p : o.host_paths)
    if (path_within(o.workdir, p))
      return base::value_error("spec.run.workingDirectory",
                               "\"" + o.workdir + "\" lies inside the host path " + p +
                                   ": a gVisor cell's workspace must be outside the host view");
  Json mounts = Json::array();
  mounts.push_back({{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}});
  mounts.push_back({{"destination", "/sys"},
                    {"type", "sysfs"},
                    {"source", "sysfs"},
                    {"options", {"nosuid", "noexec", "nodev", "ro"}}});
  // The cell's own tmpfs first: a host path below /tmp (an argv0 prefix) is bound onto it.
  mounts.push_back(tmpfs("/tmp", {"nosuid", "nodev", "mode=1777"}));
  mounts.push_back(tmpfs(o.workdir, {"nosuid", "nodev", "mode=0755", "uid=" + std::to_string(o.uid),
                                     "gid=" + std::to_string(o.gid)}));
  for (const auto& p : o.host_paths) {
    struct stat st{};
    // As the native view: an entry absent on this host is skipped; only directories and
    // regular files are bound (a socket or device named by the policy is left out).
    if (::stat(p.c_str(), &st) != 0 || !(S_ISDIR(st.st_mode) || S_ISREG(st.st_mode))) continue;
    mounts.push_back(bind_ro(p, p));
  }
  for (const auto& m : o.masked_paths) {
    struct stat st{};
    if (::stat(m.c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) mounts.push_back(tmpfs(m, {"ro", "nosuid", "nodev", "noexec", "mode=000"}));
    else mounts.push_back(bind_ro(m, "/dev/null"));
  }

  Json caps = Json::array();
  Json config = {
      {"ociVersion", "1.0.2"},
      {"hostname", o.hostname},
      {"root", {{"path", o.rootfs}, {"readonly", true}}},
      {"process",
       {{"terminal", false},
        {"args", o.argv},
        {"env", o.env},
        {"cwd", o.workdir},
        {"user", {{"uid", o.uid}, {"gid", o.gid}, {"additionalGids", Json::array()}}},
        {"capabilities",
         {{"bounding", caps}, {"effective", caps}, {"inheritable", caps}, {"permitted", caps},
          {"ambient", caps}}},
        {"noNewPrivileges", true},
        {"rlimits", o.nproc ? Json::array({{{"type", "RLIMIT_NPROC"}, {"hard", o.nproc},
                                              {"soft", o.nproc}}})
                            : Json::array()}}},
      {"mounts", mounts},
      {"linux",
       {{"namespaces",
         {{{"type", "pid"}}, {{"type", "ipc"}}, {{"type", "uts"}}, {{"type", "mount"}}}}}}};
  if (!o.netns_path.empty())
    config["linux"]["namespaces"].push_back({{"type", "network"}, {"path", o.netns_path}});
  return config.dump();
}

}  // namespace cellos::cells
