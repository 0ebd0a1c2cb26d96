// What keeps admission flat as live cells grow (cells.md "Spawning", "One tmpfs per cell"): cells
// are cloned by the spawner, a small process whose descriptor table does not grow with the
// reactor's, yet stay the reactor's children; and a cell's writable places share its root's
// one tmpfs. No timing here: the rates are bench-daemon's (--only admission).
#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/test_support.h"

using namespace cellos::test;

namespace {

std::string proc_text(pid_t pid, const char* file) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/" + file);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

pid_t ppid_of(pid_t pid) {
  std::istringstream in(proc_text(pid, "status"));
  for (std::string line; std::getline(in, line);)
    if (line.rfind("PPid:", 0) == 0) return static_cast<pid_t>(std::stol(line.substr(5)));
  return -1;
}

// Children of `parent` whose comm is `comm`, or (comm empty) any other than the spawner.
std::vector<pid_t> children_named(pid_t parent, const std::string& comm) {
  std::vector<pid_t> out;
  DIR* d = ::opendir("/proc");
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    pid_t pid = static_cast<pid_t>(std::atol(e->d_name));
    if (pid <= 0) continue;
    const std::string c = proc_text(pid, "comm");
    const bool match = comm.empty() ? !c.empty() && c != "cellos-spawner\n" : c == comm + "\n";
    if (match && ppid_of(pid) == parent) out.push_back(pid);
  }
  ::closedir(d);
  return out;
}

int open_fds(pid_t pid) {
  int n = 0;
  DIR* d = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
  if (!d) return -1;
  while (dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n;
}

}  // namespace

TEST_CASE("cells are cloned by a spawner holding a few descriptors, and are the reactor's children",
          "[spawner]") {
  Fleet fleet;
  const std::string id = unique_id("spawned");
  const pid_t run = fleet.start_run(make_spec(id, {"/bin/sleep", "600"}).dump());
  std::vector<pid_t> inits, spawners;
  for (int i = 0; i < 500 && inits.empty(); ++i) {
    inits = children_named(run, "");  // the init runs from a memfd: its comm is the memfd's name
    if (inits.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  spawners = children_named(run, "cellos-spawner");
  // The cell's init: cloned by the spawner with CLONE_PARENT, so the reactor's own child, which
  // it reaps by pid through its ring.
  CHECK(inits.size() == 1);
  CHECK(spawners.size() == 1);
  // /dev/null at 0-2, its socket, the init binary's memfd, and once its first cell is on its
  // way the sysfs template and its network namespace (sys_template.h): nothing of the
  // reactor's, whose table holds the cell's pipes, its event log, its ring...
  for (pid_t s : spawners) {
    const int fds = open_fds(s);
    CHECK((fds == 5 || fds == 7));
    CHECK(open_fds(run) > open_fds(s));
  }
  // Stopping the reactor stops the cell (reaped by the reactor: the shutdown outcome), and the
  // spawner goes with it.
  ::kill(run, SIGTERM);
  int st = 0;
  ::waitpid(run, &st, 0);
  CHECK(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) == 128 + SIGTERM);
  for (pid_t s : spawners) {
    bool gone = false;
    for (int i = 0; i < 250 && !gone; ++i) {
      gone = ::kill(s, 0) != 0 || proc_text(s, "comm") != "cellos-spawner\n";
      if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    CHECK(gone);
  }
  bool shutdown = false;
  for (const auto& e : fleet.events())
    if (e["type"].get<std::string>().find("completed") != std::string::npos)
      shutdown = e["data"]["reason"] == "shutdown";
  CHECK(shutdown);
}

TEST_CASE("spawner: a cell's root, /tmp, workspace and /dev are one tmpfs, each place with its own mount",
          "[spawner][fs]") {
  Fleet fleet;
  auto spec = make_spec(unique_id("onefs"),
                        {"/bin/sh", "-c",
                         "stat -c %d / /tmp /work /dev | uniq | wc -l; "
                         "stat -f -c %T /tmp; "
                         "touch /tmp/t /work/w && echo writable; "
                         "touch /x 2>/dev/null || echo root-readonly; "
                         "stat -c '%a %u' /tmp /work; "
                         "if [ -d /sys/fs/cgroup/unified ]; then "
                         "  [ \"$(stat -c %d /sys/fs/cgroup)\" = \"$(stat -c %d /)\" ] && echo cgroup-dir-on-root; "
                         "else echo cgroup-dir-on-root; fi"});
  spec["spec"]["run"]["workingDirectory"] = "/work";
  auto r = fleet.run(spec.dump());
  INFO(r.err);
  REQUIRE(r.status == 0);
  std::istringstream out(r.out);
  std::string distinct, fstype, writable, ro, tmp_mode, work_mode, cgroup;
  std::getline(out, distinct);
  std::getline(out, fstype);
  std::getline(out, writable);
  std::getline(out, ro);
  std::getline(out, tmp_mode);
  std::getline(out, work_mode);
  std::getline(out, cgroup);
  CHECK(distinct == "1");  // one device: one superblock
  CHECK(fstype == "tmpfs");
  CHECK(writable == "writable");
  CHECK(ro == "root-readonly");
  CHECK(tmp_mode == "1777 0");
  CHECK(work_mode.rfind("755 ", 0) == 0);
  CHECK(work_mode != "755 0");  // the cell's own uid
  CHECK(cgroup == "cgroup-dir-on-root");
}

TEST_CASE("spawner: a plan over the spawner's 128 KiB is cloned by the reactor itself, with the same "
          "outcome", "[spawner]") {
  Fleet fleet;
  auto spec = make_spec(unique_id("bigplan"), {"/bin/sh", "-c", "echo ${#BIG1} ${#BIG2}; exit 7"});
  // Two values under the kernel's 128 KiB per string, together over the spawner's buffer.
  spec["spec"]["run"]["env"] = {{"BIG1", std::string(70000, 'x')}, {"BIG2", std::string(70000, 'y')}};
  auto r = fleet.run(spec.dump());
  INFO(r.err);
  CHECK(r.status == 7);
  CHECK(r.out == "70000 70000\n");
}
