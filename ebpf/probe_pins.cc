#include "ebpf/probe_pins.h"

#include <bpf/bpf.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace cellos::ebpf {
namespace {

bool on_bpffs(const std::string& path) {
  struct statfs st{};
  return ::statfs(path.c_str(), &st) == 0 && st.f_type == BPF_FS_MAGIC;
}

std::string parent_of(const std::string& p) {
  const auto slash = p.find_last_of('/');
  return slash == 0 ? "/" : slash == std::string::npos ? "." : p.substr(0, slash);
}

// Unlinks every entry of `dirfd` (pins only: bpffs holds nothing else we create).
void unlink_all(int dirfd) {
  const int fd = ::dup(dirfd);
  if (fd < 0) return;
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    ::close(fd);
    return;
  }
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') names.emplace_back(e->d_name);
  ::closedir(d);
  for (const auto& n : names) ::unlinkat(dirfd, n.c_str(), 0);
}

}  // namespace

std::string probe_digest(std::span<const std::byte> elf, const std::string& parameters) {
  // FNV-1a over 64-bit words (then the tail bytes): every `run` with egress hashes the whole
  // embedded object (~150 KiB), which byte by byte took ~0.1 ms, a twentieth of a cell.
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](const std::byte* p, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      h = (h ^ w) * 1099511628211ull;
    }
    for (; i < n; ++i) h = (h ^ static_cast<uint8_t>(p[i])) * 1099511628211ull;
  };
  mix(elf.data(), elf.size());
  mix(reinterpret_cast<const std::byte*>(parameters.data()), parameters.size());
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

base::Result<PinDir> lock_pin_dir(const std::string& root, const std::string& digest) {
  const std::string parent = parent_of(root);
  if (!on_bpffs(parent)) {
    if (parent != "/sys/fs/bpf")
      return base::value_error("flows.bpf_pin_dir", parent + " is not a bpffs mount");
    if (::mount("bpffs", parent.c_str(), "bpf", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0700") != 0)
      return base::sys_error("mount(bpf)", parent);
  }
  if (::mkdir(root.c_str(), 0700) != 0 && errno != EEXIST) return base::sys_error("mkdir", root);
  PinDir d;
  d.path = root + "/" + digest;
  if (::mkdir(d.path.c_str(), 0700) != 0 && errno != EEXIST) return base::sys_error("mkdir", d.path);
  d.dir = base::Fd(::open(d.path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!d.dir) return base::sys_error("open", d.path);
  if (::flock(d.dir.get(), LOCK_EX | LOCK_NB) != 0)
    return base::sys_error("flock", d.path + " (held by another reactor)");
  return d;
}

base::Result<std::vector<base::Fd>> get_pins(const PinDir& d,
                                             const std::vector<std::string>& names) {
  std::vector<base::Fd> fds;
  for (const auto& n : names) {
    const std::string path = d.path + "/" + n;
    const int fd = bpf_obj_get(path.c_str());
    if (fd < 0) return base::sys_error("bpf_obj_get", path, errno);
    fds.emplace_back(fd);
  }
  return fds;
}

base::Result<void> pin_all(const PinDir& d, const std::vector<std::string>& names,
                           const std::vector<int>& fds) {
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string path = d.path + "/" + names[i];
    if (bpf_obj_pin(fds[i], path.c_str()) != 0) {
      const int err = errno;
      clear_pins(d);
      return base::sys_error("bpf_obj_pin", path, err);
    }
  }
  return base::ok();
}

void clear_pins(const PinDir& d) { unlink_all(d.dir.get()); }

void remove_stale_pins(const std::string& root, const std::string& keep) {
  DIR* d = ::opendir(root.c_str());
  if (d == nullptr) return;
  std::vector<std::string> others;
  while (dirent* e = ::readdir(d))
    if (e->d_name[0] != '.' && keep != e->d_name) others.emplace_back(e->d_name);
  ::closedir(d);
  for (const auto& n : others) {
    const std::string path = root + "/" + n;
    base::Fd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    // Held: a reactor of another build still uses it; the next load after it ends removes it.
    if (!fd || ::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) continue;
    unlink_all(fd.get());
    ::rmdir(path.c_str());
  }
}

}  // namespace cellos::ebpf
