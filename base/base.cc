#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "base/fd.h"
#include "base/result.h"

namespace cellos::base {

std::string Error::message() const {
  std::string m = prefix;
  m += call;
  if (!object.empty()) {
    m += "(";
    m += object;
    m += ")";
  }
  if (err != 0 || !detail.empty()) m += ": ";
  if (!detail.empty()) m += detail;
  if (err != 0) {
    if (!detail.empty()) m += ": ";
    m += std::strerror(err);
  }
  return m;
}

Error Error::context(std::string_view what) && {
  Error e = std::move(*this);
  e.prefix = std::string(what) + ": " + e.prefix;
  return e;
}

Error sys_error(std::string call, std::string object, int err) {
  return Error{err, std::move(call), std::move(object), {}, {}};
}

Error value_error(std::string where, std::string detail) {
  return Error{0, std::move(where), {}, std::move(detail), {}};
}

void Fd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

Result<Pipe> make_pipe(int extra_flags) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | extra_flags) != 0) return sys_error("pipe2", "");
  return Pipe{Fd(fds[0]), Fd(fds[1])};
}

Result<Fd> open_at(int dirfd, const std::string& path, int flags, unsigned mode) {
  int fd = ::openat(dirfd, path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) return sys_error("open", "\"" + path + "\"");
  return Fd(fd);
}

Result<void> write_file_at(int dirfd, const std::string& path, std::string_view data) {
  auto fd = open_at(dirfd, path, O_WRONLY | O_TRUNC);
  if (!fd) return std::move(fd).error();
  ssize_t n = ::write(fd->get(), data.data(), data.size());
  if (n < 0) return sys_error("write", "\"" + path + "\"");
  if (static_cast<size_t>(n) != data.size())
    return Error{EIO, "write", "\"" + path + "\"", "short write", {}};
  return ok();
}

Result<void> replace_file(const std::string& path, std::string_view data, unsigned mode) {
  auto slash = path.rfind('/');
  // A dot name: spool and textfile-collector readers skip dot files, so they never pick up a
  // temp file half-written.
  std::string tmp = slash == std::string::npos
                        ? "." + path + ".tmp"
                        : path.substr(0, slash + 1) + "." + path.substr(slash + 1) + ".tmp";
  {
    auto fd = open_at(AT_FDCWD, tmp, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (!fd) return std::move(fd).error();
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::write(fd->get(), data.data() + done, data.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        auto e = sys_error("write", "\"" + tmp + "\"");
        ::unlink(tmp.c_str());
        return e;
      }
      done += static_cast<size_t>(n);
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    auto e = sys_error("rename", "\"" + tmp + "\" to \"" + path + "\"");
    ::unlink(tmp.c_str());
    return e;
  }
  return ok();
}

Result<void> make_dirs(const std::string& path, unsigned mode) {
  if (::mkdir(path.c_str(), mode) == 0 || errno == EEXIST) return ok();
  // An ancestor made (or found) a moment ago can be gone by the next step: another process
  // removing its empty parents (cgroup parents shared by the reactors of a host). Walk again.
  for (int attempt = 0;; ++attempt) {
    size_t pos = 0;
    bool vanished = false;
    while (pos != std::string::npos) {
      pos = path.find('/', pos + 1);
      std::string cur = path.substr(0, pos);
      if (::mkdir(cur.c_str(), mode) == 0 || errno == EEXIST) continue;
      if (errno == ENOENT && attempt < 8) {
        vanished = true;
        break;
      }
      return sys_error("mkdir", "\"" + cur + "\"");
    }
    if (!vanished) return ok();
  }
}

Result<std::string> read_fd(int fd, const std::string& what, size_t limit) {
  std::string out;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error("read", what);
    }
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > limit)
      return Error{EFBIG, "read", what, "larger than " + std::to_string(limit) + " bytes", {}};
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

Result<std::string> read_file_at(int dirfd, const std::string& path, size_t limit) {
  auto fd = open_at(dirfd, path, O_RDONLY);
  if (!fd) return std::move(fd).error();
  return read_fd(fd->get(), "\"" + path + "\"", limit);
}

Result<Fd> open_regular(int dirfd, const std::string& path) {
  auto fd = open_at(dirfd, path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  if (!fd) return std::move(fd).error();
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) return sys_error("fstat", "\"" + path + "\"");
  if (!S_ISREG(st.st_mode)) return Error{EINVAL, "open", "\"" + path + "\"", "not a regular file", {}};
  return fd;
}

Result<std::string> read_regular_file(const std::string& path, size_t limit) {
  auto fd = open_regular(AT_FDCWD, path);
  if (!fd) return std::move(fd).error();
  return read_fd(fd->get(), "\"" + path + "\"", limit);
}

}  // namespace cellos::base
