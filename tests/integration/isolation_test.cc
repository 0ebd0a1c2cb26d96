// What a cell can reach of the host, tried from inside real cells: host unix sockets (pathname
// and abstract), socket families, host information in /sys and /sys/fs/cgroup, the reactor's
// state dir, and the per-user kernel limits a shared uid would share.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <algorithm>
#include <filesystem>
#include <sstream>
#include <thread>

#include "cells/uid_pool.h"
#include "tests/support/daemon_support.h"
#include "tests/support/test_support.h"

using namespace cellos::test;
namespace fs = std::filesystem;

namespace {

// A unix stream socket listening on the host (this process, the host's namespaces): a
// pathname one, mode 0777 so any uid may connect, or an abstract one. The kernel completes a
// connect into the backlog without an accept, so a connection is possible for as long as it
// lives.
class HostListener {
 public:
  HostListener(const std::string& name, bool abstract) : name_(name), abstract_(abstract) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path + (abstract ? 1 : 0), name.data(), name.size());
    auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size() + (abstract ? 1 : 0));
    ok_ = fd_ >= 0 && ::bind(fd_, reinterpret_cast<sockaddr*>(&a), len) == 0 && ::listen(fd_, 16) == 0 &&
          (abstract || ::chmod(name.c_str(), 0777) == 0);
  }
  ~HostListener() {
    if (fd_ >= 0) ::close(fd_);
    if (!abstract_) ::unlink(name_.c_str());
  }
  HostListener(const HostListener&) = delete;
  HostListener& operator=(const HostListener&) = delete;
  bool ok() const { return ok_; }

 private:
  std::string name_;
  bool abstract_;
  int fd_ = -1;
  bool ok_ = false;
};

// The host pid of the process whose argv[0] is `marker` (a cell's command renamed by exec),
// waiting up to 20 s for it; -1 if none appeared.
pid_t wait_for_argv0(const std::string& marker) {
  for (int i = 0; i < 2000; ++i) {
    for (int pid : processes_with(marker)) {
      const std::string cmd = read_text("/proc/" + std::to_string(pid) + "/cmdline");
      if (cmd.compare(0, marker.size() + 1, marker + '\0') == 0) return pid;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return -1;
}

uid_t uid_of(pid_t pid) {
  struct stat st{};
  return ::stat(("/proc/" + std::to_string(pid)).c_str(), &st) == 0 ? st.st_uid : 0;
}

// Whether some holder (another process, or another lease of this one) holds `uid`'s lease.
bool uid_leased(uid_t uid) {
  int fd = ::open(cellos::cells::kUidLeaseFile, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct flock fl{};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = static_cast<off_t>(uid);
  fl.l_len = 1;
  bool held = ::fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
  ::close(fd);
  return held;
}

int count_inotify_fds(pid_t pid) {
  int n = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
    std::error_code ec2;
    if (fs::read_symlink(e.path(), ec2).string() == "anon_inode:inotify") ++n;
  }
  return n;
}

int read_int(const std::string& path) {
  const std::string s = read_text(path);
  return s.empty() ? -1 : std::atoi(s.c_str());
}

}  // namespace

TEST_CASE("a 0777 host unix socket under /run, /var/tmp, /var/lib or /home is unreachable from a cell",
          "[iso][sockets]") {
  Fleet fleet;
  for (const std::string dir : {"/run", "/var/tmp", "/var/lib", "/home"}) {
    if (!path_exists(dir)) continue;
    const std::string path = dir + "/cellos-test-" + unique_id("sock") + ".sock";
    HostListener host(path, false);
    REQUIRE(host.ok());
    // The listener is reachable from the host: what a cell fails at is the isolation's doing.
    auto control = run_process({fleet.probe(), "unix-connect", path});
    REQUIRE_THAT(control.out, Catch::Contains("connected") || Catch::Contains("exchanged"));
    auto r = fleet.run(make_spec(unique_id("sock"), {fleet.probe(), "unix-connect", path}).dump());
    INFO(path << ": " << r.out << r.err);
    CHECK(r.status == 1);
    CHECK((r.out.find("failed: ENOENT") != std::string::npos ||
           r.out.find("failed: ECONNREFUSED") != std::string::npos));
  }
}

TEST_CASE("an abstract unix socket of the host is unreachable: a cell's abstract namespace is its netns",
          "[iso][sockets]") {
  Fleet fleet;
  const std::string name = "cellos-test-" + unique_id("abstract");
  HostListener host(name, true);
  REQUIRE(host.ok());
  auto control = run_process({fleet.probe(), "abstract-connect", name});
  REQUIRE_THAT(control.out, Catch::Contains("connected"));
  auto r = fleet.run(make_spec(unique_id("abs"), {fleet.probe(), "abstract-connect", name}).dump());
  INFO(r.out << r.err);
  CHECK(r.status == 1);
  CHECK_THAT(r.out, Catch::Contains("failed: ECONNREFUSED"));
}

TEST_CASE("the root view holds no pathname socket at all", "[iso][sockets]") {
  Fleet fleet;
  auto r = fleet.run(make_spec(unique_id("nosock"),
                               {"/usr/bin/find", "/", "-path", "/proc", "-prune", "-o", "-type", "s",
                                "-print"})
                         .dump(),
                     {}, 120);
  CHECK(r.out.empty());
  // find may only have failed at directories the cell's uid cannot enter (/etc/ssl/private):
  // no socket in them is reachable by it either.
  std::istringstream err(r.err);
  for (std::string line; std::getline(err, line);) CHECK_THAT(line, Catch::EndsWith("Permission denied"));
}

TEST_CASE("a cell may open unix, inet, inet6 and netlink-route sockets and no other family",
          "[iso][seccomp]") {
  Fleet fleet;
  // family type protocol -> what the cell must see
  const std::vector<std::tuple<std::string, std::string, std::string, std::string>> cases = {
      {"40", "1", "0", "failed: EAFNOSUPPORT"},    // AF_VSOCK: ports are VM-wide
      {"17", "3", "0", "failed: EAFNOSUPPORT"},    // AF_PACKET
      {"38", "5", "0", "failed: EAFNOSUPPORT"},    // AF_ALG
      {"15", "2", "2", "failed: EAFNOSUPPORT"},    // AF_KEY
      {"31", "5", "1", "failed: EAFNOSUPPORT"},    // AF_BLUETOOTH
      {"16", "2", "15", "failed: EPROTONOSUPPORT"},  // NETLINK_KOBJECT_UEVENT: host device events
      {"16", "2", "9", "failed: EPROTONOSUPPORT"},   // NETLINK_AUDIT
      {"16", "3", "0", "ok"},                        // NETLINK_ROUTE
      {"2", "1", "0", "ok"},                         // AF_INET
      {"1", "1", "0", "ok"},                         // AF_UNIX
  };
  std::string script, expected;
  for (const auto& [f, t, p, want] : cases) {
    script += fleet.probe() + " socket " + f + " " + t + " " + p + "; ";
    expected += "socket " + f + " " + t + " " + p + " " + want + "\n";
  }
  // IPv6 only where the host kernel has it (a cell's netns gets it then too).
  const bool ipv6 = path_exists("/proc/net/if_inet6");
  if (ipv6) {
    script += fleet.probe() + " socket 10 1 0; ";
    expected += "socket 10 1 0 ok\n";
  }
  script += fleet.probe() + " socketpair 1; " + fleet.probe() + " socketpair 2; true";
  expected += "socketpair 1 ok\nsocketpair 2 failed: EAFNOSUPPORT\n";
  auto r = fleet.run(make_spec(unique_id("families"), {"/bin/sh", "-c", script}).dump());
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(r.out == expected);
  // The same probes on the host: the refusals are the filter's, not this kernel's.
  auto host = run_process({fleet.probe(), "socket", "16", "2", "15"});
  CHECK_THAT(host.out, Catch::Contains("ok"));
}

TEST_CASE("/sys shows the cell's own network interfaces and its own cgroup only", "[iso][sys]") {
  Fleet fleet;
  // A second cell runs meanwhile: its id must appear nowhere in the first one's view.
  const std::string marker = "cellos-neighbour-" + unique_id("m");
  const std::string neighbour = unique_id("neighbour");
  pid_t run = fleet.start_run(make_spec(neighbour, {fleet.probe(), "inotify-hog", marker}).dump());
  pid_t sleeper = wait_for_argv0(marker);
  REQUIRE(sleeper > 0);
  auto r = fleet.run(make_spec(unique_id("sys"),
                               {"/bin/sh", "-c",
                                "ls /sys/class/net; echo --; cat /proc/self/cgroup; echo --; "
                                "find /sys/fs/cgroup | wc -l; find /sys/fs/cgroup -mindepth 1 -type d"})
                         .dump());
  ::kill(sleeper, SIGKILL);
  int st = 0;
  ::waitpid(run, &st, 0);
  INFO(r.out << r.err);
  REQUIRE(r.status == 0);
  const auto first = r.out.find("--\n");
  CHECK(r.out.substr(0, first) == "lo\n");  // not the host's eth0, bridges, other cells' veths
  // Every hierarchy's line names the cell's own root ("N:controllers:/"), nothing of the host.
  const std::string cgroups = r.out.substr(first + 3, r.out.find("--\n", first + 3) - first - 3);
  CHECK_FALSE(cgroups.empty());
  size_t lines = 0;
  for (size_t at = 0; at < cgroups.size(); at = cgroups.find('\n', at) + 1, ++lines)
    CHECK(cgroups.compare(cgroups.find('\n', at) - 2, 2, ":/") == 0);
  CHECK(lines > 0);
  CHECK(r.out.find(neighbour) == std::string::npos);
  CHECK(r.out.find(fleet.host_id()) == std::string::npos);
  CHECK(r.out.find("cellos") == std::string::npos);
}

TEST_CASE("the state dir, the event log and the host's other directories are absent in a cell",
          "[iso][fs]") {
  Fleet fleet;
  auto first = fleet.run(make_spec(unique_id("warm"), {"/bin/true"}).dump());
  REQUIRE(first.status == 0);
  REQUIRE(path_exists(fleet.state_dir()));
  auto r = fleet.run(make_spec(unique_id("state"),
                               {"/bin/sh", "-c",
                                "for p in " + fleet.state_dir() + " " + fleet.events_path() +
                                    " /var/lib /var/log /var/run /run /home /root /srv /mnt /boot; do "
                                    "test -e $p && echo visible $p; done; ls " + fleet.dir() + "; ls /; true"})
                         .dump());
  INFO(r.err);
  CHECK(r.status == 0);
  INFO(r.out);
  CHECK(r.out.find("visible") == std::string::npos);
  // Of the fleet's directory, only the probe's (an allowed argv[0] prefix) is in the view.
  CHECK_THAT(r.out, Catch::StartsWith("bin\n"));
  // The root holds the allowed host paths (those present here), the cell's own mounts, and the
  // directories leading to the probe's allowed prefix (under /var/tmp for the tests).
  for (const std::string p : {"usr", "etc", "tmp", "dev", "proc", "sys"})
    CHECK(r.out.find(p + "\n") != std::string::npos);
}

TEST_CASE("two running cells have different uids, and one exhausting its inotify instances "
          "leaves the other unaffected",
          "[iso][uid]") {
  const int max_instances = read_int("/proc/sys/fs/inotify/max_user_instances");
  if (max_instances <= 0 || max_instances > 512)
    CELLOS_SKIP("fs.inotify.max_user_instances is " + std::to_string(max_instances) +
                "; the test exhausts it, so needs a small limit");
  Fleet fleet;
  const std::string marker = "cellos-hog-" + unique_id("m");
  pid_t run = fleet.start_run(make_spec(unique_id("hog"), {fleet.probe(), "inotify-hog", marker}).dump());
  pid_t hog = wait_for_argv0(marker);
  REQUIRE(hog > 0);
  const uid_t hog_uid = uid_of(hog);
  // It holds every instance its uid may have.
  CHECK(count_inotify_fds(hog) == max_instances);
  CHECK(uid_leased(hog_uid));

  auto r = fleet.run(make_spec(unique_id("other"),
                               {"/bin/sh", "-c", fleet.probe() + " inotify 8 && /usr/bin/id -u && /usr/bin/id -g"})
                         .dump());
  ::kill(hog, SIGKILL);
  int st = 0;
  REQUIRE(::waitpid(run, &st, 0) == run);
  INFO(r.out << r.err);
  CHECK(r.status == 0);
  CHECK_THAT(r.out, Catch::StartsWith("inotify 8 ok\n"));
  const std::string other_uid = r.out.substr(r.out.find('\n') + 1);
  CHECK(other_uid != std::to_string(hog_uid) + "\n" + std::to_string(hog_uid) + "\n");
  // The other cell ran under its own uid, with the gid of the same number, from the range.
  const uid_t uid = static_cast<uid_t>(std::stoul(other_uid));
  CHECK(other_uid == std::to_string(uid) + "\n" + std::to_string(uid) + "\n");
  CHECK(uid >= 200000);
  CHECK(uid <= 265535);
  CHECK(hog_uid >= 200000);
  // Both leases are gone with their cells.
  CHECK_FALSE(uid_leased(hog_uid));
  CHECK_FALSE(uid_leased(uid));
}

TEST_CASE("the reactor's own files inside an allowed host path are masked in the cell", "[iso][fs]") {
  Fleet shared;  // only its directory: a host path the second fleet allows
  const std::string secrets = shared.dir() + "/secrets";
  fs::create_directories(secrets);
  write_text(secrets + "/TOKEN", "masked-secret-value\n");
  ::chmod(secrets.c_str(), 0755);
  ::chmod((secrets + "/TOKEN").c_str(), 0644);  // readable by anyone on the host
  write_text(shared.dir() + "/visible.txt", "shared file\n");
  ::chmod((shared.dir() + "/visible.txt").c_str(), 0644);
  Fleet fleet("[policy]\nargv0_allow_prefixes = [\"/usr/bin\", \"/bin\"]\n"
              "host_paths = [\"/usr\", \"/bin\", \"/lib\", \"/lib64\", \"/etc\", \"" + shared.dir() + "\"]\n"
              "[secrets]\ndir = \"" + secrets + "\"\n");
  auto r = fleet.run(make_spec(unique_id("mask"),
                               {"/bin/sh", "-c",
                                "cat " + shared.dir() + "/visible.txt; ls -A " + secrets +
                                    "; cat " + secrets + "/TOKEN; true"})
                         .dump());
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(r.out == "shared file\n");  // the allowed path is there, its secrets dir is not
  CHECK_THAT(r.err, Catch::Contains("Permission denied"));
  CHECK(r.err.find("masked-secret-value") == std::string::npos);
  CHECK(read_text(secrets + "/TOKEN") == "masked-secret-value\n");
}

TEST_CASE("a host path that is a socket is left out of the view", "[iso][sockets]") {
  Fleet shared;
  const std::string sock = shared.dir() + "/listener.sock";
  HostListener host(sock, false);
  REQUIRE(host.ok());
  Fleet fleet("[policy]\nargv0_allow_prefixes = [\"/usr/bin\", \"/bin\"]\n"
              "host_paths = [\"/usr\", \"/bin\", \"/lib\", \"/lib64\", \"/etc\", \"" + sock + "\"]\n");
  auto r = fleet.run(make_spec(unique_id("sockpath"), {"/bin/sh", "-c", "test -e " + sock + " && echo visible; true"}).dump());
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(r.out.empty());
}

TEST_CASE("a networked cell's /sys/class/net lists lo and its own veth, none of the host's",
          "[iso][sys]") {
  // A /24 of its own per test process, apart from the other network tests' 10.212/10.213.
  Fleet fleet("[network]\nuplink = \"nat\"\nsubnet = \"10.211." + std::to_string(::getpid() % 250) +
              ".0/24\"\n");
  auto spec = make_spec(unique_id("netsys"),
                        {"/bin/sh", "-c", "ls /sys/class/net; echo --; cat /sys/class/net/*/address"});
  spec["spec"]["authority"] = {
      // Any rule gives the cell its veth; the cell sends nothing, and loopback is its own.
      {"egressRules", {{{"host", "127.0.0.1"}, {"port", 443}, {"protocol", "tcp"}}}}};
  auto r = fleet.run(spec.dump());
  INFO(r.out << r.err);
  REQUIRE(r.status == 0);
  std::vector<std::string> names, macs;
  std::istringstream in(r.out);
  bool after = false;
  for (std::string n; std::getline(in, n);) {
    if (n == "--") after = true;
    else (after ? macs : names).push_back(n);
  }
  REQUIRE(names.size() == 2);  // lo and the cell's end of its veth pair
  CHECK(std::find(names.begin(), names.end(), "lo") != names.end());
  // Names may coincide (the cell's end is eth0, like many hosts' uplink); addresses do not.
  for (const auto& e : fs::directory_iterator("/sys/class/net")) {
    std::string mac = read_text((e.path() / "address").string());
    if (!mac.empty() && mac.back() == '\n') mac.pop_back();
    if (mac != "00:00:00:00:00:00") CHECK(std::find(macs.begin(), macs.end(), mac) == macs.end());
  }
}

TEST_CASE("the daemon returns a cell's uid when the cell ends: one uid serves cells one after another",
          "[iso][uid]") {
  // A range of one uid and one cell at a time: each cell can start only if the one before
  // returned the uid, while the daemon (the lease file's holder) lives on.
  const std::string uid = std::to_string(5000 + ::getpid() % 1000);
  Fleet fleet("[policy]\nargv0_allow_prefixes = [\"/usr/bin\", \"/bin\"]\nuid_range = \"" + uid + "-" +
                  uid + "\"\n",
              "", "max_concurrent_cells = 1\n");
  DaemonProcess daemon(fleet);
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(unique_id("oneuid"));
    spool(fleet, make_spec(ids.back(), {"/usr/bin/id", "-u"}));
  }
  REQUIRE(eventually([&] { return events_of(fleet, "lifecycle.v1.destroyed").size() >= 3; },
                     std::chrono::seconds(60)));
  for (const auto& c : events_of(fleet, "command.v1.completed")) {
    INFO(c.dump());
    CHECK(c["data"]["exitCode"] == 0);
  }
  for (const auto& id : ids) CHECK(read_text(fleet.state_dir() + "/logs/" + id + "/stdout") == uid + "\n");
  CHECK_FALSE(uid_leased(static_cast<uid_t>(std::stoul(uid))));
  daemon.signal(SIGTERM);
  CHECK(daemon.wait() == 0);
}
