#include "cells/uid_pool.h"

#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <unordered_set>

namespace cellos::cells {

// The lease file, opened once per process; this process's leases; where the next search
// starts (just past the last lease, so a daemon's search does not walk its own live leases).
struct UidLease::File {
  base::Fd fd;
  std::string path;
  std::unordered_set<uid_t> held;
  uint64_t cursor = 0;
};

namespace {

base::Result<base::Fd> open_lease_file(const std::string& path) {
  auto fd = base::open_at(AT_FDCWD, path, O_RDWR | O_CREAT | O_NOFOLLOW, 0600);
  if (!fd && fd.error().err == ENOENT) {
    const auto slash = path.rfind('/');
    // 0700: only root's reactors lease; nobody else learns which uids are in use.
    CELLOS_TRY(base::make_dirs(path.substr(0, slash == 0 ? 1 : slash), 0700));
    fd = base::open_at(AT_FDCWD, path, O_RDWR | O_CREAT | O_NOFOLLOW, 0600);
  }
  return fd;
}

// A random first cursor: concurrent `run`s each start their search elsewhere in the range
// instead of all contending for its first uids.
uint64_t random_start() {
  uint64_t r = 0;
  if (::getrandom(&r, sizeof r, GRND_NONBLOCK) != sizeof r) r = static_cast<uint64_t>(::getpid());
  return r;
}

int lock_byte(int fd, uid_t uid, short type) {
  struct flock fl{};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = static_cast<off_t>(uid);
  fl.l_len = 1;
  return ::fcntl(fd, F_OFD_SETLK, &fl);
}

}  // namespace

base::Result<UidLease> UidLease::acquire(UidRange range, const std::string& lease_file) {
  if (range.first == 0 || range.first > range.last)
    return base::value_error("uid lease", "empty or root uid range");
  static std::map<std::string, std::unique_ptr<File>> files;
  auto& f = files[lease_file];
  if (!f) {
    auto fd = open_lease_file(lease_file);
    if (!fd) {
      files.erase(lease_file);
      return std::move(fd).error();
    }
    f = std::make_unique<File>(File{std::move(*fd), lease_file, {}, random_start()});
  }
  const uint64_t n = uint64_t{range.last} - range.first + 1;
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t at = (f->cursor + i) % n;
    const auto uid = static_cast<uid_t>(range.first + at);
    if (f->held.count(uid)) continue;
    if (lock_byte(f->fd.get(), uid, F_WRLCK) != 0) {
      if (errno == EAGAIN || errno == EACCES) continue;  // another reactor's cell has it
      return base::sys_error("fcntl(F_OFD_SETLK)", "\"" + f->path + "\" byte " + std::to_string(uid));
    }
    f->held.insert(uid);
    f->cursor = at + 1;
    return UidLease(f.get(), uid);
  }
  return base::Error{EAGAIN, "fcntl(F_OFD_SETLK)", "\"" + f->path + "\"",
                     "no free uid in policy.uid_range " + std::to_string(range.first) + "-" +
                         std::to_string(range.last),
                     {}};
}

UidLease::UidLease(UidLease&& o) noexcept
    : file_(std::exchange(o.file_, nullptr)), uid_(o.uid_) {}

UidLease& UidLease::operator=(UidLease&& o) noexcept {
  if (this != &o) {
    release();
    file_ = std::exchange(o.file_, nullptr);
    uid_ = o.uid_;
  }
  return *this;
}

UidLease::~UidLease() { release(); }

void UidLease::release() {
  if (!file_) return;
  (void)lock_byte(file_->fd.get(), uid_, F_UNLCK);
  file_->held.erase(uid_);
  file_ = nullptr;
}

}  // namespace cellos::cells
