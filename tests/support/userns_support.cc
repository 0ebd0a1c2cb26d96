#include "tests/support/userns_support.h"

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace fs = std::filesystem;

namespace cellos::test {
namespace {

void chown_cgroup_dir(const std::string& dir, uid_t uid) {
  // What a service manager chowns when it delegates (systemd's Delegate=yes): the directory
  // and the files through which the delegatee creates children and moves processes.
  for (const char* f : {"", "/cgroup.procs", "/cgroup.subtree_control", "/cgroup.threads", "/tasks"})
    (void)::chown((dir + f).c_str(), uid, uid);
}

// Subdirectories of dir, deepest first.
void collect(const std::string& dir, std::vector<std::string>& out) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  while (dirent* e = ::readdir(d)) {
    if (e->d_type != DT_DIR || e->d_name[0] == '.') continue;
    collect(dir + "/" + e->d_name, out);
    out.push_back(dir + "/" + e->d_name);
  }
  ::closedir(d);
}

void kill_all(const std::string& dir) {
  std::ifstream procs(dir + "/cgroup.procs");
  pid_t pid;
  while (procs >> pid) ::kill(pid, SIGKILL);
}

}  // namespace

std::vector<std::string> delegation_hierarchies() {
  std::vector<std::string> out{"/sys/fs/cgroup/unified"};
  if (!fs::exists("/sys/fs/cgroup/unified/cgroup.procs")) out = {"/sys/fs/cgroup"};
  for (const char* h : {"memory", "pids", "cpu"})
    if (fs::exists(std::string("/sys/fs/cgroup/") + h + "/cgroup.procs"))
      out.push_back(std::string("/sys/fs/cgroup/") + h);
  return out;
}

DelegatedSubtree::DelegatedSubtree(const std::string& name, uid_t uid) {
  for (const auto& h : delegation_hierarchies()) {
    const std::string dir = h + "/" + name;
    fs::create_directories(dir);
    chown_cgroup_dir(dir, uid);
    dirs_.push_back(dir);
  }
}

DelegatedSubtree::~DelegatedSubtree() {
  for (int attempt = 0; attempt < 50; ++attempt) {
    bool left = false;
    for (const auto& top : dirs_) {
      std::vector<std::string> all;
      collect(top, all);
      all.push_back(top);
      for (const auto& d : all) {
        kill_all(d);
        if (::rmdir(d.c_str()) != 0 && errno != ENOENT) left = true;
      }
    }
    if (!left) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

std::string DelegatedSubtree::leftovers() const {
  std::string out;
  for (const auto& top : dirs_) {
    std::vector<std::string> all;
    collect(top, all);
    for (const auto& d : all) out += d + "\n";
  }
  return out;
}

ProcessResult run_rootless(const RootlessOptions& o, const std::vector<std::string>& argv) {
  std::vector<std::string> full{CELLOS_USERNS_ENTER_BIN, std::to_string(o.outer_first),
                                std::to_string(o.count)};
  if (o.subtree)
    for (const auto& d : o.subtree->dirs()) full.push_back(d);
  full.push_back("--");
  full.insert(full.end(), argv.begin(), argv.end());
  return run_process(full, o.input, o.timeout_s);
}

void chown_tree(const std::string& path, uid_t uid) {
  (void)::lchown(path.c_str(), uid, uid);
  for (const auto& e : fs::recursive_directory_iterator(path))
    (void)::lchown(e.path().c_str(), uid, uid);
}

}  // namespace cellos::test
