#include "cells/nested_backend.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <optional>

#include "cells/cell_init.h"
#include "cells/child_setup.h"
#include "cells/launcher.h"
#include "cells/nested_config.h"
#include "cells/rootless.h"
#include "cells/uid_pool.h"
#include "netns/nested_link.h"
#include "sinks/signing.h"

namespace cellos::cells {
namespace {

// The nested event log's name in its state dir: the nested reactor's default
// (<state_dir>/events.jsonl, config.h Config::events_path).
constexpr const char* kNestedLogName = "events.jsonl";

base::Result<std::string> readlink_of(const std::string& path) {
  char buf[4096];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof buf - 1);
  if (n < 0) return base::sys_error("readlink", path);
  return std::string(buf, static_cast<size_t>(n));
}

base::Result<void> write_owned(const std::string& path, const std::string& text, unsigned mode,
                               uid_t uid) {
  auto fd = base::open_at(AT_FDCWD, path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, mode);
  if (!fd) return std::move(fd).error();
  if (::write(fd->get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
    return base::sys_error("write", path);
  if (::fchown(fd->get(), uid, uid) != 0) return base::sys_error("fchown", path);
  return base::ok();
}

// Subdirectories of dir, deepest first (cgroups are removed leaf first).
void subdirs(const std::string& dir, std::vector<std::string>& out) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  while (dirent* e = ::readdir(d)) {
    if (e->d_type != DT_DIR || e->d_name[0] == '.') continue;
    subdirs(dir + "/" + e->d_name, out);
    out.push_back(dir + "/" + e->d_name);
  }
  ::closedir(d);
}

// rm -r of dir's contents but `keep` (a direct entry); the directory itself stays when it
// kept something.
void remove_but(const std::string& dir, const std::string& keep) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  std::vector<std::pair<std::string, bool>> entries;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == ".." || name == keep) continue;
    entries.emplace_back(name, e->d_type == DT_DIR);
  }
  ::closedir(d);
  for (const auto& [name, is_dir] : entries) {
    const std::string path = dir + "/" + name;
    if (is_dir) {
      remove_but(path, "");
      ::rmdir(path.c_str());
    } else {
      ::unlink(path.c_str());
    }
  }
}

class NestedBackend;

class NestedCell final : public BackendCell {
 public:
  NestedCell(NestedBackend* backend, std::string id) : backend_(backend), id_(std::move(id)) {}
  ~NestedCell() override;
  base::Result<Started> start(const StartRequest& r) override;
  void before_leaf_removal() override;
  const NestedCellFiles* nested_files() const override { return started_ ? &files_ : nullptr; }

 private:
  base::Result<void> make_files(const StartRequest& r, uint32_t block_size);
  NestedBackend* backend_;
  std::string id_;
  bool counted_ = false, started_ = false;
  std::optional<UidLease> block_;
  uid_t root_ = 0;  // the block's first uid: root of the cell's user namespace
  std::string config_path_;
  std::vector<std::string> cgroup_dirs_;  // the leaf in every hierarchy
  NestedCellFiles files_;
  uint32_t max_user_namespaces_ = 0;
  // The veth from the cell's host-owned namespace (the parent's ruleset) into its own; gone
  // before the Cell's CellNetwork (the Cell resets its backend cell first).
  std::unique_ptr<netns::NestedLink> link_;
};

class NestedBackend final : public Backend {
 public:
  explicit NestedBackend(const Config& c) : config_(c) {}
  std::string_view name() const override { return "nested"; }
  BackendTraits traits() const override { return {}; }
  base::Result<std::unique_ptr<BackendCell>> prepare(const std::string& cell_id) override {
    return std::unique_ptr<BackendCell>(new NestedCell(this, cell_id));
  }
  const Config& config() const { return config_; }
  uint32_t live = 0;  // nested cells started and not yet torn down

 private:
  Config config_;
};

NestedCell::~NestedCell() {
  if (counted_) --backend_->live;
  if (!started_) return;
  // Everything the nested reactor left in its state dir goes, but its event log (the parent's
  // evidence of what ran below it) and, outside, the public key that verifies it.
  remove_but(files_.state_dir, kNestedLogName);
  struct stat st{};
  if (::stat(files_.event_log.c_str(), &st) != 0) ::rmdir(files_.state_dir.c_str());
  ::unlink(config_path_.c_str());
}

void NestedCell::before_leaf_removal() {
  // The leaf's processes are gone (cgroup.kill reaches the whole subtree): the cgroups the
  // nested reactors made below it are empty, and go leaf first.
  for (const auto& top : cgroup_dirs_) {
    std::vector<std::string> below;
    subdirs(top, below);
    for (const auto& d : below) ::rmdir(d.c_str());
  }
}

base::Result<void> NestedCell::make_files(const StartRequest& r, uint32_t block_size) {
  const Config& c = backend_->config();
  // Below the log the cell's events go to: the seal records the sub-log's path relative to it.
  const std::string base = r.log_dir.empty() ? nested_host_dir(c) : r.log_dir + "/nested";
  if (auto m = base::make_dirs(base, 0711); !m) return m;
  files_.state_dir = base + "/" + id_;
  files_.event_log = files_.state_dir + "/" + kNestedLogName;
  files_.public_key = base + "/" + id_ + ".pub";
  config_path_ = base + "/" + id_ + ".toml";
  // A previous cell of this id left its log (and key): this cell's reactor starts a log of its
  // own, signed with a key of its own.
  remove_but(files_.state_dir, "");
  ::rmdir(files_.state_dir.c_str());
  if (::mkdir(files_.state_dir.c_str(), 0700) != 0)
    return base::sys_error("mkdir", files_.state_dir);
  if (::chown(files_.state_dir.c_str(), root_, root_) != 0)
    return base::sys_error("chown", files_.state_dir);
  auto key = sinks::SigningKey::generate();
  if (!key) return std::move(key).error();
  if (auto w = write_owned(files_.state_dir + "/nested.key", key->private_pem(), 0600, root_); !w) return w;
  ::unlink(files_.public_key.c_str());
  if (auto w = write_owned(files_.public_key, key->public_pem(), 0644, 0); !w) return w;
  files_.public_key_raw = key->raw_public_key();
  // The cell's secrets (env delivery: each is NAME=value in its environment), for its
  // reactor's [secrets] dir: readable by the block's root only.
  if (!r.secret_refs.empty()) {
    const std::string dir = files_.state_dir + "/" + kNestedSecretsDir;
    if (::mkdir(dir.c_str(), 0700) != 0 || ::chown(dir.c_str(), root_, root_) != 0)
      return base::sys_error("mkdir", dir);
    for (const auto& name : r.secret_refs)
      for (const auto& kv : r.env)
        if (kv.size() > name.size() && kv.compare(0, name.size(), name) == 0 && kv[name.size()] == '=')
          if (auto w = write_owned(dir + "/" + name, kv.substr(name.size() + 1), 0400, root_); !w) return w;
  }
  NestedConfigInput in;
  in.cell_id = id_;
  in.parent_host = c.host.id;
  in.block_size = block_size;
  in.parent_policy = c.policy.nested;
  in.memory_max_bytes = r.memory_max_bytes;
  in.pids_max = r.pids_max;
  in.deadline_unix_seconds = r.deadline_unix_seconds;
  in.now_unix_seconds = static_cast<uint64_t>(::time(nullptr));
  in.secrets = r.secret_refs;
  in.egress = r.egress;
  max_user_namespaces_ = plan_nested(in).max_user_namespaces;
  ::unlink(config_path_.c_str());
  return write_owned(config_path_, nested_fleet_toml(in), 0644, 0);
}

base::Result<Started> NestedCell::start(const StartRequest& r) {
  const Config& c = backend_->config();
  const NestedPolicy& np = c.policy.nested;
  if (backend_->live >= np.max_cells)
    return base::value_error("policy.nested.max_cells",
                             std::to_string(np.max_cells) +
                                 " nested cells already live on this reactor: cell " + id_ +
                                 " is not started");
  ++backend_->live;
  counted_ = true;
  // Block i (1-based in the lease file) is uids uid_first + (i-1) * size ...
  auto block = UidLease::acquire({1, nested_block_count(np)},
                                 running_rootless() ? c.host.state_dir + "/nested-blocks.lock"
                                                    : std::string("/run/cellos-reactor/nested-blocks.lock"));
  if (!block) return std::move(block).error().context("policy.nested.uid_range");
  block_.emplace(std::move(*block));
  root_ = np.uid_first + (block_->uid() - 1) * np.uid_block_size;
  started_ = true;  // from here on the destructor cleans the files
  if (auto f = make_files(r, np.uid_block_size); !f) return std::move(f).error();

  // Delegation: the leaf in every hierarchy, as a service manager delegates a subtree.
  auto v2 = readlink_of("/proc/self/fd/" + std::to_string(r.cgroup_v2_dirfd));
  if (!v2) return std::move(v2).error();
  cgroup_dirs_.push_back(*v2);
  for (const char* procs : r.v1_procs_paths) {
    std::string dir = procs;
    cgroup_dirs_.push_back(dir.substr(0, dir.rfind('/')));
  }
  for (const auto& dir : cgroup_dirs_)
    for (const char* f : {"", "/cgroup.procs", "/cgroup.subtree_control", "/cgroup.threads", "/tasks"}) {
      const std::string path = dir + f;
      if (::chown(path.c_str(), root_, root_) != 0 && errno != ENOENT)
        return base::sys_error("chown (cgroup delegation)", path);
    }

  auto exe = np.reactor_binary.empty() ? readlink_of("/proc/self/exe")
                                        : base::Result<std::string>(np.reactor_binary);
  if (!exe) return std::move(exe).error();
  auto sync = base::make_pipe();
  if (!sync) return std::move(sync).error();

  LaunchOptions lo;
  lo.argv = r.argv;
  lo.program = r.program;
  lo.env = r.env;
  lo.workdir = r.workdir;
  lo.hostname = id_;
  lo.uid = 0;  // root of the cell's user namespace
  lo.gid = 0;
  lo.host_paths = r.host_paths;
  lo.masked_paths = r.masked_paths;
  lo.cgroup_v2_dirfd = r.cgroup_v2_dirfd;
  lo.knob_paths = r.knob_paths;
  lo.knob_values = r.knob_values;
  lo.v1_procs_paths = r.v1_procs_paths;
  lo.want_pidfd = r.want_pidfd;
  lo.nested = LaunchOptions::Nested{sync->read.get(), max_user_namespaces_, *exe, config_path_,
                                    files_.state_dir};
  auto l = launch(lo);
  if (!l) return std::move(l).error();
  sync->read.reset();
  // Until the child is released it is ours to clean up: on a failure below it reads EOF and
  // exits 125 at once, and is reaped here (the Cell never watches a cell whose start failed).
  struct Reaper {
    base::Fd* sync;
    pid_t pid;
    bool armed = true;
    ~Reaper() {
      if (!armed) return;
      sync->reset();
      while (::waitpid(pid, nullptr, __WALL) < 0 && errno == EINTR) {
      }
    }
  } reaper{&sync->write, l->pid};
  // The child waits on the pipe: its maps first ("0 <block> <size>": its root is the block's
  // first uid), by this privileged side, which holds CAP_SETUID over the uids mapped.
  const std::string map = "0 " + std::to_string(root_) + " " + std::to_string(np.uid_block_size) + "\n";
  const std::string proc = "/proc/" + std::to_string(l->pid);
  for (const char* f : {"/uid_map", "/gid_map"}) {
    auto fd = base::open_at(AT_FDCWD, proc + f, O_WRONLY);
    if (!fd) return std::move(fd).error();  // the child sees EOF and exits 125
    if (::write(fd->get(), map.data(), map.size()) != static_cast<ssize_t>(map.size()))
      return base::sys_error("write", proc + f);
  }
  // With egress, the link: a veth from the host-owned namespace holding the parent's ruleset
  // (with its forward chains: Cell::prepare_network) into the namespace the child was cloned
  // with (owned by its user namespace), made while the child waits (netns/nested_link.h).
  if (r.netns_fd >= 0) {
    auto link = netns::NestedLink::create({.outer_netns_fd = r.netns_fd, .inner_pid = l->pid});
    if (!link) return std::move(link).error().context("the nested cell's network link");
    link_ = std::move(*link);
  }
  const char go = 1;
  if (::write(sync->write.get(), &go, 1) != 1) return base::sys_error("write", "the nested cell's start pipe");
  reaper.armed = false;
  return Started{l->pid, std::move(l->pidfd), std::move(l->stdout_read), std::move(l->stderr_read),
                 std::move(l->status_read)};
}

}  // namespace

std::string nested_host_dir(const Config& config) { return config.host.state_dir + "/nested"; }

base::Result<std::unique_ptr<Backend>> make_nested_backend(const Config& config) {
  if (const auto& init = cell_init_binary(); !init.ok()) return init.error();
  if (config.policy.nested.max_depth == 0)
    return base::value_error("policy.nested.max_depth", "is 0: the nested backend is not allowed");
  if (auto exe = readlink_of("/proc/self/exe"); !exe) return std::move(exe).error();
  return std::unique_ptr<Backend>(new NestedBackend(config));
}

}  // namespace cellos::cells
