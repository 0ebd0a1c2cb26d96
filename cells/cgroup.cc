#include "cells/cgroup.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cctype>
#include <cstdlib>
#include <sstream>

#include "cells/leaf_stock.h"
#include "cells/spec.h"

namespace cellos::cells {
namespace {

using base::Error;
using base::Result;

bool has_word(const std::string& text, const std::string& word) {
  std::istringstream in(text);
  std::string w;
  while (in >> w)
    if (w == word) return true;
  return false;
}

// Cgroup knobs exist in a real cgroupfs; O_CREAT lets the same code write a fake one in tests.
Result<void> write_knob(const std::string& dir, const std::string& name, const std::string& v) {
  std::string path = dir + "/" + name;
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return base::sys_error("open", "cgroup \"" + path + "\"");
  base::Fd guard(fd);
  ssize_t n = ::write(fd, v.data(), v.size());
  if (n < 0) {
    auto e = base::sys_error("write", "cgroup \"" + path + "\"");
    e.detail = "value " + v;
    return e;
  }
  return base::ok();
}

// A leaf left by a crashed run: empty (nothing populated) and safe to remove.
bool populated(const std::string& dir) {
  auto procs = base::read_file_at(AT_FDCWD, dir + "/cgroup.procs");
  return procs.ok() && !procs->empty();
}

// A cgroup knob at a cell's end (peak memory, OOM count, CPU time: a few dozen bytes each).
// kernfs hands a seq_file's whole text to one read whose buffer holds it, so a short first
// read is the whole file and the read that would only return 0 is skipped: one syscall fewer
// per knob, four per cell lifecycle. A text that fills the buffer is read on to its end.
Result<std::string> read_knob(const std::string& path) {
  base::Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return base::sys_error("open", path);
  char buf[4096];
  ssize_t n;
  do n = ::read(fd.get(), buf, sizeof buf);
  while (n < 0 && errno == EINTR);
  if (n < 0) return base::sys_error("read", path);
  if (static_cast<size_t>(n) < sizeof buf) return std::string(buf, static_cast<size_t>(n));
  return base::read_file_at(AT_FDCWD, path);  // rare: start again and read to the end
}

uint64_t counter(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  std::string k;
  uint64_t v = 0;
  while (in >> k >> v)
    if (k == key) return v;
  return 0;
}

}  // namespace

Result<CgroupRoots> detect_cgroup_roots(const std::string& mounts_file) {
  auto mounts = base::read_file_at(AT_FDCWD, mounts_file);
  if (!mounts) return std::move(mounts).error();
  CgroupRoots r;
  std::istringstream in(*mounts);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string dev, dir, type, opts;
    f >> dev >> dir >> type >> opts;
    if (type == "cgroup2" && r.unified.empty()) r.unified = dir;
    if (type != "cgroup") continue;
    std::istringstream o(opts);
    std::string opt;
    while (std::getline(o, opt, ',')) {
      if (opt == "memory") r.memory = dir;
      if (opt == "pids") r.pids = dir;
      if (opt == "cpu") r.cpu = dir;
    }
  }
  if (r.unified.empty())
    return base::value_error("cgroup", "no cgroup2 mount in " + mounts_file +
                                           " (cells join their cgroup through cgroup2)");
  auto ctl = base::read_file_at(AT_FDCWD, r.unified + "/cgroup.controllers");
  if (!ctl) return std::move(ctl).error();
  // A controller bound to v1 never shows in cgroup.controllers, so this prefers v2 when both
  // claim it only in the impossible case; the v2 files are the ones the kernel then obeys.
  if (has_word(*ctl, "memory")) r.memory = r.unified, r.memory_v2 = true;
  if (has_word(*ctl, "pids")) r.pids = r.unified, r.pids_v2 = true;
  if (has_word(*ctl, "cpu")) r.cpu = r.unified, r.cpu_v2 = true;
  return r;
}

std::vector<std::string> CgroupTree::hierarchies(bool with_cpu) const {
  std::vector<std::string> h{roots_.unified};
  for (const std::string* root : {&roots_.memory, &roots_.pids, with_cpu ? &roots_.cpu : nullptr})
    if (root && !root->empty() && std::find(h.begin(), h.end(), *root) == h.end())
      h.push_back(*root);
  return h;
}

Result<CgroupTree> CgroupTree::prepare(CgroupRoots roots, std::string parent,
                                       std::string delegated) {
  CgroupTree t(std::move(roots), std::move(parent));
  t.delegated_ = std::move(delegated);
  for (const std::string& h : t.hierarchies()) CELLOS_TRY(base::make_dirs(h + "/" + t.parent_));
  if (!t.roots_.memory.empty() && !t.roots_.memory_v2)
    t.memsw_ = ::access((t.roots_.memory + "/" + t.parent_ + "/memory.memsw.limit_in_bytes").c_str(),
                        F_OK) == 0;
  // Pure v2: a controller reaches a leaf only if every ancestor enables it for its children.
  std::string enable;
  if (t.roots_.memory_v2) enable += "+memory ";
  if (t.roots_.pids_v2) enable += "+pids ";
  if (t.roots_.cpu_v2) enable += "+cpu ";
  if (!enable.empty()) {
    enable.pop_back();
    // A delegated subtree: its ancestors are the service manager's (it enabled what reaches
    // us), so the writes start at the delegated cgroup itself; else at the root.
    std::string dir = t.roots_.unified + (t.delegated_.empty() ? "" : "/" + t.delegated_);
    CELLOS_TRY(write_knob(dir, "cgroup.subtree_control", enable));
    std::istringstream segs(t.delegated_.empty() ? t.parent_
                                                 : t.parent_.substr(t.delegated_.size() + 1));
    std::string seg;
    while (std::getline(segs, seg, '/')) {
      dir += "/" + seg;
      CELLOS_TRY(write_knob(dir, "cgroup.subtree_control", enable));
    }
  }
  return t;
}

void CgroupTree::remove_empty_parents() const {
  for (const std::string& h : hierarchies()) {
    std::string rel = parent_;
    // Never above (or at) a delegated cgroup: it belongs to the service manager.
    while (!rel.empty() && rel != delegated_) {
      if (::rmdir((h + "/" + rel).c_str()) != 0) break;  // busy or in use by another reactor
      auto slash = rel.rfind('/');
      rel = slash == std::string::npos ? "" : rel.substr(0, slash);
    }
  }
}

Result<CgroupLeaf> CgroupTree::create_leaf(const std::string& name, const CgroupLimits& limits,
                                           LeafStock* stock) const {
  return make_leaf(name, limits, false, stock);
}

Result<CgroupLeaf> CgroupTree::adopt_leaf(CgroupLeaf&& prepared, const CgroupLimits& limits) const {
  const std::string rel = prepared.rel_;
  if (rel.size() <= parent_.size() + 1 || rel.compare(0, parent_.size() + 1, parent_ + "/") != 0)
    return base::value_error("adopt cgroup", "\"" + rel + "\" is not a leaf of " + parent_);
  auto leaf = make_leaf(rel.substr(parent_.size() + 1), limits, true, nullptr);
  if (leaf) {
    prepared.dirs_.clear();
    // A prepared leaf taken from the stock (leaf_stock.h) had its resets done when the prepared
    // process joined it; its OOM count still starts from the count at hand-over.
    leaf->memory_from_stock_ = prepared.memory_from_stock_;
    leaf->oom_kills_base_ = prepared.oom_kills_base_;
  }
  return leaf;
}

Result<CgroupLeaf> CgroupTree::make_leaf(const std::string& name, const CgroupLimits& limits,
                                         bool adopt, LeafStock* stock) const {
  CgroupLeaf leaf;
  leaf.rel_ = parent_ + "/" + name;
  bool reused = false;  // a leaf left by a crashed reactor keeps its old limits
  // A v1 cpu leaf costs a mkdir and an rmdir of a cgroup; make one only for a cell with cpuMax.
  for (const std::string& h : hierarchies(limits.cpu_max.has_value())) {
    std::string dir = h + "/" + leaf.rel_;
    if (!adopt && stock && h == roots_.memory && !roots_.memory_v2) {
      if (auto taken = stock->take(name)) {
        // A leaf of an ended cell, renamed to this cell's id (leaf_stock.h).
        leaf.memory_from_stock_ = true;
        leaf.oom_kills_base_ = taken->oom_kills_base;
        leaf.dirs_.push_back(std::move(taken->dir));
        continue;
      }
    }
    if (adopt) {
      // Made with the prepared cell (no v1 cpu leaf: the pool serves no cpuMax on such hosts).
      reused = true;
    } else if (::mkdir(dir.c_str(), 0755) != 0 &&
               // The parent, empty until this leaf, removed meanwhile by another reactor of the
               // host tidying its empty parents: made again, once.
               !(errno == ENOENT && base::make_dirs(h + "/" + parent_).ok() &&
                 ::mkdir(dir.c_str(), 0755) == 0)) {
      if (errno != EEXIST) return base::sys_error("mkdir", "cgroup \"" + dir + "\"");
      // The caller holds the cell's lock, so an existing leaf is either still running under
      // another state dir (refuse) or left by a crashed reactor (empty: reuse it).
      if (populated(dir))
        return Error{EBUSY, "mkdir", "cgroup \"" + dir + "\"",
                     "cell id is already running (its cgroup has processes)", {}};
      reused = true;
    }
    leaf.dirs_.push_back(dir);
  }
  const std::string& v2 = leaf.dirs_.front();
  auto dirfd = base::open_at(AT_FDCWD, v2, O_PATH | O_DIRECTORY);
  if (!dirfd) return std::move(dirfd).error();
  leaf.v2_dir_ = std::move(*dirfd);

  auto dir_of = [&](const std::string& root) { return root + "/" + leaf.rel_; };
  // Planned, not made: the cell's setup (as root, before anything of the cell runs) writes the
  // limits itself, so the reactor spends no syscalls on them.
  auto knob = [&](const std::string& dir, const std::string& name,
                  const std::string& value) -> Result<void> {
    leaf.writes_.push_back({dir + "/" + name, value});
    return base::ok();
  };
  if (!roots_.memory.empty()) {
    const std::string d = dir_of(roots_.memory);
    const std::string bytes = std::to_string(limits.memory_max_bytes);
    if (roots_.memory_v2) {
      CELLOS_TRY(knob(d, "memory.max", bytes));
      // Without this a cell under memory pressure would spill to swap instead of hitting its
      // limit; hosts without swap have no such file, which is fine.
      if (::access((d + "/memory.swap.max").c_str(), F_OK) == 0)
        CELLOS_TRY(knob(d, "memory.swap.max", "0"));
    } else {
      // v1 insists on limit <= memsw at every write, and a reused leaf keeps its old memsw:
      // lift memsw first (a fresh leaf's is unlimited already), set the limit, then bring
      // memsw down to it (no swap past the limit).
      const bool memsw = memsw_;
      const bool stocked = leaf.memory_from_stock_;
      // A stocked leaf first gives back what its last cell left charged to it (page cache of
      // files it wrote, slab): the next cell's limit must not count it. No process is in the
      // leaf, so the reclaim can take it all. The setup skips this write when the leaf holds
      // no page and little kernel memory (leaf_reclaim.h).
      if (stocked) CELLOS_TRY(knob(d, "memory.force_empty", "0"));
      if (memsw && (reused || stocked)) CELLOS_TRY(knob(d, "memory.memsw.limit_in_bytes", "-1"));
      CELLOS_TRY(knob(d, "memory.limit_in_bytes", bytes));
      if (memsw) CELLOS_TRY(knob(d, "memory.memsw.limit_in_bytes", bytes));
      if (stocked) {
        // The peak and fail counters restart at the (emptied) usage: the cell's own from here.
        CELLOS_TRY(knob(d, "memory.max_usage_in_bytes", "0"));
        CELLOS_TRY(knob(d, "memory.failcnt", "0"));
        if (memsw) {
          CELLOS_TRY(knob(d, "memory.memsw.max_usage_in_bytes", "0"));
          CELLOS_TRY(knob(d, "memory.memsw.failcnt", "0"));
        }
      }
    }
    leaf.memory_dir_ = d;
    leaf.memory_v2_ = roots_.memory_v2;
  }
  if (!roots_.pids.empty()) leaf.pids_dir_ = dir_of(roots_.pids);
  if (!roots_.pids.empty())
    // One more than the spec's, for the cell's init. Saturated at the kernel's PID_MAX_LIMIT:
    // validation keeps pids_max below it, and a CgroupLimits built in code must not wrap
    // 2^64-1 + 1 into pids.max = 0.
    CELLOS_TRY(knob(dir_of(roots_.pids), "pids.max",
                    std::to_string(std::min(limits.pids_max, kMaxPids) + 1)));
  if (!limits.cpu_max && roots_.cpu_v2) {
    // The leaf may be reused from a crashed run: clear a quota this cell did not declare.
    CELLOS_TRY(knob(dir_of(roots_.cpu), "cpu.max", "max"));
  }
  if (limits.cpu_max && !roots_.cpu.empty()) {
    const std::string d = dir_of(roots_.cpu);
    const auto& c = *limits.cpu_max;
    if (roots_.cpu_v2) {
      CELLOS_TRY(knob(d, "cpu.max", std::to_string(c.quota_micros) + " " +
                                              std::to_string(c.period_micros)));
    } else {
      // The period first: the kernel checks the quota against the period in force.
      CELLOS_TRY(knob(d, "cpu.cfs_period_us", std::to_string(c.period_micros)));
      CELLOS_TRY(knob(d, "cpu.cfs_quota_us", std::to_string(c.quota_micros)));
    }
  }
  for (size_t i = 1; i < leaf.dirs_.size(); ++i)
    leaf.v1_procs_paths_.push_back(leaf.dirs_[i] + "/cgroup.procs");
  return leaf;
}

CgroupLeaf::~CgroupLeaf() {
  if (!dirs_.empty()) (void)remove();
}

Result<void> CgroupLeaf::kill() const {
  if (dirs_.empty()) return base::ok();
  return write_knob(dirs_.front(), "cgroup.kill", "1");
}

Result<void> CgroupLeaf::signal_all(int sig) const {
  if (dirs_.empty()) return base::ok();
  auto procs = base::read_file_at(AT_FDCWD, dirs_.front() + "/cgroup.procs");
  if (!procs) return std::move(procs).error();
  std::istringstream in(*procs);
  for (pid_t pid; in >> pid;) (void)::kill(pid, sig);  // ESRCH: it just left
  return base::ok();
}

std::array<std::string, CgroupLeaf::kUsageFiles> CgroupLeaf::usage_files() const {
  std::array<std::string, kUsageFiles> f;
  if (!memory_dir_.empty()) {
    f[0] = memory_dir_ + (memory_v2_ ? "/memory.peak" : "/memory.max_usage_in_bytes");
    f[1] = memory_dir_ + (memory_v2_ ? "/memory.events" : "/memory.oom_control");
  }
  if (!pids_dir_.empty()) f[2] = pids_dir_ + "/pids.peak";
  // cgroup2 counts CPU time in every cgroup whatever the controllers (cpu.stat's core keys),
  // so the hybrid hosts' v2 leaf has it too.
  if (!dirs_.empty()) f[3] = dirs_.front() + "/cpu.stat";
  return f;
}

CgroupUsage CgroupLeaf::parse_usage(
    const std::array<std::optional<std::string>, kUsageFiles>& t) const {
  CgroupUsage u;
  auto number = [](const std::optional<std::string>& text) -> std::optional<uint64_t> {
    if (!text || text->empty() || !std::isdigit(static_cast<unsigned char>((*text)[0])))
      return std::nullopt;
    return std::strtoull(text->c_str(), nullptr, 10);
  };
  u.memory_peak_bytes = number(t[0]);
  if (t[1]) {
    // A stocked leaf's OOM count carries the cells' before it (it cannot be reset): the
    // difference from its value at hand-over is this cell's.
    const uint64_t raw = counter(*t[1], "oom_kill");
    oom_kills_raw_ = raw;
    u.oom_kills = raw >= oom_kills_base_ ? raw - oom_kills_base_ : 0;
  }
  u.pids_peak = number(t[2]);
  if (t[3] && t[3]->find("usage_usec") != std::string::npos) u.cpu_usec = counter(*t[3], "usage_usec");
  return u;
}

CgroupUsage CgroupLeaf::usage() const {
  std::array<std::optional<std::string>, kUsageFiles> texts;
  const auto files = usage_files();
  for (size_t i = 0; i < kUsageFiles; ++i) {
    if (files[i].empty()) continue;
    auto text = read_knob(files[i]);
    if (text.ok()) texts[i] = std::move(*text);
  }
  return parse_usage(texts);
}

uint64_t CgroupLeaf::memory_bytes() const {
  if (memory_dir_.empty()) return 0;
  auto text = base::read_file_at(
      AT_FDCWD, memory_dir_ + (memory_v2_ ? "/memory.current" : "/memory.usage_in_bytes"));
  return text.ok() ? std::strtoull(text->c_str(), nullptr, 10) : 0;
}

std::vector<std::string> CgroupTree::list_leaves() const {
  std::vector<std::string> names;
  for (const std::string& h : hierarchies()) {
    DIR* d = ::opendir((h + "/" + parent_).c_str());
    if (!d) continue;
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (e->d_type != DT_DIR || n == "." || n == "..") continue;
      if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
    }
    ::closedir(d);
  }
  std::sort(names.begin(), names.end());
  return names;
}

Result<void> CgroupTree::reclaim_leaf(const std::string& name,
                                      std::chrono::milliseconds wait) const {
  const auto deadline = std::chrono::steady_clock::now() + wait;
  for (const std::string& h : hierarchies()) {
    const std::string dir = h + "/" + parent_ + "/" + name;
    if (::access(dir.c_str(), F_OK) != 0) continue;
    if (h == roots_.unified) (void)write_knob(dir, "cgroup.kill", "1");
    // Processes leave a cgroup only once they are reaped; poll until the leaf is empty.
    for (;;) {
      auto procs = base::read_file_at(AT_FDCWD, dir + "/cgroup.procs");
      if (!procs.ok() || procs->empty()) break;
      std::istringstream in(*procs);
      for (pid_t pid; in >> pid;) ::kill(pid, SIGKILL);
      if (std::chrono::steady_clock::now() > deadline)
        return Error{EBUSY, "reclaim", "cgroup \"" + dir + "\"",
                     "processes still present after SIGKILL", {}};
      ::usleep(5000);
    }
    for (int tries = 0; ::rmdir(dir.c_str()) != 0 && errno != ENOENT; ++tries) {
      if (errno != EBUSY || std::chrono::steady_clock::now() > deadline)
        return base::sys_error("rmdir", "cgroup \"" + dir + "\"");
      ::usleep(5000);
    }
  }
  return base::ok();
}

Result<void> CgroupLeaf::remove(LeafStock* stock) {
  v2_dir_.reset();
  // Leaves go first in every hierarchy; keep the ones that are still busy for a retry.
  std::vector<std::string> left;
  Result<void> result;
  for (const std::string& d : dirs_) {
    // dirs_ holds the cgroup2 leaf first: `left` empty means it is gone, so no process is left
    // in the cell's cgroups and the memory leaf can serve another cell.
    if (stock && left.empty() && !memory_v2_ && d == memory_dir_ && oom_kills_raw_ &&
        stock->give(d, *oom_kills_raw_))
      continue;
    if (::rmdir(d.c_str()) == 0 || errno == ENOENT) continue;
    if (result.ok()) result = base::sys_error("rmdir", "cgroup \"" + d + "\"");
    left.push_back(d);
  }
  dirs_ = std::move(left);
  return result;
}

}  // namespace cellos::cells
