#include "cells/rootless.h"

#include <fcntl.h>

#include <sstream>

#include "base/fd.h"
#include "cells/uid_pool.h"

namespace cellos::cells {

base::Result<std::vector<IdMapLine>> parse_id_map(const std::string& text) {
  std::vector<IdMapLine> out;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    std::istringstream f(line);
    unsigned long long in = 0, outside = 0, count = 0;
    if (!(f >> in >> outside >> count) || in > UINT32_MAX || outside > UINT32_MAX ||
        count > UINT32_MAX || count == 0)
      return base::value_error("uid_map", "malformed line \"" + line + "\"");
    out.push_back({static_cast<uint32_t>(in), static_cast<uint32_t>(outside),
                   static_cast<uint32_t>(count)});
  }
  return out;
}

bool is_rootless_map(const std::vector<IdMapLine>& map) {
  return !(map.size() == 1 && map[0].inside == 0 && map[0].outside == 0 &&
           map[0].count == UINT32_MAX);
}

namespace {
std::vector<IdMapLine> own_map() {
  auto text = base::read_file_at(AT_FDCWD, "/proc/self/uid_map");
  if (!text) return {{0, 0, UINT32_MAX}};
  auto map = parse_id_map(*text);
  return map ? *map : std::vector<IdMapLine>{{0, 0, UINT32_MAX}};
}
}  // namespace

bool running_rootless() {
  static const bool value = is_rootless_map(own_map());
  return value;
}

base::Result<void> check_uid_range_mapped(uint32_t first, uint32_t last,
                                          const std::vector<IdMapLine>& map) {
  // Ranges may be split across lines: walk from `first` through consecutive mapped pieces.
  uint64_t next = first;
  for (bool moved = true; moved && next <= last;) {
    moved = false;
    for (const auto& m : map)
      if (next >= m.inside && next < uint64_t{m.inside} + m.count) {
        next = uint64_t{m.inside} + m.count;
        moved = true;
      }
  }
  if (next > last) return base::ok();
  std::string mapped;
  for (const auto& m : map)
    mapped += (mapped.empty() ? "" : ", ") + std::to_string(m.inside) + "-" +
              std::to_string(uint64_t{m.inside} + m.count - 1);
  return base::value_error("policy.uid_range",
                           std::to_string(first) + "-" + std::to_string(last) +
                               " is not inside this user namespace's mapped uids (" + mapped +
                               "): rootless cells can only run as mapped uids");
}

base::Result<void> check_rootless_host(const Config& config) {
  if (!running_rootless()) return base::ok();
  return check_uid_range_mapped(config.policy.uid_first, config.policy.uid_last, own_map());
}

std::string uid_lease_file(const Config& config) {
  return running_rootless() ? config.host.state_dir + "/uids.lock" : std::string(kUidLeaseFile);
}

}  // namespace cellos::cells
