#include "cells/inputs.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/text.h"
#include "cells/root_view.h"

namespace cellos::cells {
namespace {

bool overlaps(std::string_view a, std::string_view b) {
  return path_within(a, b) || path_within(b, a);
}

std::string field(size_t i, const char* key) {
  return "spec.inputs[" + std::to_string(i) + "]." + key;
}

}  // namespace

std::string input_prefix_refusal(const Config& config, std::string_view prefix) {
  if (std::string why = host_path_refusal(prefix); !why.empty()) return why;
  for (const auto& v : root_view_paths(config.policy))
    if (overlaps(prefix, v))
      return "overlaps " + v +
             ", which every cell sees (policy.host_paths / argv0_allow_prefixes): every cell "
             "would see every input below it";
  std::vector<std::string> own{config.host.state_dir};
  if (config.events.jsonl != "-") own.push_back(config.events_path());
  if (!config.secrets.dir.empty()) own.push_back(config.secrets.dir);
  if (!config.events.signing_key.empty()) own.push_back(config.events.signing_key);
  for (const auto& o : own)
    if (overlaps(prefix, o)) return "overlaps the reactor's own " + o;
  return {};
}

base::Result<void> check_inputs(const Spec& spec, const Config& config) {
  const auto view = root_view_paths(config.policy);
  for (size_t i = 0; i < spec.inputs.size(); ++i) {
    const Input& in = spec.inputs[i];
    bool granted = false;
    for (const auto& [prefix, globs] : config.policy.input_grants) {
      if (in.host_path == prefix || !path_within(in.host_path, prefix)) continue;
      granted = granted || std::any_of(globs.begin(), globs.end(), [&](const std::string& g) {
                  return glob_matches(g, spec.id);
                });
    }
    if (!granted)
      return base::value_error(field(i, "hostPath"),
                               base::clip(in.host_path) + " is not below a directory granted to cell " +
                                   base::clip(spec.id) + " (fleet.toml [policy.input_grants])");
    // The setup makes the target's directories on the cell's own tmpfs (its root, /tmp or the
    // workspace); inside a read-only host path of the view it could not.
    if (in.path == spec.run.working_directory)
      return base::value_error(field(i, "path"),
                               "is the working directory itself, which would leave the command "
                               "no place to write; bind it below (" +
                                   spec.run.working_directory + "/src)");
    if (!path_within(in.path, spec.run.working_directory))
      for (const auto& v : view)
        if (path_within(in.path, v))
          return base::value_error(field(i, "path"),
                                   base::clip(in.path) + " is inside " + v +
                                       ", a read-only host path of the cell's view; bind it under "
                                       "the workspace or a path of the cell's own");
    // Every component, the last included: no symlink (a link in a checkout could name another
    // job's files), no magic link, nothing mounted over from elsewhere needs following.
    open_how how{};
    how.flags = O_PATH | O_CLOEXEC;
    how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    long fd = ::syscall(SYS_openat2, AT_FDCWD, in.host_path.c_str(), &how, sizeof how);
    if (fd < 0) {
      const int err = errno;
      return base::value_error(field(i, "hostPath"),
                               base::clip(in.host_path) +
                                   (err == ELOOP ? std::string(": a component is a symlink")
                                                 : ": " + std::string(std::strerror(err))));
    }
    struct stat st {};
    const int rc = ::fstat(static_cast<int>(fd), &st);
    ::close(static_cast<int>(fd));
    if (rc != 0 || !(S_ISDIR(st.st_mode) || S_ISREG(st.st_mode)))
      return base::value_error(field(i, "hostPath"),
                               base::clip(in.host_path) + ": not a regular file or a directory");
  }
  return base::ok();
}

}  // namespace cellos::cells
