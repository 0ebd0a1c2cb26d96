#include "reactor/spool.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "base/fd.h"
#include "base/input_limits.h"
#include "base/json.h"
#include "base/text.h"

namespace cellos::reactor {
namespace {

bool is_entry_name(const char* n) { return n[0] != '\0' && n[0] != '.'; }

// rejected/ <name> + <name>.error, grouped by spec: its age is the newest mtime of the two (the
// .error is written at rejection).
struct RejectedEntry {
  timespec mtime{};
  std::string stem;
};

std::string stem_of(std::string_view name) {
  constexpr std::string_view kSuffix = ".error";
  if (name.ends_with(kSuffix)) name.remove_suffix(kSuffix.size());
  return std::string(name);
}

bool older(const timespec& a, const timespec& b) {
  return a.tv_sec != b.tv_sec ? a.tv_sec < b.tv_sec : a.tv_nsec < b.tv_nsec;
}

}  // namespace

StateDirs::StateDirs(const std::string& state_dir)
    : state(state_dir),
      spool(state_dir + "/spool"),
      active(state_dir + "/active"),
      rejected(state_dir + "/rejected"),
      logs(state_dir + "/logs") {}

base::Result<void> StateDirs::make() const {
  for (const std::string* d : {&state, &spool, &active, &rejected, &logs})
    CELLOS_TRY(base::make_dirs(*d));
  return base::ok();
}

std::vector<std::string> scan_spool(const StateDirs& dirs) {
  struct Entry {
    timespec mtime;
    std::string name;
  };
  std::vector<Entry> entries;
  DIR* d = ::opendir(dirs.spool.c_str());
  if (!d) return {};
  while (dirent* e = ::readdir(d)) {
    if (!is_entry_name(e->d_name)) continue;
    struct stat st{};
    timespec t{};
    if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0) t = st.st_mtim;
    entries.push_back({t, e->d_name});
  }
  ::closedir(d);
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    if (a.mtime.tv_sec != b.mtime.tv_sec) return a.mtime.tv_sec < b.mtime.tv_sec;
    if (a.mtime.tv_nsec != b.mtime.tv_nsec) return a.mtime.tv_nsec < b.mtime.tv_nsec;
    return a.name < b.name;
  });
  std::vector<std::string> names;
  for (auto& e : entries) names.push_back(std::move(e.name));
  return names;
}

base::Result<std::string> read_spool_entry(const StateDirs& dirs, const std::string& name,
                                           base::IoPort* io) {
  const std::string path = dirs.spool + "/" + name;
  // O_NONBLOCK: a FIFO dropped into the spool must not hang the reactor on open.
  auto fd = base::open_at(AT_FDCWD, path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  if (!fd) return std::move(fd).error();
  struct CloseThrough {
    base::Fd& fd;
    base::IoPort* io;
    ~CloseThrough() {
      if (io) io->close(fd.release());
    }
  } close_through{*fd, io};
  struct stat st{};
  if (::fstat(fd->get(), &st) != 0) return base::sys_error("fstat", "\"" + path + "\"");
  if (!S_ISREG(st.st_mode))
    return base::Error{EINVAL, "read", "\"" + path + "\"", "not a regular file", {}};
  if (static_cast<uint64_t>(st.st_size) > base::kMaxSpecBytes)
    return base::Error{EFBIG, "read", "\"" + path + "\"",
                       std::to_string(st.st_size) + " bytes: over the " +
                           base::size_text(base::kMaxSpecBytes) + " a spec may have",
                       {}};
  // Exactly st_size bytes: a spool entry is complete once renamed in, so the EOF read that
  // read_fd would make is one syscall per spec for nothing.
  std::string text(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < text.size()) {
    ssize_t n = ::read(fd->get(), text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return base::sys_error("read", "\"" + path + "\"");
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  text.resize(got);
  return text;
}

base::Result<std::string> move_to_active(const StateDirs& dirs, const std::string& name,
                                         const std::string& cell_id) {
  std::string from = dirs.spool + "/" + name, to = dirs.active + "/" + cell_id + ".json";
  if (::rename(from.c_str(), to.c_str()) != 0)
    return base::sys_error("rename", "\"" + from + "\" to \"" + to + "\"");
  return to;
}

base::Result<void> move_to_rejected(const StateDirs& dirs, const std::string& name,
                                    const std::string& reason) {
  std::string from = dirs.spool + "/" + name, to = dirs.rejected + "/" + name;
  // The reason first: whoever sees the rejected file finds its .error beside it. One bounded
  // line, whatever the reason quotes.
  CELLOS_TRY(base::replace_file(to + ".error", base::bounded_line(reason) + "\n"));
  // An entry over the spec cap is not kept: rejected/ holds copies for diagnosis, not the
  // payload of whoever dropped 100 MB into the spool.
  struct stat st {};
  if (::lstat(from.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
      static_cast<uint64_t>(st.st_size) > base::kMaxSpecBytes) {
    if (::unlink(from.c_str()) != 0 && errno != ENOENT)
      return base::sys_error("unlink", "\"" + from + "\"");
  } else if (::rename(from.c_str(), to.c_str()) != 0 && errno != ENOENT) {
    // A directory of the same name left from an earlier rejection would refuse the rename.
    return base::sys_error("rename", "\"" + from + "\" to \"" + to + "\"");
  }
  prune_rejected(dirs);
  return base::ok();
}

size_t prune_rejected(const StateDirs& dirs, const RejectedBounds& bounds) {
  DIR* d = ::opendir(dirs.rejected.c_str());
  if (!d) return 0;
  // Counting names costs a getdents or two for a few hundred entries; the stat of every entry is
  // paid only past the bound, and pruning goes down to 3/4 of it, so a flood of rejections pays
  // it once per max_entries/4 rejections, not at every one.
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d))
    if (is_entry_name(e->d_name)) names.emplace_back(e->d_name);
  size_t specs = 0;
  for (const auto& n : names)
    if (!n.ends_with(".error")) ++specs;
  if (specs <= bounds.max_entries && names.size() <= 2 * bounds.max_entries) {
    ::closedir(d);
    return 0;
  }
  std::sort(names.begin(), names.end());  // a spec and its .error side by side
  std::vector<RejectedEntry> entries;
  for (const auto& n : names) {
    struct stat st {};
    if (::fstatat(::dirfd(d), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    std::string stem = stem_of(n);
    if (entries.empty() || entries.back().stem != stem) entries.push_back({st.st_mtim, stem});
    if (older(entries.back().mtime, st.st_mtim)) entries.back().mtime = st.st_mtim;
  }
  std::sort(entries.begin(), entries.end(), [](const RejectedEntry& a, const RejectedEntry& b) {
    return older(a.mtime, b.mtime) || (!older(b.mtime, a.mtime) && a.stem < b.stem);
  });
  const size_t keep = bounds.max_entries - bounds.max_entries / 4;
  size_t removed = 0;
  for (size_t i = 0; i + keep < entries.size(); ++i) {
    const std::string& stem = entries[i].stem;
    // Either file may be missing (a rejection whose copy was not kept). A directory renamed
    // into the spool is removed only when empty: the daemon never deletes trees.
    if (::unlinkat(::dirfd(d), stem.c_str(), 0) != 0 && errno == EISDIR)
      ::unlinkat(::dirfd(d), stem.c_str(), AT_REMOVEDIR);
    ::unlinkat(::dirfd(d), (stem + ".error").c_str(), 0);
    ++removed;
  }
  ::closedir(d);
  return removed;
}

namespace {

// A spool entry's name: its submission time and the submitter's pid, so two submitters never
// pick the same name.
std::string spool_entry_name(const std::string& cell_id) {
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  char stamp[48];
  std::snprintf(stamp, sizeof stamp, "%020lld-%06d-", static_cast<long long>(
                    now.tv_sec * 1000000000LL + now.tv_nsec), static_cast<int>(::getpid() % 1000000));
  return std::string(stamp) + cell_id + ".json";
}

}  // namespace

base::Result<std::string> submit_to_spool(const StateDirs& dirs, const std::string& cell_id,
                                          const std::string& spec_text) {
  CELLOS_TRY(base::make_dirs(dirs.spool));
  std::string path = dirs.spool + "/" + spool_entry_name(cell_id);
  CELLOS_TRY(base::replace_file(path, spec_text, 0640));
  return path;
}

base::Result<StagedSpec> stage_in_spool(const StateDirs& dirs, const std::string& cell_id,
                                        const std::string& spec_text) {
  CELLOS_TRY(base::make_dirs(dirs.spool));
  const std::string name = spool_entry_name(cell_id);
  StagedSpec s{dirs.spool + "/." + name + ".tmp", dirs.spool + "/" + name};
  // O_EXCL: the name is this process's (time and pid); never write through what is there.
  int fd = ::open(s.staged.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);
  if (fd < 0) return base::sys_error("open", "\"" + s.staged + "\"");
  base::Fd f(fd);
  size_t off = 0;
  while (off < spec_text.size()) {
    ssize_t n = ::write(fd, spec_text.data() + off, spec_text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      base::Error e = base::sys_error("write", "\"" + s.staged + "\"");
      ::unlink(s.staged.c_str());
      return e;
    }
    off += static_cast<size_t>(n);
  }
  return s;
}

std::string staged_entry_name(std::string_view staged) {
  constexpr std::string_view kTmp = ".tmp";
  if (staged.size() <= 1 + kTmp.size() || staged.front() != '.' || !staged.ends_with(kTmp) ||
      staged.find('/') != std::string_view::npos || staged.find('\0') != std::string_view::npos)
    return {};
  std::string entry(staged.substr(1, staged.size() - 1 - kTmp.size()));
  if (!is_entry_name(entry.c_str()) || entry == "." || entry == "..") return {};
  return entry;
}

base::Result<std::unique_ptr<SpoolWatcher>> SpoolWatcher::create(base::IoPort& io,
                                                                 const std::string& dir,
                                                                 Handlers h) {
  int fd = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (fd < 0) return base::sys_error("inotify_init1", "spool \"" + dir + "\"");
  base::Fd ifd(fd);
  // IN_MOVED_TO: the documented way in (rename). IN_CLOSE_WRITE: a file written in place, taken
  // once its writer closes it.
  if (::inotify_add_watch(fd, dir.c_str(), IN_MOVED_TO | IN_CLOSE_WRITE | IN_ONLYDIR) < 0)
    return base::sys_error("inotify_add_watch", "spool \"" + dir + "\"");
  std::unique_ptr<SpoolWatcher> w(new SpoolWatcher(io, std::move(ifd), std::move(h)));
  w->arm();
  return w;
}

void SpoolWatcher::arm() {
  in_flight_ = true;
  io_.read(fd_.get(), std::span(buf_), *this);
}

void SpoolWatcher::stop() {
  if (stopped_) return;
  stopped_ = true;
  if (in_flight_) io_.cancel(*this);
}

void SpoolWatcher::complete(int res) {
  in_flight_ = false;
  if (stopped_) return;
  if (res < 0) {
    if (res == -EINTR || res == -EAGAIN) return arm();
    std::fprintf(stderr, "cellos-reactor: spool watch: read(inotify): %s; rescanning\n",
                 std::strerror(-res));
    if (h_.on_overflow) h_.on_overflow();
    return arm();
  }
  size_t off = 0;
  while (off + sizeof(inotify_event) <= static_cast<size_t>(res)) {
    const auto* ev = reinterpret_cast<const inotify_event*>(buf_.data() + off);
    off += sizeof(inotify_event) + ev->len;
    if (ev->mask & IN_Q_OVERFLOW) {
      if (h_.on_overflow) h_.on_overflow();
    } else if (ev->len > 0 && is_entry_name(ev->name)) {
      // Directories too (IN_ISDIR): one renamed in is rejected as unreadable, not ignored.
      h_.on_entry(ev->name);
    }
    if (stopped_) return;
  }
  arm();
}

}  // namespace cellos::reactor
