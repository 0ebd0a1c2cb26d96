#include "cells/program_path.h"

#include <sys/stat.h>

#include <algorithm>
#include <vector>

#include "cells/root_view.h"
#include "cells/secrets.h"

namespace cellos::cells {

bool is_bare_program(std::string_view argv0) {
  return !argv0.empty() && argv0.find('/') == std::string_view::npos;
}

std::string cell_path(const Spec& spec) {
  for (const auto& [k, v] : spec.run.env)
    if (k == "PATH") return v;
  std::string_view def = kDefaultPath;
  return std::string(def.substr(def.find('=') + 1));
}

std::optional<std::string> resolve_program(const Spec& spec, const Config& config) {
  const std::string& name = spec.run.argv.at(0);
  if (!is_bare_program(name) || name == "." || name == "..") return std::nullopt;
  const auto view = root_view_paths(config.policy);
  const auto masked = masked_paths(config);
  const std::string path = cell_path(spec);
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = std::min(path.find(':', start), path.size());
    const std::string dir = path.substr(start, end - start);
    start = end + 1;
    // execvp reads an empty or relative entry as the working directory: the cell's workspace,
    // which holds the job's own files. Never searched here.
    if (!is_normalized_absolute(dir)) continue;
    const std::string candidate = dir + "/" + name;
    const bool in_view = std::any_of(view.begin(), view.end(), [&](const std::string& v) {
      return path_within(candidate, v);
    });
    const bool hidden = std::any_of(masked.begin(), masked.end(), [&](const std::string& m) {
      return path_within(candidate, m);
    });
    if (!in_view || hidden) continue;
    struct stat st {};
    if (::stat(candidate.c_str(), &st) != 0) continue;
    if (S_ISREG(st.st_mode) && (st.st_mode & 0111) != 0) return candidate;
  }
  return std::nullopt;
}

}  // namespace cellos::cells
