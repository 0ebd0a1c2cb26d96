#include "cells/child_setup.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "cells/cgroup_view.h"
#include "cells/child_setup_internal.h"
#include "cells/root_switch.h"
#include "netns/loopback.h"

namespace cellos::cells {
namespace child {

// Where the setup builds the cell's root before switching to it: a directory that exists on
// every Linux host. No host path under /tmp is ever in the view (root_view.h), so covering the
// host's /tmp while the view is built hides nothing the view needs.
constexpr const char* kStagingDir = "/tmp";


// Appends `text` to `out` (at `at`), never past the record's field: no allocation in the child.
size_t put(char (&out)[sizeof ChildStatus{}.what], size_t at, const char* text) {
  while (text && *text && at + 1 < sizeof out) out[at++] = *text++;
  out[at] = '\0';
  return at;
}

[[noreturn]] void report_and_exit(int32_t kind, int32_t stage, int err, const char* call = nullptr,
                                  const char* object = nullptr) {
  ChildStatus s;
  s.kind = kind;
  s.stage = stage;
  s.err = err;
  size_t at = put(s.what, 0, call);
  if (call && object) at = put(s.what, put(s.what, at, " "), object);
  ssize_t n = ::write(kStatusFd, &s, sizeof s);
  (void)n;  // nothing more to do if the parent is gone
  _exit(kind == ChildStatus::kExecFailed ? (err == ENOENT ? 127 : 126) : 125);
}

// A setup step failed: its stage, errno, and (where it is known) the call and its object, so the
// error reads "mount tmpfs on /work: Operation not permitted".
[[noreturn]] void fail(int32_t stage, const char* call, const char* object) {
  report_and_exit(ChildStatus::kSetupFailed, stage, errno, call, object);
}

// Moves the plan's descriptors to 0..4, then closes everything else the reactor had
// open (other cells' pipes, the ring, the event log): a cell inherits nothing but its own.
void place_fds(const ChildPlan& p) {
  // The held workspace and /tmp, when there are (both or neither), go to kWorkspaceFd and
  // kTmpFd (close-on-exec like 4).
  const int n = p.workspace_mount_fd >= 0 ? kTmpFd + 1 : kInitFd + 1;
  int src[kTmpFd + 1];
  src[0] = p.stdin_fd;
  src[1] = p.stdout_fd;
  src[2] = p.stderr_fd;
  src[kStatusFd] = p.status_fd;
  src[kInitFd] = p.init_fd;
  src[kWorkspaceFd] = p.workspace_mount_fd;
  src[kTmpFd] = p.tmp_mount_fd;
  // Lift every source above the target range first, so no dup2 below clobbers a source.
  for (int i = 0; i < n; ++i) {
    src[i] = ::fcntl(src[i], F_DUPFD_CLOEXEC, 64);
    if (src[i] < 0) _exit(125);  // no status pipe yet to report through
  }
  for (int i = 0; i < n; ++i)
    if (::dup2(src[i], i) < 0) _exit(125);
  // Only 0-3 cross into the init; execveat still reaches the init binary through fd 4.
  for (int i = kInitFd; i < n; ++i) ::fcntl(i, F_SETFD, FD_CLOEXEC);
  // A prepared view's parked leaf clones (kPreparedViewFd...) stay until make_sys binds them.
  if (p.view_prepared) {
    if (::close_range(static_cast<unsigned>(n), kPreparedViewFd - 1, 0) != 0 ||
        ::close_range(kPreparedViewFd + kPreparedViewFds, ~0U, 0) != 0)
      fail(kStageFds, "close_range");
    return;
  }
  // The sysfs template (kSysTemplateFd, above n) stays until make_sys has cloned it.
  const bool keep = p.sys_template_fd == kSysTemplateFd;
  if (keep && n < kSysTemplateFd && ::close_range(static_cast<unsigned>(n), kSysTemplateFd - 1, 0) != 0)
    fail(kStageFds, "close_range");
  if (::close_range(keep ? kSysTemplateFd + 1 : static_cast<unsigned>(n), ~0U, 0) != 0) fail(kStageFds, "close_range");
}

// Scripts reopen their output through /dev/stdout (/proc/self/fd/1), which checks the pipe
// inode's owner and mode: give the cell's uid the pipes it writes to.
void own_stdio(const ChildPlan& p) {
  if (::fchown(1, p.uid, p.gid) != 0 || ::fchown(2, p.uid, p.gid) != 0) fail(kStageFds, "fchown", "stdout/stderr");
}

bool write_all(const char* path, const char* value) {
  int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  size_t len = std::strlen(value);
  bool ok = ::write(fd, value, len) == static_cast<ssize_t>(len);
  int saved = errno;
  ::close(fd);
  errno = saved;
  return ok;
}

int set_mount_attr(const char* path, unsigned flags, uint64_t set) {
  mount_attr attr{};
  attr.attr_set = set;
  return static_cast<int>(::syscall(SYS_mount_setattr, AT_FDCWD, path, flags, &attr, sizeof attr));
}

// Binds the directory `path` onto itself: a mount of its own over the same directory of the
// same file system, whose attributes then differ from its parent's (the root tmpfs becomes
// read-only; /tmp, the workspace and /dev stay writable). Every tmpfs superblock costs each new
// memory cgroup on the host a slot of shrinker info (alloc_shrinker_info, sized by the live
// superblocks), so a cell's writable places share its root's one tmpfs instead of a tmpfs each.
bool bind_self(const char* path, uint64_t set = 0, uint64_t clear = 0) {
  if (::mount(path, path, nullptr, MS_BIND, nullptr) != 0) return false;
  if (set == 0 && clear == 0) return true;
  mount_attr attr{};
  attr.attr_set = set;
  attr.attr_clr = clear;
  return ::syscall(SYS_mount_setattr, AT_FDCWD, path, 0, &attr, sizeof attr) == 0;
}

// Clones `name` under `from` (with its submounts) onto the same name under `to`, which lives on
// a fresh tmpfs: the host's entry becomes visible there, read-only, nosuid and nodev (set on the
// detached clone, before anything can reach it). A symlink is copied as a symlink: its target
// resolves in the cell's view, where it exists only if the view holds it.
int graft_entry(int from, int to, const char* name) {
  struct stat st{};
  if (::fstatat(from, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return errno;
  if (S_ISLNK(st.st_mode)) {
    char target[4096];
    ssize_t n = ::readlinkat(from, name, target, sizeof target - 1);
    if (n < 0) return errno;
    target[n] = '\0';
    return ::symlinkat(target, to, name) == 0 ? 0 : errno;
  }
  // Sockets and fifos (and device nodes, useless under nodev) are left out: a bind of a
  // listening socket's inode is a way to connect to it.
  if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) return 0;
  if (S_ISDIR(st.st_mode)) {
    if (::mkdirat(to, name, 0755) != 0) return errno;
  } else {
    int fd = ::openat(to, name, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0) return errno;
    ::close(fd);
  }
  int tree = static_cast<int>(::syscall(SYS_open_tree, from, name,
                                        OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE));
  if (tree < 0) return errno;
  mount_attr attr{};
  attr.attr_set = kHostMountAttrs;
  if (::syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) != 0) {
    int err = errno;
    ::close(tree);
    return err;
  }
  int rc = static_cast<int>(
      ::syscall(SYS_move_mount, tree, "", to, name, MOVE_MOUNT_F_EMPTY_PATH));
  int err = rc == 0 ? 0 : errno;
  ::close(tree);
  return err;
}

// Fills the tmpfs at `to` with the entries of the directory `from` (an fd opened before the
// tmpfs covered it). getdents64 rather than readdir: no allocation in the child.
void graft_dir(int from, int to) {
  int lister = ::openat(from, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (lister < 0) fail(kStageWorkspaceParent, "open", "the workspace's parent");
  alignas(8) char buf[16384];
  for (;;) {
    long n = ::syscall(SYS_getdents64, lister, buf, sizeof buf);
    if (n < 0) fail(kStageWorkspaceParent, "getdents64", "the workspace's parent");
    if (n == 0) break;
    for (long off = 0; off < n;) {
      struct Dirent64 {
        uint64_t ino;
        int64_t off;
        unsigned short reclen;
        unsigned char type;
        char name[1];
      };
      auto* e = reinterpret_cast<Dirent64*>(buf + off);
      off += e->reclen;
      const char* name = e->name;
      if (!std::strcmp(name, ".") || !std::strcmp(name, "..")) continue;
      if (int err = graft_entry(from, to, name); err != 0) {
        errno = err;
        fail(kStageWorkspaceParent, "graft", name);
      }
    }
  }
  ::close(lister);
}


// mkdir -p of the absolute, normalised `path` below the directory `root` (AT_FDCWD: below
// "/"); with `last` false, of its parent only. 0 or an errno.
int make_dirs_at(int root, const char* path, bool last) {
  PathBuf b;
  size_t len = std::strlen(path);
  if (len >= sizeof b.s) return ENAMETOOLONG;
  std::memcpy(b.s, path, len + 1);
  // Relative to `root`: skip the leading '/'.
  for (size_t i = 2; i <= len; ++i) {
    if (b.s[i] != '/' && b.s[i] != '\0') continue;
    if (b.s[i] == '\0' && !last) break;
    char saved = b.s[i];
    b.s[i] = '\0';
    if (::mkdirat(root, b.s + 1, 0755) != 0 && errno != EEXIST) return errno;
    b.s[i] = saved;
  }
  return 0;
}

void make_path(const char* path) {
  if (int err = make_dirs_at(AT_FDCWD, path, true); err != 0) {
    errno = err;
    fail(kStageWorkspaceParent, "mkdir -p", path);
  }
}

void deepest_existing_ancestor(const char* path, PathBuf& out) {
  size_t len = std::strlen(path);
  if (len >= sizeof out.s) fail(kStageWorkspaceParent, "path too long:", path);
  std::memcpy(out.s, path, len + 1);
  struct stat st{};
  for (;;) {
    char* slash = std::strrchr(out.s, '/');
    if (slash == out.s) {
      out.s[1] = '\0';
      return;
    }
    *slash = '\0';
    if (::stat(out.s, &st) == 0) return;
  }
}

// The workspace path lies inside a read-only host path of the view, where its directory cannot
// be made: a tmpfs is laid over its deepest existing ancestor, that ancestor's entries are
// grafted back onto it, and the missing directories are made there. The host never sees a
// write, and the cell sees the view as before plus its workspace.
void make_workspace_parent(const char* workdir) {
  PathBuf anchor;
  deepest_existing_ancestor(workdir, anchor);
  int from = ::open(anchor.s, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (from < 0) fail(kStageWorkspaceParent, "open", anchor.s);
  if (::mount("tmpfs", anchor.s, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") != 0)
    fail(kStageWorkspaceParent, "mount tmpfs on", anchor.s);
  int to = ::open(anchor.s, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (to < 0) fail(kStageWorkspaceParent, "open", anchor.s);
  graft_dir(from, to);
  ::close(from);
  ::close(to);
  make_path(workdir);
  if (set_mount_attr(anchor.s, 0, MOUNT_ATTR_RDONLY) != 0) fail(kStageWorkspaceParent, "mount_setattr read-only", anchor.s);
}

// "mode=0755,uid=N,gid=N" without snprintf, which may allocate.
void tmpfs_owner_opts(char* out, uid_t uid, gid_t gid) {
  auto put_num = [&](unsigned v) {
    char digits[12];
    int n = 0;
    do digits[n++] = static_cast<char>('0' + v % 10), v /= 10;
    while (v != 0);
    while (n > 0) *out++ = digits[--n];
  };
  for (const char* c = "mode=0755,uid="; *c;) *out++ = *c++;
  put_num(uid);
  for (const char* c = ",gid="; *c;) *out++ = *c++;
  put_num(gid);
  *out = '\0';
}

struct DevNode {
  const char* path;
  unsigned minor;
};
constexpr DevNode kDevNodes[] = {{"/dev/null", 3},   {"/dev/zero", 5},   {"/dev/full", 7},
                                 {"/dev/random", 8}, {"/dev/urandom", 9}};
constexpr int kNumDevNodes = sizeof kDevNodes / sizeof kDevNodes[0];

// Rootless: the host's nodes, cloned while the host's /dev is still reachable.
void open_dev_trees(const ChildPlan& p, int (&trees)[kNumDevNodes]) {
  for (int i = 0; i < kNumDevNodes; ++i) {
    trees[i] = -1;
    if (!p.rootless) continue;
    trees[i] = static_cast<int>(::syscall(SYS_open_tree, AT_FDCWD, kDevNodes[i].path,
                                          OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
    if (trees[i] < 0) fail(kStageDev, "open_tree", kDevNodes[i].path);
  }
}

void make_dev(const int (&trees)[kNumDevNodes]) {
  // mknod honours the umask, and the nodes must be 0666 for the unprivileged command.
  ::umask(0);
  // The root tmpfs's own /dev, bound onto itself (one superblock per cell: see make_mounts),
  // with device nodes allowed on this mount only. Rootless, the nodes are the host's, each a
  // bind mount of its own (a user namespace's root cannot mknod), and nodev stays as it is.
  if (!bind_self("/dev", MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, trees[0] < 0 ? MOUNT_ATTR_NODEV : 0))
    fail(kStageDev, "bind the root's /dev onto", "/dev");
  for (int i = 0; i < kNumDevNodes; ++i) {
    const DevNode& n = kDevNodes[i];
    if (trees[i] < 0) {
      if (::mknod(n.path, S_IFCHR | 0666, makedev(1, n.minor)) != 0) fail(kStageDev, "mknod", n.path);
      continue;
    }
    int f = ::open(n.path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0666);
    if (f < 0) fail(kStageDev, "create", n.path);
    ::close(f);
    if (::syscall(SYS_move_mount, trees[i], "", AT_FDCWD, n.path, MOVE_MOUNT_F_EMPTY_PATH) != 0)
      fail(kStageDev, "bind the host's node at", n.path);
    ::close(trees[i]);
  }
  static constexpr const char* kLinks[][2] = {{"/proc/self/fd", "/dev/fd"},
                                              {"/proc/self/fd/0", "/dev/stdin"},
                                              {"/proc/self/fd/1", "/dev/stdout"},
                                              {"/proc/self/fd/2", "/dev/stderr"}};
  for (const auto& l : kLinks)
    if (::symlink(l[0], l[1]) != 0) fail(kStageDev, "symlink", l[1]);
  // Device nodes stay writable on a read-only mount; nothing else in /dev should be.
  if (set_mount_attr("/dev", 0, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC) != 0)
    fail(kStageDev, "mount_setattr read-only", "/dev");
}

// Binds each host path of the view into the staging tmpfs `root` (the host still at "/"). A
// path absent on this host (/lib32, /libx32, ...) is left out.
void graft_host_paths(const ChildPlan& p, int root) {
  for (int i = 0; i < p.n_host_paths; ++i) {
    const char* path = p.host_paths[i];
    PathBuf parent;
    size_t len = std::strlen(path);
    if (len >= sizeof parent.s || path[0] != '/' || len < 2) {
      errno = EINVAL;
      fail(kStageRootView, "host path", path);
    }
    std::memcpy(parent.s, path, len + 1);
    char* slash = std::strrchr(parent.s, '/');
    const char* name = path + (slash - parent.s) + 1;
    *slash = '\0';
    int from = ::open(slash == parent.s ? "/" : parent.s, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (from < 0) {
      if (errno == ENOENT || errno == ENOTDIR) continue;
      fail(kStageRootView, "open", parent.s);
    }
    if (int err = make_dirs_at(root, path, false); err != 0) {
      errno = err;
      fail(kStageRootView, "mkdir -p in the root view:", path);
    }
    int to = slash == parent.s ? root : ::openat(root, parent.s + 1, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (to < 0) fail(kStageRootView, "open in the root view:", path);
    int err = graft_entry(from, to, name);
    ::close(from);
    if (to != root) ::close(to);
    if (err == ENOENT) continue;
    if (err != 0) {
      errno = err;
      fail(kStageRootView, "bind read-only", path);
    }
  }
}

// The cell's root: a fresh tmpfs holding the allowed host paths, then made the root
// (root_switch.h), so no path, file descriptor or mount of the cell leads back to a host file
// outside the view.
// The broker's host directory, cloned (with its socket) onto /run/cellos of the root being
// built: read-only, which still lets connect(2) reach the socket, and nothing else of the
// host's state dir. `tree` is the clone, taken before the staging tmpfs could cover the path.
void graft_broker(int tree, int root) {
  mount_attr attr{};
  attr.attr_set = kHostMountAttrs | MOUNT_ATTR_NOEXEC;
  if (::syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof attr) != 0)
    fail(kStageRootView, "mount_setattr read-only", "the secret broker");
  if (int err = make_dirs_at(root, "/run/cellos", true); err != 0) {
    errno = err;
    fail(kStageRootView, "mkdir -p in the root view:", "/run/cellos");
  }
  if (::syscall(SYS_move_mount, tree, "", root, "run/cellos", MOVE_MOUNT_F_EMPTY_PATH) != 0)
    fail(kStageRootView, "bind the secret broker at", "/run/cellos");
  ::close(tree);
}

void make_root(const ChildPlan& p) {
  // Below kStagingDir ("/tmp"), the new root before the pivot.
  static constexpr const char* kStagingProc = "/tmp/proc";
  static constexpr const char* kStagingSys = "/tmp/sys";
  int broker = -1;
  if (p.broker_dir) {
    broker = static_cast<int>(
        ::syscall(SYS_open_tree, AT_FDCWD, p.broker_dir, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
    if (broker < 0) fail(kStageRootView, "open_tree", p.broker_dir);
  }
  // No size of its own: /tmp and the workspace live on it too (make_mounts), and every page of
  // it is charged to the cell's memory cgroup, whose limit is the cap.
  if (::mount("tmpfs", kStagingDir, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") != 0)
    fail(kStageRootView, "mount tmpfs (the new root) on", kStagingDir);
  int root = ::open(kStagingDir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) fail(kStageRootView, "open", kStagingDir);
  graft_host_paths(p, root);
  if (broker >= 0) graft_broker(broker, root);
  static constexpr const char* kOwn[] = {"tmp", "dev", "proc", "sys"};
  for (const char* own : kOwn)
    if (::mkdirat(root, own, 0755) != 0 && errno != EEXIST) fail(kStageRootView, "mkdir in the root view:", own);
  ::close(root);
  if (p.rootless) {
    if (::mount("proc", kStagingProc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
      fail(kStageProc, "mount proc on", "/proc");
    if (::mount("sysfs", kStagingSys, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
      fail(kStageSys, "mount sysfs on", "/sys");
  }
  // The new root moved onto "/" and chrooted into (root_switch.h: no walk over every task on
  // the host, which pivot_root makes); a nested cell, which may chroot, gets pivot_root.
  if (int err = p.nested ? pivot_root_to(kStagingDir) : switch_root_to(kStagingDir); err != 0) {
    errno = err;
    fail(kStageRootView, "switch the root to", kStagingDir);
  }
}

// The reactor's own files inside an allowed host path: an empty tmpfs nobody may enter over a
// directory, /dev/null over a file, both read-only.
void mask_paths(const ChildPlan& p) {
  for (int i = 0; i < p.n_masked_paths; ++i) {
    const char* path = p.masked_paths[i];
    struct stat st{};
    if (::stat(path, &st) != 0) {
      if (errno == ENOENT || errno == ENOTDIR) continue;
      fail(kStageRootView, "stat", path);
    }
    int rc = S_ISDIR(st.st_mode)
                 ? ::mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                           "mode=0,size=4k")
                 : ::mount("/dev/null", path, nullptr, MS_BIND, nullptr);
    if (rc != 0 || set_mount_attr(path, 0, kHostMountAttrs | MOUNT_ATTR_NOEXEC) != 0)
      fail(kStageRootView, "mask", path);
  }
}

// spec.inputs, part one, while the host's root is still there: each host path opened with no
// symlink followed (admission checked the same; this closes the window since), and cloned as
// a detached mount tree, read-only, nosuid and nodev before anything can reach it.
struct InputTrees {
  int fd[kMaxPlanInputs];
  bool dir[kMaxPlanInputs];
};

void open_inputs(const ChildPlan& p, InputTrees& t) {
  if (p.n_inputs > kMaxPlanInputs) {
    errno = E2BIG;
    fail(kStageInputs, "too many inputs");
  }
  for (int i = 0; i < p.n_inputs; ++i) {
    open_how how{};
    how.flags = O_PATH | O_CLOEXEC;
    how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    int fd = static_cast<int>(::syscall(SYS_openat2, AT_FDCWD, p.input_host_paths[i], &how, sizeof how));
    if (fd < 0) fail(kStageInputs, "openat2 (no symlinks)", p.input_host_paths[i]);
    struct stat st{};
    if (::fstat(fd, &st) != 0) fail(kStageInputs, "fstat", p.input_host_paths[i]);
    t.dir[i] = S_ISDIR(st.st_mode);
    if (!t.dir[i] && !S_ISREG(st.st_mode)) {
      errno = EINVAL;
      fail(kStageInputs, "not a file or directory:", p.input_host_paths[i]);
    }
    int tree = static_cast<int>(::syscall(SYS_open_tree, fd, "",
                                          OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE));
    if (tree < 0) fail(kStageInputs, "open_tree", p.input_host_paths[i]);
    ::close(fd);
    mount_attr attr{};
    attr.attr_set = kHostMountAttrs;
    if (::syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) != 0)
      fail(kStageInputs, "mount_setattr read-only", p.input_host_paths[i]);
    t.fd[i] = tree;
  }
}

// Part two, once the view's own tmpfs (root, /tmp, workspace) are in place: each tree at its
// cell path, whose directories (or, for a file, an empty placeholder) are made first.
void attach_inputs(const ChildPlan& p, const InputTrees& t) {
  for (int i = 0; i < p.n_inputs; ++i) {
    const char* path = p.input_paths[i];
    if (int err = make_dirs_at(AT_FDCWD, path, t.dir[i]); err != 0) {
      errno = err;
      fail(kStageInputs, "mkdir -p", path);
    }
    if (!t.dir[i]) {
      int fd = ::open(path, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
      if (fd < 0) fail(kStageInputs, "create", path);
      ::close(fd);
    }
    if (::syscall(SYS_move_mount, t.fd[i], "", AT_FDCWD, path, MOVE_MOUNT_F_EMPTY_PATH) != 0)
      fail(kStageInputs, "bind read-only on", path);
    ::close(t.fd[i]);
  }
}

// The cell's own /etc/resolv.conf (its DNS proxy): a detached clone of the host file's mount
// taken while the host is still "/" (a plain bind from a mount outside the namespace is
// refused once the host's root is gone), made read-only, and moved over the view's file.
int clone_resolv_conf(const char* path) {
  int tree = static_cast<int>(::syscall(SYS_open_tree, AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
  if (tree < 0) fail(kStageRootView, "open_tree", path);
  mount_attr attr{};
  attr.attr_set = kHostMountAttrs | MOUNT_ATTR_NOEXEC;
  if (::syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof attr) != 0)
    fail(kStageRootView, "mount_setattr read-only", path);
  return tree;
}

void bind_resolv_conf(int tree) {
  if (::syscall(SYS_move_mount, tree, "", AT_FDCWD, "/etc/resolv.conf", MOVE_MOUNT_F_EMPTY_PATH) != 0)
    fail(kStageRootView, "bind the cell's resolv.conf over", "/etc/resolv.conf");
  ::close(tree);
}

// The parked clone in slot `i` of a prepared view, or -1 (its slot holds /dev/null).
int parked_fd(const ChildPlan& p, int i) {
  return (p.view_parked & (1u << i)) ? kPreparedViewFd + i : -1;
}

void make_mounts(const ChildPlan& p, int cgroup2_leaf) {
  InputTrees inputs;
  int resolv = -1;
  V1Trees v1;
  int dev_trees[kNumDevNodes];
  if (p.view_prepared) {
    // Made at the preparation (prepare_cell_view): private, leaf clones parked, root built and
    // switched to. A prepared cell serves no spec with inputs, a resolv.conf or a broker (the
    // pool sends those cold): they are opened from the host's root, which is gone here.
    if (p.n_inputs > 0 || p.resolv_conf || p.broker_dir) {
      errno = EINVAL;
      fail(kStageRootView, "a prepared view has no host root for", "spec.inputs, resolv.conf or the broker");
    }
    for (int i = 0; i < kMaxV1Trees; ++i)
      v1.fd[i] = parked_fd(p, 1 + i);
    open_dev_trees(p, dev_trees);
  } else {
    // Private first: nothing mounted below may propagate back to the host.
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) fail(kStageMountPrivate, "mount --make-rprivate", "/");
    open_inputs(p, inputs);
    resolv = p.resolv_conf ? clone_resolv_conf(p.resolv_conf) : -1;
    open_v1_trees(p, v1);
    open_dev_trees(p, dev_trees);
    make_root(p);
  }

  const char* workdir = p.workdir;
  if (p.workspace_mount_fd >= 0) {
    if (::syscall(SYS_move_mount, kTmpFd, "", AT_FDCWD, "/tmp", MOVE_MOUNT_F_EMPTY_PATH) != 0)
      fail(kStageTmp, "move the held tmpfs onto", "/tmp");
    ::close(kTmpFd);
  } else if (::chmod("/tmp", 01777) != 0 || !bind_self("/tmp")) {
    // The root tmpfs's empty /tmp (make_root), a mount of its own that stays writable.
    fail(kStageTmp, "bind the root's /tmp onto", "/tmp");
  }
  // On the cell's root tmpfs or its own /tmp, the directories are simply made; inside a
  // read-only host path of the view they need a tmpfs of their own. A workspace made here
  // (absent until now, so empty) is the root tmpfs's own directory, bound onto itself below;
  // one that existed (a path of the view, or a directory made for it) gets a fresh tmpfs.
  struct stat before{};
  const bool fresh_dir = ::stat(workdir, &before) != 0 && errno == ENOENT;
  int made = make_dirs_at(AT_FDCWD, workdir, true);
  if (made == EROFS) make_workspace_parent(workdir);
  else if (made != 0) {
    errno = made;
    fail(kStageWorkspaceParent, "mkdir -p", workdir);
  }
  const bool on_root_tmpfs = fresh_dir && made == 0;

  char opts[64];
  tmpfs_owner_opts(opts, p.uid, p.gid);
  if (p.workspace_mount_fd >= 0) {
    if (::syscall(SYS_move_mount, kWorkspaceFd, "", AT_FDCWD, workdir, MOVE_MOUNT_F_EMPTY_PATH) != 0)
      fail(kStageWorkspace, "move the held workspace onto", workdir);
    ::close(kWorkspaceFd);
  } else if (on_root_tmpfs) {
    if (::chown(workdir, p.uid, p.gid) != 0 || ::chmod(workdir, 0755) != 0 || !bind_self(workdir))
      fail(kStageWorkspace, "bind the root's directory onto", workdir);
  } else if (::mount("tmpfs", workdir, "tmpfs", MS_NOSUID | MS_NODEV, opts) != 0) {
    fail(kStageWorkspace, "mount tmpfs on", workdir);
  }
  attach_inputs(p, inputs);
  if (p.nested) attach_nested_trees();

  // A prepared view has its /dev already (prepare_cell_view); umask as make_dev leaves it.
  if (p.view_prepared) ::umask(0);
  else make_dev(dev_trees);
  // /sys before /proc: on a hybrid host its cgroup directory is made under /proc of the root
  // tmpfs, hidden there once procfs covers it (rootless, procfs is there already: make_sys
  // gives /sys/fs/cgroup a small tmpfs of its own instead).
  if (p.n_v1_procs_paths > 0 && !p.rootless && ::mkdir(kCgroupStaging, 0755) != 0)
    fail(kStageSys, "mkdir", kCgroupStaging);
  make_sys(p, v1, cgroup2_leaf);
  // The cell's own /proc: it shows only the processes of the cell's pid namespace.
  if (!p.rootless && ::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
    fail(kStageProc, "mount proc on", "/proc");
  mask_paths(p);  // after /dev, whose null it binds
  if (resolv >= 0) bind_resolv_conf(resolv);
  // Every mountpoint exists now: the root tmpfs itself becomes read-only.
  if (set_mount_attr("/", 0, kHostMountAttrs) != 0) fail(kStageMountReadonly, "mount_setattr read-only", "/");
}

// Moves each of `fds` (-1: none) to kPreparedViewFd + its index, close-on-exec, through
// descriptors above the slots so that no move clobbers another source; an empty slot gets
// /dev/null (fd 0). Returns which slots hold one of `fds`.
uint32_t park_view_fds(int (&fds)[kPreparedViewFds]) {
  for (int& fd : fds) {
    if (fd < 0) continue;
    const int lifted = ::fcntl(fd, F_DUPFD_CLOEXEC, 64);
    if (lifted < 0) fail(kStageFds, "fcntl F_DUPFD_CLOEXEC");
    ::close(fd);
    fd = lifted;
  }
  uint32_t parked = 0;
  for (int i = 0; i < kPreparedViewFds; ++i) {
    if (::dup3(fds[i] < 0 ? 0 : fds[i], kPreparedViewFd + i, O_CLOEXEC) < 0) fail(kStageFds, "dup3");
    if (fds[i] < 0) continue;
    ::close(fds[i]);
    parked |= 1u << i;
  }
  return parked;
}

}  // namespace child
using namespace child;

uint32_t prepare_cell_view(const ChildPlan& prep) {
  static_assert(kPreparedViewFds == 1 + kMaxV1Trees, "one slot for cgroup2, one per v1 tree");
  // fail() reports on kStatusFd, which the preparation has no pipe for: /dev/null (fd 0) takes
  // the number, so no descriptor opened below lands there and gets the record.
  if (::dup3(0, kStatusFd, O_CLOEXEC) < 0) _exit(125);
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
    fail(kStageMountPrivate, "mount --make-rprivate", "/");
  // As cell_setup_main does for a cold cell: the cgroup2 leaf cloned while /proc/self/cgroup
  // still names the host's path, then the namespace rooted at the leaves the process is in.
  int parked[kPreparedViewFds];
  parked[0] = prep.rootless ? -1 : open_cgroup2_leaf();
  if (::unshare(CLONE_NEWCGROUP) != 0) fail(kStageCgroupNs, "unshare", "CLONE_NEWCGROUP");
  V1Trees v1;
  open_v1_trees(prep, v1);
  for (int i = 0; i < kMaxV1Trees; ++i) parked[1 + i] = v1.fd[i];
  make_root(prep);
  // /dev depends on no spec (for a root daemon: its nodes are made here, not bound from the
  // host); the umask make_dev sets is restored, and set again at the bind where a cold cell's
  // setup would have set it.
  int dev_trees[kNumDevNodes];
  open_dev_trees(prep, dev_trees);
  const mode_t umask_before = ::umask(0);
  make_dev(dev_trees);
  ::umask(umask_before);
  // The loopback of the namespace the process was cloned with; a spec with egress rules brings
  // its own namespace (joined at the bind, whose loopback is brought up then).
  if (int err = netns::bring_up_loopback(); err != 0) {
    errno = err;
    fail(kStageLoopback, "bring up", "lo");
  }
  const uint32_t held = park_view_fds(parked);
  ::close(kStatusFd);
  return held;
}

const char* child_stage_name(int32_t stage) {
  switch (stage) {
    case kStageCgroupV1: return "join the v1 cgroups";
    case kStageFds: return "close inherited descriptors";
    case kStageMountPrivate: return "make the mount namespace private";
    case kStageMountReadonly: return "make the cell's root read-only";
    case kStageRootView: return "build the root view from policy.host_paths";
    case kStageSys: return "mount /sys and the cell's cgroup";
    case kStageCgroupNs: return "enter a cgroup namespace";
    case kStageInputs: return "bind spec.inputs read-only";
    case kStageClone: return "clone the cell";
    case kStageWorkspaceParent: return "create the workspace directory";
    case kStageWorkspace: return "mount tmpfs at the workspace";
    case kStageTmp: return "mount tmpfs at /tmp";
    case kStageDev: return "build /dev";
    case kStageProc: return "mount /proc";
    case kStageHostname: return "set the hostname";
    case kStageLoopback: return "bring up loopback";
    case kStageNetns: return "join the cell's network namespace";
    case kStageChdir: return "enter the workspace";
    case kStageInit: return "start the cell's init";
    case kStageSpawn: return "spawn the command";
    case kStageCredentials: return "switch to the unprivileged uid/gid";
    case kStageCapabilities: return "drop capabilities";
    case kStageNoNewPrivs: return "set no_new_privs";
    case kStageSeccomp: return "load the seccomp filter";
    case kStageExec: return "execve";
    case kStageCgroupLimits: return "write the cgroup limits";
    default: return "set up the cell";
  }
}

void cell_setup_main(const ChildPlan& p) {
  // A nested cell: nothing until the parent has written its uid and gid maps (and made its
  // network link): one byte, or EOF when the parent gave up on it.
  if (p.nested) {
    char go = 0;
    while (::read(p.nested_sync_fd, &go, 1) < 0 && errno == EINTR) {
    }
    if (go != 1) _exit(125);
  }
  // First, while the plan's descriptors are still where the parent left them: join the
  // namespace that holds the cell's veth and its nft ruleset. The status pipe is not yet at
  // its fixed number, so a failure is reported through the parent's descriptor for it.
  if (p.netns_fd >= 0 && ::setns(p.netns_fd, CLONE_NEWNET) != 0) {
    ChildStatus s;
    s.kind = ChildStatus::kSetupFailed;
    s.stage = kStageNetns;
    s.err = errno;
    ssize_t n = ::write(p.status_fd, &s, sizeof s);
    (void)n;
    _exit(125);
  }
  place_fds(p);
  // A nested cell's pipes belong to the host's root, whom its user namespace does not map: no
  // chown of them is possible from inside (its stdout is still fd 1, not /dev/stdout).
  if (!p.nested) own_stdio(p);
  write_cgroup_limits(p);
  if (p.nested) {
    open_nested_trees(p);
    become_nested_root(p);
  }
  // Now that the cell is in all its cgroups (v2 from clone, v1 just above): its cgroup
  // namespace is rooted at its leaves, so /proc/self/cgroup and /sys/fs/cgroup name no host
  // path and no other cell.
  // Its cgroup2 leaf, cloned while /proc/self/cgroup still names the host's path (before the
  // cgroup namespace): bound at /sys/fs/cgroup instead of a cgroup2 superblock per cell.
  // A prepared view entered its cgroup namespace at the preparation, its leaf clone parked.
  const int cgroup2_leaf = p.view_prepared ? parked_fd(p, 0)
                           : p.rootless    ? -1
                                           : open_cgroup2_leaf();
  if (!p.view_prepared && ::unshare(CLONE_NEWCGROUP) != 0) fail(kStageCgroupNs, "unshare", "CLONE_NEWCGROUP");
  // The init outlives nothing it supervises: if the reactor dies, the cell dies with it. The
  // setting survives the exec below (the init binary is not set-uid).
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  make_mounts(p, cgroup2_leaf);
  if (::sethostname(p.hostname, std::strlen(p.hostname)) != 0) fail(kStageHostname, "sethostname", p.hostname);
  // A prepared cell brought up the loopback of its own namespace at the preparation; one that
  // joined the spec's (egress) namespace instead brings up that one's here.
  const bool lo_up = p.view_prepared && p.netns_fd < 0;
  if (int err = lo_up ? 0 : netns::bring_up_loopback(); err != 0) {
    errno = err;
    fail(kStageLoopback, "bring up", "lo");
  }
  if (::chdir(p.workdir) != 0) fail(kStageChdir, "chdir", p.workdir);
  // Become the cell's init: a fresh image, so the reactor's memory is released to it and none
  // of it (other cells' environments included) is left in the cell.
  ::syscall(SYS_execveat, kInitFd, "", p.init_argv, p.envp, AT_EMPTY_PATH);
  fail(kStageInit, "execveat", "the cell's init");
}

}  // namespace cellos::cells
