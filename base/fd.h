// Fd: the one owner of a file descriptor. Move-only; closes on destruction.
//
// Every kernel object the reactor holds through a descriptor (pipe ends, pidfds, cgroup dirs,
// signalfd, the ring) is wrapped in an Fd or in a type built on it, so no raw int outlives the
// call that produced it.
#pragma once

#include <string>
#include <utility>

#include "base/result.h"

namespace cellos::base {

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~Fd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

struct Pipe {
  Fd read;
  Fd write;
};

// pipe2(O_CLOEXEC | extra_flags).
Result<Pipe> make_pipe(int extra_flags = 0);

// openat(dirfd, path, flags | O_CLOEXEC, mode), with the path in the error.
Result<Fd> open_at(int dirfd, const std::string& path, int flags, unsigned mode = 0);

// Write all of `data` to an fd opened on a small kernel file (cgroup knobs): one write(2),
// because cgroup files take a value per write and a short write is an error there.
Result<void> write_file_at(int dirfd, const std::string& path, std::string_view data);

// Replaces `path` whole: writes a sibling temp file, then renames it over the path, so a
// reader sees the old content or the new, never a part (status files, metrics, spool entries).
Result<void> replace_file(const std::string& path, std::string_view data, unsigned mode = 0644);

// mkdir -p: one syscall when the path exists already (the usual case), else each component.
Result<void> make_dirs(const std::string& path, unsigned mode = 0755);

// Read an open descriptor to EOF (at most `limit` bytes); `what` names it in errors.
Result<std::string> read_fd(int fd, const std::string& what, size_t limit = 1 << 20);

// Read a small file whole (cgroup knobs, /proc entries, spec files).
Result<std::string> read_file_at(int dirfd, const std::string& path, size_t limit = 1 << 20);

// Opens a file someone else may have planted (a key, a secret, fleet.toml, a spec): O_NOFOLLOW
// (a symlink as the last component is refused, not followed), O_NONBLOCK (a FIFO must not hang
// the opener in open(2), deaf to signals) and then fstat: anything but a regular file fails
// with EINVAL, "not a regular file". Regular files read as usual with the descriptor.
Result<Fd> open_regular(int dirfd, const std::string& path);

// open_regular, then the whole file (at most `limit` bytes, else EFBIG).
Result<std::string> read_regular_file(const std::string& path, size_t limit);

}  // namespace cellos::base
