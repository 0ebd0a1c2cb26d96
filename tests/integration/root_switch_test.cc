// The cell's root is switched to its own tmpfs by moving it onto "/" and chrooting into it
// (cells/root_switch.h), which leaves the host's root in the cell's mount namespace, covered.
// These try every way a cell has to name a directory above its root: "..", /proc links, the
// mount table, and chroot(2) itself, and look for a file that exists only at the host's root.
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>

#include "tests/support/test_support.h"

using namespace cellos::test;

namespace {

// A file at the top of the host's root directory, which no host path of a cell's view holds.
class RootMarker {
 public:
  RootMarker() : name_(unique_id("cellos-root-marker")), path_("/" + name_) {
    int fd = ::open(path_.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
    ok_ = fd >= 0;
    if (fd >= 0) ::close(fd);
  }
  ~RootMarker() { ::unlink(path_.c_str()); }
  RootMarker(const RootMarker&) = delete;
  RootMarker& operator=(const RootMarker&) = delete;
  bool ok() const { return ok_; }
  const std::string& name() const { return name_; }

 private:
  std::string name_, path_;
  bool ok_ = false;
};

}  // namespace

TEST_CASE("a cell cannot reach the host's root: not by '..', /proc links, the mount table or chroot",
          "[iso][fs][root]") {
  RootMarker marker;
  REQUIRE(marker.ok());
  Fleet fleet;
  const std::string m = marker.name();
  const std::string script =
      // Every spelling of a directory at or above the cell's root.
      "for d in / /.. /../.. /proc/1/root /proc/1/root/.. /proc/self/root/.. /proc/self/cwd/../..; do "
      "  test -e $d/" + m + " && echo visible $d; done; "
      // cd .. from the root, as far as it goes: still the cell's root (it holds tmp, proc, ...).
      "cd / && cd .. && cd .. && pwd -P && ls -a | grep -qx proc && echo still-cell-root; "
      // The same directory by device and inode.
      "stat -L -c %d:%i / /.. /../.. /proc/self/root /proc/self/root/.. | sort -u | wc -l; "
      // The mount table: one mount at "/", the cell's tmpfs; the host's root is not listed.
      "cut -d' ' -f5,9 /proc/self/mountinfo | grep -c '^/ '; "
      "cut -d' ' -f5,9 /proc/self/mountinfo | grep '^/ '; "
      // chroot(2) (the step that would leave a working directory outside the root) is refused.
      // (/proc/1/root is the init's, which the command may not follow: it is in the loop above
      // all the same.)
      "/usr/sbin/chroot /tmp /bin/true 2>&1; echo chroot=$?; "
      // The directory the host's mounts were gathered in to be detached at once is gone.
      "ls -a / | grep -q cellos-detach && echo detach-holder-left; true";
  auto r = fleet.run(make_spec(unique_id("rootswitch"), {"/bin/sh", "-c", script}).dump());
  INFO(r.out << r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("visible") == std::string::npos);
  CHECK(r.out.find("/\nstill-cell-root\n") != std::string::npos);
  CHECK(r.out.find("still-cell-root\n1\n1\n/ tmpfs\n") != std::string::npos);
  // coreutils' chroot exits 125 when chroot(2) fails (127: not found, which proves nothing).
  CHECK(r.out.find("Operation not permitted\nchroot=125") != std::string::npos);
  CHECK(r.out.find("detach-holder-left") == std::string::npos);
}

TEST_CASE("a cell's mount namespace keeps none of the host's mounts under its covered root",
          "[iso][fs][root]") {
  // listmount(2) of the cell's mount namespace from the host (root here) lists every mount in
  // it, the covered ones too; /proc/<pid>/mountinfo only those under the cell's root. Before
  // the cell's root covered the host's, the host's /proc, /sys, /dev, /run, ... were detached:
  // what is left beyond the cell's own is the host's root file system (and the host's /tmp
  // mount, if it has one: the cell's root was built on it).
  Fleet fleet;
  const std::string marker = unique_id("cellos-ns-sleeper");
  const pid_t run = fleet.start_run(
      make_spec(unique_id("rootns"), {"/bin/sh", "-c", "sleep 600; : " + marker}).dump());
  pid_t cell = -1;
  for (int i = 0; i < 1000 && cell < 0; ++i) {
    for (int pid : processes_with(marker))
      if (read_text("/proc/" + std::to_string(pid) + "/cmdline").rfind("/bin/sh", 0) == 0) cell = pid;
    if (cell < 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  long visible = 0;
  long children = -2;
  int err = 0;
  std::string seen;
  if (cell > 0) {
    const std::string table = read_text("/proc/" + std::to_string(cell) + "/mountinfo");
    for (char c : table) visible += c == '\n';
    int ns = ::open(("/proc/" + std::to_string(cell) + "/ns/mnt").c_str(), O_RDONLY | O_CLOEXEC);
    struct {
      uint32_t size, mnt_ns_fd;
      uint64_t mnt_id, param;
    } req{24, static_cast<uint32_t>(ns), ~0ull /* LSMT_ROOT */, 0};
    uint64_t ids[512];
    children = ns < 0 ? -1 : ::syscall(458 /* listmount */, &req, ids, 512, 0);
    err = errno;
    // Their mount points and types (statmount, STATMOUNT_MNT_POINT | STATMOUNT_FS_TYPE), for
    // the failure message.
    for (long i = 0; i < children; ++i) {
      struct {
        uint32_t size, mnt_ns_fd;
        uint64_t mnt_id, param;
      } one{24, static_cast<uint32_t>(ns), ids[i], 0x10 | 0x20};
      alignas(8) char buf[8192] = {};
      if (::syscall(457 /* statmount */, &one, buf, sizeof buf, 0) != 0) continue;
      uint32_t type = 0, point = 0;
      std::memcpy(&type, buf + 36, 4);
      std::memcpy(&point, buf + 108, 4);
      if (512 + point < sizeof buf && 512 + type < sizeof buf)
        seen += std::string(buf + 512 + point) + " (" + std::string(buf + 512 + type) + ")\n";
    }
    if (ns >= 0) ::close(ns);
  }
  ::kill(run, SIGTERM);
  int st = 0;
  ::waitpid(run, &st, 0);
  REQUIRE(cell > 0);
  if (children < 0 && (err == ENOSYS || err == EINVAL)) {
    WARN("SKIPPED: listmount of another mount namespace is not supported here (" << err << ")");
    return;
  }
  INFO("errno " << err << "; below the namespace's root:\n" << seen);
  long host_tmp = 0;
  {
    const std::string host = read_text("/proc/self/mountinfo");
    for (size_t at = 0; at < host.size(); at = host.find('\n', at) + 1) {
      // The fifth field is the mount point.
      size_t f = at;
      for (int i = 0; i < 4 && f != std::string::npos; ++i) f = host.find(' ', f) + 1;
      if (host.compare(f, 5, "/tmp ") == 0) ++host_tmp;
      if (host.find('\n', at) == std::string::npos) break;
    }
  }
  REQUIRE(visible > 5);
  CHECK(children == visible + 1 + host_tmp);
}
