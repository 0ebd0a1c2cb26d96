// The cell's root is switched to its own tmpfs by moving it onto "/" and chrooting into it
// (cells/root_switch.h), which leaves the host's root in the cell's mount namespace, covered.
// These try every way a cell has to name a directory above its root: "..", /proc links, the
// mount table, and chroot(2) itself, and look for a file that exists only at the host's root.
#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>

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
      "/usr/sbin/chroot /tmp /bin/true 2>&1; echo chroot=$?";
  auto r = fleet.run(make_spec(unique_id("rootswitch"), {"/bin/sh", "-c", script}).dump());
  INFO(r.out << r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("visible") == std::string::npos);
  CHECK(r.out.find("/\nstill-cell-root\n") != std::string::npos);
  CHECK(r.out.find("still-cell-root\n1\n1\n/ tmpfs\n") != std::string::npos);
  // coreutils' chroot exits 125 when chroot(2) fails (127: not found, which proves nothing).
  CHECK(r.out.find("Operation not permitted\nchroot=125") != std::string::npos);
}
