// Cgroup roots, the per-host tree and cell leaves: against a fake cgroupfs in a temp dir (pure
// v2 and hybrid layouts, injected through a mounts file), and once against this machine's real
// cgroupfs, leaving nothing behind.
#include "cells/cgroup.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/test_support.h"

namespace cellos::cells {
namespace {

namespace fs = std::filesystem;
using Catch::Contains;
using test::path_exists;
using test::read_text;
using test::write_text;

// Knob values without the newline the kernel appends.
std::string knob(const std::string& path) {
  std::string s = read_text(path);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string error_message(const base::Error& e) { return e.message(); }

// A fake cgroupfs under a temp dir: a mounts table pointing into it, and directories that
// stand in for the mounts.
struct FakeCgroupfs {
  test::TempDir tmp;
  std::string root = tmp.path();
  std::string mounts = root + "/mounts";

  std::string dir(const std::string& rel) const { return root + "/" + rel; }
  void mkdir(const std::string& rel) const { fs::create_directories(dir(rel)); }

  // cgroup2 at <tmp>/unified, carrying every controller.
  static void pure_v2(FakeCgroupfs& f) {
    f.mkdir("unified");
    write_text(f.dir("unified/cgroup.controllers"), "cpuset cpu io memory hugetlb pids rdma misc\n");
    write_text(f.mounts, "proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\n"
                         "cgroup2 " + f.dir("unified") + " cgroup2 rw,nosuid 0 0\n"
                         "tmpfs /run tmpfs rw,nosuid,nodev,size=400000k,mode=755 0 0\n");
  }

  // Hybrid: cgroup2 without controllers, memory/pids/cpu on v1 hierarchies. cpu shares its
  // mount with cpuacct, as on most real hosts; cpuset and a named hierarchy must not be
  // mistaken for cpu.
  static void hybrid(FakeCgroupfs& f) {
    for (const char* d : {"unified", "memory", "pids", "cpu,cpuacct", "cpuset", "systemd"})
      f.mkdir(d);
    write_text(f.dir("unified/cgroup.controllers"), "");
    write_text(f.mounts,
               "tmpfs " + f.root + " tmpfs ro,nosuid,nodev,noexec,mode=755 0 0\n"
               "cgroup2 " + f.dir("unified") + " cgroup2 rw,nosuid,nodev,noexec,relatime 0 0\n"
               "cgroup " + f.dir("systemd") + " cgroup rw,nosuid,xattr,name=systemd 0 0\n"
               "cgroup " + f.dir("cpuset") + " cgroup rw,nosuid,nodev,noexec,relatime,cpuset 0 0\n"
               "cgroup " + f.dir("memory") + " cgroup rw,nosuid,nodev,noexec,relatime,memory 0 0\n"
               "cgroup " + f.dir("pids") + " cgroup rw,nosuid,nodev,noexec,relatime,pids 0 0\n"
               "cgroup " + f.dir("cpu,cpuacct") + " cgroup rw,nosuid,cpu,cpuacct 0 0\n");
  }

  // A real cgroupfs creates cgroup.procs in every new cgroup; the fake has to do it for the
  // v1 leaves, whose cgroup.procs create_leaf opens for the child.
  void precreate_v1_leaf(const std::string& rel) const {
    for (const char* h : {"memory", "pids", "cpu,cpuacct"}) {
      mkdir(std::string(h) + "/" + rel);
      write_text(dir(std::string(h) + "/" + rel + "/cgroup.procs"), "");
    }
  }
};

CgroupRoots detect(const FakeCgroupfs& f) {
  auto r = detect_cgroup_roots(f.mounts);
  INFO((r.ok() ? std::string() : error_message(r.error())));
  REQUIRE(r.ok());
  return *r;
}

CgroupTree prepare(const CgroupRoots& roots, const std::string& parent) {
  auto t = CgroupTree::prepare(roots, parent);
  INFO((t.ok() ? std::string() : error_message(t.error())));
  REQUIRE(t.ok());
  return std::move(t).value();
}

// What the cell's setup does with a leaf's planned writes: each, in order, as root. O_CREAT
// lets the same code write a fake cgroupfs, where no knob exists until written.
base::Result<void> apply(const CgroupLeaf& leaf) {
  for (const auto& w : leaf.writes()) {
    base::Fd fd(::open(w.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd.valid()) return base::sys_error("open", "cgroup \"" + w.path + "\"");
    if (::write(fd.get(), w.value.data(), w.value.size()) < 0)
      return base::sys_error("write", "cgroup \"" + w.path + "\"");
  }
  return base::ok();
}

CgroupLeaf create(const CgroupTree& tree, const std::string& name, const CgroupLimits& limits) {
  auto l = tree.create_leaf(name, limits);
  INFO((l.ok() ? std::string() : error_message(l.error())));
  REQUIRE(l.ok());
  auto applied = apply(*l);
  INFO((applied.ok() ? std::string() : error_message(applied.error())));
  REQUIRE(applied.ok());
  return std::move(l).value();
}

const CgroupLimits kLimits{1048576, 10, CpuMax{50000, 100000}};

// --- pure cgroup2 -------------------------------------------------------------------------

TEST_CASE("cgroup: on pure v2 detect_cgroup_roots puts memory, pids and cpu on the unified root",
          "[cgroup]") {
  FakeCgroupfs f;
  FakeCgroupfs::pure_v2(f);
  CgroupRoots r = detect(f);
  CHECK(r.unified == f.dir("unified"));
  CHECK(r.memory == r.unified);
  CHECK(r.pids == r.unified);
  CHECK(r.cpu == r.unified);
  CHECK(r.memory_v2);
  CHECK(r.pids_v2);
  CHECK(r.cpu_v2);
}

TEST_CASE("cgroup: on pure v2 prepare enables +memory +pids +cpu in every ancestor of the leaves",
          "[cgroup]") {
  FakeCgroupfs f;
  FakeCgroupfs::pure_v2(f);
  CgroupTree tree = prepare(detect(f), "cellos/h1");
  CHECK(tree.parent() == "cellos/h1");
  REQUIRE(fs::is_directory(f.dir("unified/cellos/h1")));
  for (const char* d : {"unified", "unified/cellos", "unified/cellos/h1"}) {
    INFO(d);
    CHECK(knob(f.dir(d) + "/cgroup.subtree_control") == "+memory +pids +cpu");
  }
}

TEST_CASE("cgroup: on pure v2 create_leaf writes memory.max, pids.max (+1 for init) and cpu.max",
          "[cgroup]") {
  FakeCgroupfs f;
  FakeCgroupfs::pure_v2(f);
  CgroupTree tree = prepare(detect(f), "cellos/h1");
  CgroupLeaf leaf = create(tree, "c1", kLimits);
  const std::string d = f.dir("unified/cellos/h1/c1");
  REQUIRE(fs::is_directory(d));
  CHECK(leaf.relative_path() == "cellos/h1/c1");
  CHECK(knob(d + "/memory.max") == "1048576");
  CHECK(knob(d + "/pids.max") == "11");  // the cell's init is counted on top, by design
  CHECK(knob(d + "/cpu.max") == "50000 100000");
  CHECK(leaf.v2_dirfd() >= 0);
  CHECK(leaf.v1_procs_paths().empty());
  // No swap on this "host" (no memory.swap.max in the leaf): none is created.
  CHECK_FALSE(path_exists(d + "/memory.swap.max"));
  // Nothing written where a v1 layout would put it.
  CHECK_FALSE(path_exists(d + "/memory.limit_in_bytes"));
  CHECK_FALSE(path_exists(d + "/cpu.cfs_quota_us"));
}

TEST_CASE("cgroup: on pure v2 create_leaf sets memory.swap.max to 0 where the host has swap",
          "[cgroup]") {
  FakeCgroupfs f;
  FakeCgroupfs::pure_v2(f);
  CgroupTree tree = prepare(detect(f), "cellos/h1");
  // The leaf exists already (left by a crashed run, empty), with the kernel's swap knob.
  f.mkdir("unified/cellos/h1/c2");
  write_text(f.dir("unified/cellos/h1/c2/memory.swap.max"), "max\n");
  CgroupLeaf leaf = create(tree, "c2", kLimits);
  CHECK(knob(f.dir("unified/cellos/h1/c2/memory.swap.max")) == "0");
  CHECK(knob(f.dir("unified/cellos/h1/c2/memory.max")) == "1048576");
}

TEST_CASE("cgroup: on pure v2 create_leaf without cpuMax clears any quota a reused leaf had",
          "[cgroup]") {
  FakeCgroupfs f;
  FakeCgroupfs::pure_v2(f);
  CgroupTree tree = prepare(detect(f), "cellos/h1");
  std::filesystem::create_directories(f.dir("unified/cellos/h1/c1"));
  write_text(f.dir("unified/cellos/h1/c1/cpu.max"), "10000 100000");  // left by a crashed run
  CgroupLeaf leaf = create(tree, "c1", CgroupLimits{1 << 20, 5, std::nullopt});
  CHECK(knob(f.dir("unified/cellos/h1/c1/cpu.max")) == "max");
  CHECK(knob(f.dir("unified/cellos/h1/c1/pids.max")) == "6");
}

TEST_CASE("cgroup: pids.max saturates at the kernel's limit instead of wrapping to 0",
          "[cgroup][limits]") {
  FakeCgroupfs f;
  FakeCgroupfs::pure_v2(f);
  CgroupTree tree = prepare(detect(f), "cellos/h1");
  // pidsMax 2^64-1 + 1 for the init wrapped to pids.max = 0 (no process could start).
  CgroupLeaf leaf = create(tree, "c1", CgroupLimits{1 << 20, UINT64_MAX, std::nullopt});
  CHECK(knob(f.dir("unified/cellos/h1/c1/pids.max")) == "4194304");
}

TEST_CASE("cgroup: oom_killed() reads the oom_kill counter of the leaf's memory.events",
          "[cgroup]") {
  FakeCgroupfs f;
  FakeCgroupfs::pure_v2(f);
  CgroupTree tree = prepare(detect(f), "cellos/h1");
  CgroupLeaf leaf = create(tree, "c1", kLimits);
  const std::string events = f.dir("unified/cellos/h1/c1/memory.events");
  CHECK_FALSE(leaf.oom_killed());  // no memory.events yet
  write_text(events, "low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\noom_group_kill 0\n");
  CHECK_FALSE(leaf.oom_killed());  // hitting max, even an OOM, is not a kill
  write_text(events, "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n");
  CHECK(leaf.oom_killed());
}

TEST_CASE("cgroup: create_leaf refuses a leaf that already has processes (EBUSY, already running)",
          "[cgroup]") {
  FakeCgroupfs f;
  FakeCgroupfs::pure_v2(f);
  CgroupTree tree = prepare(detect(f), "cellos/h1");
  f.mkdir("unified/cellos/h1/busy");
  write_text(f.dir("unified/cellos/h1/busy/cgroup.procs"), "4242\n");
  auto leaf = tree.create_leaf("busy", kLimits);
  REQUIRE_FALSE(leaf.ok());
  CHECK(leaf.error().err == EBUSY);
  CHECK_THAT(leaf.error().message(), Contains("already running"));
  CHECK_THAT(leaf.error().message(), Contains(f.dir("unified/cellos/h1/busy")));
  // The running cell's limits were not touched.
  CHECK_FALSE(path_exists(f.dir("unified/cellos/h1/busy/memory.max")));
}

TEST_CASE("cgroup: create_leaf reuses an existing empty leaf left by a crashed run", "[cgroup]") {
  FakeCgroupfs f;
  FakeCgroupfs::pure_v2(f);
  CgroupTree tree = prepare(detect(f), "cellos/h1");
  f.mkdir("unified/cellos/h1/stale");
  write_text(f.dir("unified/cellos/h1/stale/cgroup.procs"), "");
  CgroupLeaf leaf = create(tree, "stale", kLimits);
  CHECK(knob(f.dir("unified/cellos/h1/stale/memory.max")) == "1048576");
}

TEST_CASE("cgroup: in a fake cgroupfs remove() reports rmdir's ENOTEMPTY and keeps the leaf",
          "[cgroup]") {
  // Knob files are regular files here, so the dir is not empty: the fake's limit, not a bug.
  FakeCgroupfs f;
  FakeCgroupfs::pure_v2(f);
  CgroupTree tree = prepare(detect(f), "cellos/h1");
  CgroupLeaf leaf = create(tree, "c1", kLimits);
  auto r = leaf.remove();
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().err == ENOTEMPTY);
  CHECK_THAT(r.error().message(), Contains("rmdir"));
  CHECK_FALSE(leaf.removed());
  CHECK(leaf.v2_dirfd() < 0);  // the dir fd is dropped even so
  fs::remove_all(f.dir("unified/cellos/h1/c1"));
  CHECK(leaf.remove().ok());  // ENOENT counts as removed
  CHECK(leaf.removed());
}

// --- hybrid (v2 for membership, v1 for limits) ----------------------------------------------

TEST_CASE("cgroup: on a hybrid host the limits go to the v1 hierarchies (cpu found in cpu,cpuacct)",
          "[cgroup]") {
  FakeCgroupfs f;
  FakeCgroupfs::hybrid(f);
  CgroupRoots r = detect(f);
  CHECK(r.unified == f.dir("unified"));
  CHECK(r.memory == f.dir("memory"));
  CHECK(r.pids == f.dir("pids"));
  CHECK(r.cpu == f.dir("cpu,cpuacct"));  // not cpuset, not the named systemd hierarchy
  CHECK_FALSE(r.memory_v2);
  CHECK_FALSE(r.pids_v2);
  CHECK_FALSE(r.cpu_v2);
}

TEST_CASE("cgroup: on a hybrid host prepare makes the parent in every hierarchy, no subtree_control",
          "[cgroup]") {
  FakeCgroupfs f;
  FakeCgroupfs::hybrid(f);
  CgroupTree tree = prepare(detect(f), "cellos/h1");
  for (const char* h : {"unified", "memory", "pids", "cpu,cpuacct"}) {
    INFO(h);
    CHECK(fs::is_directory(f.dir(std::string(h) + "/cellos/h1")));
  }
  CHECK_FALSE(path_exists(f.dir("cpuset/cellos")));
  CHECK_FALSE(path_exists(f.dir("unified/cgroup.subtree_control")));
  CHECK_FALSE(path_exists(f.dir("unified/cellos/cgroup.subtree_control")));
}

TEST_CASE("cgroup: on a hybrid host create_leaf writes the v1 knobs and opens one cgroup.procs "
          "per v1 hierarchy",
          "[cgroup]") {
  FakeCgroupfs f;
  FakeCgroupfs::hybrid(f);
  CgroupTree tree = prepare(detect(f), "cellos/h1");
  f.precreate_v1_leaf("cellos/h1/c1");
  CgroupLeaf leaf = create(tree, "c1", kLimits);
  CHECK(knob(f.dir("memory/cellos/h1/c1/memory.limit_in_bytes")) == "1048576");
  CHECK(knob(f.dir("pids/cellos/h1/c1/pids.max")) == "11");
  CHECK(knob(f.dir("cpu,cpuacct/cellos/h1/c1/cpu.cfs_period_us")) == "100000");
  CHECK(knob(f.dir("cpu,cpuacct/cellos/h1/c1/cpu.cfs_quota_us")) == "50000");
  // No swap accounting on this "host": no memsw knob is created.
  CHECK_FALSE(path_exists(f.dir("memory/cellos/h1/c1/memory.memsw.limit_in_bytes")));
  // Nothing written into the v2 leaf, which only carries membership.
  CHECK(fs::is_directory(f.dir("unified/cellos/h1/c1")));
  CHECK_FALSE(path_exists(f.dir("unified/cellos/h1/c1/memory.max")));
  CHECK_FALSE(path_exists(f.dir("unified/cellos/h1/c1/pids.max")));
  REQUIRE(leaf.v1_procs_paths().size() == 3);
  for (const auto& p : leaf.v1_procs_paths()) CHECK(path_exists(p));
}

TEST_CASE("cgroup: on a hybrid host a cell without cpuMax gets no v1 cpu leaf", "[cgroup]") {
  FakeCgroupfs f;
  FakeCgroupfs::hybrid(f);
  CgroupTree tree = prepare(detect(f), "cellos/h1");
  for (const char* h : {"memory", "pids"}) {
    f.mkdir(std::string(h) + "/cellos/h1/c1");
    write_text(f.dir(std::string(h) + "/cellos/h1/c1/cgroup.procs"), "");
  }
  CgroupLeaf leaf = create(tree, "c1", CgroupLimits{1 << 20, 10, std::nullopt});
  CHECK_FALSE(path_exists(f.dir("cpu,cpuacct/cellos/h1/c1")));
  CHECK(leaf.v1_procs_paths().size() == 2);  // memory and pids
  CHECK(knob(f.dir("pids/cellos/h1/c1/pids.max")) == "11");
}

TEST_CASE("cgroup: on a hybrid host the cpu period is written before the quota", "[cgroup]") {
  // The kernel checks a quota against the period in force. A quota knob that cannot be written
  // (a directory here) shows the order: the period must already be there when it fails.
  FakeCgroupfs f;
  FakeCgroupfs::hybrid(f);
  CgroupTree tree = prepare(detect(f), "cellos/h1");
  f.precreate_v1_leaf("cellos/h1/c1");
  f.mkdir("cpu,cpuacct/cellos/h1/c1/cpu.cfs_quota_us");
  auto leaf = tree.create_leaf("c1", kLimits);
  REQUIRE(leaf.ok());
  auto applied = apply(*leaf);
  REQUIRE_FALSE(applied.ok());
  CHECK_THAT(applied.error().message(), Contains("cpu.cfs_quota_us"));
  CHECK(knob(f.dir("cpu,cpuacct/cellos/h1/c1/cpu.cfs_period_us")) == "100000");
}

TEST_CASE("cgroup: on a hybrid host oom_killed() reads memory.oom_control of the v1 leaf",
          "[cgroup]") {
  FakeCgroupfs f;
  FakeCgroupfs::hybrid(f);
  CgroupTree tree = prepare(detect(f), "cellos/h1");
  f.precreate_v1_leaf("cellos/h1/c1");
  CgroupLeaf leaf = create(tree, "c1", kLimits);
  const std::string ctl = f.dir("memory/cellos/h1/c1/memory.oom_control");
  write_text(ctl, "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n");
  CHECK_FALSE(leaf.oom_killed());
  write_text(ctl, "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
  CHECK(leaf.oom_killed());
}

// --- detection errors ----------------------------------------------------------------------

TEST_CASE("cgroup: a mounts table without cgroup2 is an error naming the mounts file",
          "[cgroup]") {
  FakeCgroupfs f;
  f.mkdir("memory");
  write_text(f.mounts, "proc /proc proc rw 0 0\n"
                       "cgroup " + f.dir("memory") + " cgroup rw,memory 0 0\n");
  auto r = detect_cgroup_roots(f.mounts);
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error().message(), Contains(f.mounts));
  CHECK_THAT(r.error().message(), Contains("cgroup2"));
}

TEST_CASE("cgroup: an unreadable mounts file is an error naming it", "[cgroup]") {
  FakeCgroupfs f;
  auto r = detect_cgroup_roots(f.dir("no-such-mounts"));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().err == ENOENT);
  CHECK_THAT(r.error().message(), Contains(f.dir("no-such-mounts")));
}

// --- this machine's cgroupfs -----------------------------------------------------------------

// rmdir (never unlink: cgroupfs has no unlinkable files) `rel` and everything under it, deepest
// first, in every hierarchy of /sys/fs/cgroup. Returns what could not be removed.
std::vector<std::string> rmdir_tree(const std::string& rel) {
  std::vector<std::string> left;
  std::error_code ec;
  for (const auto& h : fs::directory_iterator("/sys/fs/cgroup", ec)) {
    const fs::path top = h.path() / rel;
    if (!fs::is_directory(top, ec)) continue;
    std::vector<fs::path> dirs{top};
    for (auto it = fs::recursive_directory_iterator(top, ec); it != fs::end(it); it.increment(ec))
      if (it->is_directory(ec) && !it->is_symlink(ec)) dirs.push_back(it->path());
    for (auto d = dirs.rbegin(); d != dirs.rend(); ++d)
      if (::rmdir(d->c_str()) != 0 && errno != ENOENT) left.push_back(d->string());
  }
  return left;
}

std::vector<std::string> leftovers(const std::string& rel) {
  std::vector<std::string> found;
  std::error_code ec;
  for (const auto& h : fs::directory_iterator("/sys/fs/cgroup", ec))
    if (path_exists((h.path() / rel).string())) found.push_back((h.path() / rel).string());
  return found;
}

// The real roots, or why the test cannot run here.
std::string real_roots(CgroupRoots& out) {
  if (::geteuid() != 0) return "needs root to create cgroups";
  auto r = detect_cgroup_roots();
  if (!r) return "no usable cgroup2 mount: " + r.error().message();
  out = *r;
  return "";
}

std::string memory_limit_knob(const CgroupRoots& r) {
  return r.memory_v2 ? "memory.max" : "memory.limit_in_bytes";
}

TEST_CASE("cgroup: on this host a leaf gets real limits, is killed, removed, and leaves nothing",
          "[cgroup]") {
  CgroupRoots roots;
  if (auto why = real_roots(roots); !why.empty()) CELLOS_SKIP(why);
  const std::string parent = "cellos-unit-" + std::to_string(::getpid());
  struct Cleanup {
    std::string rel;
    ~Cleanup() { rmdir_tree(rel); }
  } cleanup{parent};

  CgroupTree tree = prepare(roots, parent);
  for (const std::string* h : {&roots.unified, &roots.memory, &roots.pids, &roots.cpu})
    if (!h->empty()) CHECK(fs::is_directory(*h + "/" + parent));

  {
    CgroupLeaf leaf = create(tree, "leaf", CgroupLimits{64 << 20, 10, CpuMax{50000, 100000}});
    CHECK(leaf.relative_path() == parent + "/leaf");
    const std::string rel = "/" + parent + "/leaf";
    if (!roots.memory.empty())
      CHECK(knob(roots.memory + rel + "/" + memory_limit_knob(roots)) == std::to_string(64 << 20));
    if (!roots.pids.empty()) CHECK(knob(roots.pids + rel + "/pids.max") == "11");
    if (!roots.cpu.empty()) {
      if (roots.cpu_v2) {
        CHECK(knob(roots.cpu + rel + "/cpu.max") == "50000 100000");
      } else {
        CHECK(knob(roots.cpu + rel + "/cpu.cfs_period_us") == "100000");
        CHECK(knob(roots.cpu + rel + "/cpu.cfs_quota_us") == "50000");
      }
    }
    CHECK_FALSE(leaf.oom_killed());

    auto killed = leaf.kill();
    INFO((killed.ok() ? std::string() : killed.error().message()));
    CHECK(killed.ok());  // cgroup.kill exists since 5.14; an empty leaf is fine to kill

    auto removed = leaf.remove();
    INFO((removed.ok() ? std::string() : removed.error().message()));
    CHECK(removed.ok());
    CHECK(leaf.removed());
    for (const std::string* h : {&roots.unified, &roots.memory, &roots.pids, &roots.cpu})
      if (!h->empty()) CHECK_FALSE(path_exists(*h + rel));
  }

  tree.remove_empty_parents();
  CHECK(leftovers(parent).empty());
}

TEST_CASE("cgroup: on this host kill() SIGKILLs every process in the leaf", "[cgroup]") {
  CgroupRoots roots;
  if (auto why = real_roots(roots); !why.empty()) CELLOS_SKIP(why);
  const std::string parent = "cellos-unit-" + std::to_string(::getpid());
  struct Cleanup {
    std::string rel;
    ~Cleanup() { rmdir_tree(rel); }
  } cleanup{parent};

  CgroupTree tree = prepare(roots, parent);
  CgroupLeaf leaf = create(tree, "kill", CgroupLimits{64 << 20, 10, std::nullopt});

  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    for (;;) ::pause();
  }
  // Membership through cgroup2, as clone3(CLONE_INTO_CGROUP) would place the cell.
  const std::string procs = roots.unified + "/" + parent + "/kill/cgroup.procs";
  auto joined = base::write_file_at(AT_FDCWD, procs, std::to_string(pid));
  if (!joined.ok()) ::kill(pid, SIGKILL);
  INFO((joined.ok() ? std::string() : joined.error().message()));
  REQUIRE(joined.ok());

  auto killed = leaf.kill();
  INFO((killed.ok() ? std::string() : killed.error().message()));
  CHECK(killed.ok());
  if (!killed.ok()) ::kill(pid, SIGKILL);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);

  // rmdir may see the cgroup busy for a moment while the exit is accounted: retry, as the
  // reactor does.
  base::Result<void> removed = leaf.remove();
  for (int i = 0; i < 100 && !removed.ok(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    removed = leaf.remove();
  }
  INFO((removed.ok() ? std::string() : removed.error().message()));
  CHECK(removed.ok());
  tree.remove_empty_parents();
  CHECK(leftovers(parent).empty());
}

TEST_CASE("cgroup: on this host a leaf left by a crashed run with a smaller v1 memory+swap limit "
          "is reused with the new, larger limit",
          "[cgroup]") {
  CgroupRoots roots;
  if (auto why = real_roots(roots); !why.empty()) CELLOS_SKIP(why);
  if (roots.memory.empty() || roots.memory_v2)
    CELLOS_SKIP("needs the v1 memory controller (this host has it on cgroup2 or not at all)");
  const std::string parent = "cellos-unit-" + std::to_string(::getpid());
  struct Cleanup {
    std::string rel;
    ~Cleanup() { rmdir_tree(rel); }
  } cleanup{parent};

  CgroupTree tree = prepare(roots, parent);
  // What a crashed reactor leaves behind: an empty leaf still carrying its cell's 1 MiB limits.
  const std::string stale = roots.memory + "/" + parent + "/stale";
  REQUIRE(::mkdir(stale.c_str(), 0755) == 0);
  if (!path_exists(stale + "/memory.memsw.limit_in_bytes"))
    CELLOS_SKIP("no swap accounting (memory.memsw.limit_in_bytes) on this host");
  REQUIRE(base::write_file_at(AT_FDCWD, stale + "/memory.limit_in_bytes", "1048576").ok());
  REQUIRE(base::write_file_at(AT_FDCWD, stale + "/memory.memsw.limit_in_bytes", "1048576").ok());

  auto leaf = tree.create_leaf("stale", CgroupLimits{64 << 20, 10, std::nullopt});
  INFO((leaf.ok() ? std::string() : leaf.error().message()));
  CHECK(leaf.ok());
  if (leaf.ok()) {
    auto applied = apply(*leaf);
    INFO((applied.ok() ? std::string() : applied.error().message()));
    CHECK(applied.ok());
    CHECK(knob(stale + "/memory.limit_in_bytes") == std::to_string(64 << 20));
    CHECK(knob(stale + "/memory.memsw.limit_in_bytes") == std::to_string(64 << 20));
    CHECK(leaf->remove().ok());
  }
  tree.remove_empty_parents();
  CHECK(leftovers(parent).empty());
}

}  // namespace
}  // namespace cellos::cells
