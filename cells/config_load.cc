// fleet.toml from a file: read with a size bound, parsed (config.cc), and the paths it names
// that must exist checked at once rather than when the first cell needs them.
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "base/fd.h"
#include "base/text.h"
#include "cells/config.h"

namespace cellos::cells {
namespace {

constexpr size_t kMaxConfigBytes = 1 << 20;

}  // namespace

Config load_config(const std::string& path) {
  auto text = base::read_regular_file(path, kMaxConfigBytes);
  if (!text) {
    const auto& e = text.error();
    throw ConfigError(path + ": cannot read: " +
                      (e.detail.empty() ? std::string(std::strerror(e.err)) : e.detail));
  }
  Config cfg = parse_config(text.value(), path);
  // Checked here, not in parse_config (which tests feed text): a missing secrets dir would
  // otherwise surface only when the first cell naming a secret is refused.
  if (!cfg.secrets.dir.empty()) {
    struct stat st {};
    if (::stat(cfg.secrets.dir.c_str(), &st) != 0)
      throw ConfigError(path + ": secrets.dir: \"" + base::clip(cfg.secrets.dir) +
                        "\": " + std::strerror(errno));
    if (!S_ISDIR(st.st_mode))
      throw ConfigError(path + ": secrets.dir: \"" + base::clip(cfg.secrets.dir) +
                        "\": not a directory");
  }
  return cfg;
}

}  // namespace cellos::cells
