// The status socket's `hand ID NAME` (reactor/status.h), what `run --via-daemon` asks: the
// daemon registers the wait, then itself moves the spec the client staged under its hidden
// spool name into the spool; the client hears `started` and `finished` with no `watching`
// line. A NAME that is not a staged spool name, or one that is not there, renames nothing and
// gets one error line.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <future>
#include <sys/stat.h>

#include "tests/support/daemon_support.h"
#include "tests/support/test_support.h"

using namespace cellos::test;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

// Sends one request line and returns every line until the daemon closes the connection (at
// most 60 s: a missing end is a failure, reported as what came so far).
std::vector<json> ask(const Fleet& fleet, const std::string& request) {
  std::vector<json> lines;
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  const std::string path = fleet.state_dir() + "/reactor.sock";
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  REQUIRE(::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0);
  const std::string line = request + "\n";
  REQUIRE(::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()));
  std::string buf;
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 60000) <= 0) break;
    char chunk[4096];
    ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n <= 0) break;
    buf.append(chunk, static_cast<size_t>(n));
  }
  ::close(fd);
  size_t at = 0;
  for (size_t nl; (nl = buf.find('\n', at)) != std::string::npos; at = nl + 1)
    lines.push_back(json::parse(buf.substr(at, nl - at), nullptr, false));
  return lines;
}

// Every name in `dir`, hidden ones too (dir_entries leaves those out).
std::vector<std::string> all_entries(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    out.push_back(e.path().filename().string());
  return out;
}

std::string stage(const Fleet& fleet, const std::string& name, const json& spec) {
  write_text(fleet.state_dir() + "/spool/" + name, spec.dump());
  return name;
}

}  // namespace

TEST_CASE("hand: the daemon moves the staged spec into the spool after registering the wait",
          "[status][run-via-daemon]") {
  Fleet fleet;
  DaemonProcess daemon(fleet);
  const std::string id = unique_id("hand");
  const std::string staged =
      stage(fleet, ".00000000000000000001-000001-" + id + ".json.tmp",
            make_spec(id, {"/bin/sh", "-c", "echo handed; exit 6"}));
  // Staged, the spec is nobody's: the spool intake reads no hidden name.
  auto lines = ask(fleet, "hand " + id + " " + staged);
  REQUIRE(lines.size() == 2);
  CHECK(lines[0].value("event", "") == "started");
  CHECK(lines[1].value("event", "") == "finished");
  CHECK(lines[1].value("exitStatus", -1) == 6);
  CHECK(read_text(lines[0].value("stdout", "")) == "handed\n");
  // Taken and settled like any spool entry: nothing left under either name.
  CHECK(all_entries(fleet.state_dir() + "/spool").empty());
  daemon.signal(SIGTERM);
  CHECK(daemon.wait() == 0);
}

TEST_CASE("hand: a name that is not a staged spool entry renames nothing and gets one error",
          "[status][run-via-daemon]") {
  Fleet fleet;
  DaemonProcess daemon(fleet);
  const std::string id = unique_id("hand-bad");
  // A file outside the spool, reached by a path: never moved.
  const std::string outside = fleet.dir() + "/outside.json.tmp";
  write_text(outside, make_spec(id, {"/bin/true"}).dump());
  for (const std::string& name :
       {std::string("../outside.json.tmp"), std::string("visible.json"), std::string(".x.json"),
        std::string(".tmp"), std::string(".missing-" + id + ".json.tmp"), std::string("")}) {
    INFO(name);
    auto lines = ask(fleet, "hand " + id + " " + name);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].contains("error"));
  }
  CHECK(path_exists(outside));
  CHECK(all_entries(fleet.state_dir() + "/spool").empty());
  daemon.signal(SIGTERM);
  CHECK(daemon.wait() == 0);
}

namespace {

// One request line from an accepted connection (at most 30 s).
std::string read_line(int fd) {
  std::string got;
  char ch;
  while (got.find('\n') == std::string::npos) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 30000) <= 0 || ::read(fd, &ch, 1) != 1) break;
    got += ch;
  }
  return got;
}

void say(int fd, const json& line) {
  const std::string s = line.dump() + "\n";
  (void)!::write(fd, s.data(), s.size());
}

int accept_one(int listener) {
  pollfd p{listener, POLLIN, 0};
  if (::poll(&p, 1, 30000) <= 0) return -1;
  return ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
}

// The fleet's state dir and spool, and a listening socket where its daemon's would be: a
// stand-in daemon the test plays itself.
int stand_in_socket(const Fleet& fleet) {
  ::mkdir(fleet.state_dir().c_str(), 0755);
  ::mkdir((fleet.state_dir() + "/spool").c_str(), 0755);
  int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(listener >= 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  const std::string path = fleet.state_dir() + "/reactor.sock";
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  REQUIRE(::bind(listener, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(listener, 4) == 0);
  return listener;
}

}  // namespace

TEST_CASE("run --via-daemon falls back to wait and its own rename with a daemon that does not "
          "know hand",
          "[status][run-via-daemon]") {
  // A stand-in for an older daemon on the fleet's socket: it refuses `hand` as an unknown
  // request, answers `wait ID`, and reports a run once the spec shows up in the spool.
  Fleet fleet;
  const std::string spool = fleet.state_dir() + "/spool";
  const int listener = stand_in_socket(fleet);
  const std::string id = unique_id("hand-old");
  const std::string out_log = fleet.dir() + "/old.stdout", err_log = fleet.dir() + "/old.stderr";
  write_text(out_log, "from-the-old-daemon\n");
  write_text(err_log, "");

  auto server = std::async(std::launch::async, [&]() -> std::string {
    int c1 = accept_one(listener);
    if (c1 < 0) return "no first connection";
    const std::string first = read_line(c1);
    say(c1, {{"error", "unknown request (expected `status`, `wait ID`, `stop ID` or `kill ID`)"}});
    ::close(c1);
    if (first.rfind("hand " + id + " ", 0) != 0) return "first request: " + first;
    int c2 = accept_one(listener);
    if (c2 < 0) return "no second connection";
    const std::string second = read_line(c2);
    if (second != "wait " + id + "\n") {
      ::close(c2);
      return "second request: " + second;
    }
    say(c2, {{"event", "watching"}, {"id", id}});
    // The client renames the spec in only now: a visible entry, the staged name gone.
    std::string entry;
    eventually([&] {
      for (const auto& n : dir_entries(spool))
        if (!n.empty() && n[0] != '.') entry = n;
      return !entry.empty();
    }, 30s);
    say(c2, {{"event", "started"}, {"id", id}, {"runId", "r1"}, {"stdout", out_log},
             {"stderr", err_log}});
    say(c2, {{"event", "finished"}, {"id", id}, {"runId", "r1"}, {"exitStatus", 5},
             {"reason", "exited"}, {"forced", false}});
    ::close(c2);
    return entry;
  });
  auto r = run_process({CELLOS_REACTOR_BIN, "run", "-", "--via-daemon", "--config",
                        fleet.config_path()},
                       make_spec(id, {"/bin/true"}).dump());
  const std::string entry = server.get();
  ::close(listener);
  INFO(r.err);
  INFO(entry);
  CHECK(r.status == 5);
  CHECK(r.out == "from-the-old-daemon\n");
  // The spec went into the spool under its entry name, and no staged file was left behind.
  CHECK(entry.ends_with("-" + id + ".json"));
  CHECK(all_entries(spool) == std::vector<std::string>{entry});
}

TEST_CASE("run --via-daemon interrupted before the daemon took its spec withdraws it: nothing "
          "runs, exit 130",
          "[status][run-via-daemon]") {
  // A stand-in daemon that accepts `hand` and then does nothing: the spec stays staged.
  Fleet fleet;
  const std::string spool = fleet.state_dir() + "/spool";
  const int listener = stand_in_socket(fleet);
  const std::string id = unique_id("hand-int");
  const std::string spec_path = fleet.dir() + "/int.json", err_path = fleet.dir() + "/int.err";
  write_text(spec_path, make_spec(id, {"/bin/true"}).dump());
  const std::string bin = CELLOS_REACTOR_BIN;
  const std::string config = fleet.config_path();
  std::vector<const char*> argv{bin.c_str(), "run", spec_path.c_str(), "--via-daemon",
                                "--config", config.c_str(), nullptr};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = -1;
  REQUIRE(posix_spawn(&pid, argv[0], &fa, nullptr, const_cast<char**>(argv.data()), environ) == 0);
  posix_spawn_file_actions_destroy(&fa);
  int c = accept_one(listener);
  const std::string request = c >= 0 ? read_line(c) : "";
  // The client asked (its signals are a descriptor of its poll by now) and its spec is staged.
  const auto before = all_entries(spool);
  const bool staged = before.size() == 1 && before[0][0] == '.';
  ::kill(pid, SIGINT);
  int status = -1;
  const bool exited = eventually([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, 30s);
  if (!exited) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
  }
  if (c >= 0) ::close(c);
  ::close(listener);
  INFO(read_text(err_path));
  CHECK(request.rfind("hand " + id + " ", 0) == 0);
  CHECK(staged);
  REQUIRE(exited);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 128 + SIGINT);
  CHECK(read_text(err_path).find("nothing ran") != std::string::npos);
  CHECK(all_entries(spool).empty());
}
