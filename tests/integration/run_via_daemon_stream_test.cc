// `run --via-daemon` follows the cell's logs while it runs (reactor/cell_follower.h: re-read on
// a timer that backs off while nothing comes, no inotify): output written long after the start
// still reaches run's stdout before the cell ends, and the end is reported with everything the
// logs hold, through a daemon with a warm pool as through one without.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "tests/support/daemon_support.h"
#include "tests/support/test_support.h"

using namespace cellos::test;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

json sh_spec(const std::string& id, const std::string& script) {
  return make_spec(id, {"/bin/sh", "-c", script});
}

// `run SPEC --via-daemon` in the background, its stdout to `out_path`, its stderr to
// `err_path`.
pid_t start_via(const Fleet& fleet, const json& spec, const std::string& out_path,
                const std::string& err_path) {
  const std::string spec_path = fleet.dir() + "/" + spec["spec"]["id"].get<std::string>() + ".json";
  write_text(spec_path, spec.dump());
  const std::string bin = CELLOS_REACTOR_BIN;
  const std::string config = fleet.config_path();
  std::vector<const char*> argv{bin.c_str(), "run", spec_path.c_str(), "--via-daemon",
                                "--config", config.c_str(), nullptr};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &fa, nullptr, const_cast<char**>(argv.data()), environ);
  posix_spawn_file_actions_destroy(&fa);
  return rc == 0 ? pid : -1;
}

size_t completed(const Fleet& fleet, const std::string& id) {
  size_t n = 0;
  for (const auto& e : events_of(fleet, "command.v1.completed"))
    if (e.value("subject", "") == id) ++n;
  return n;
}

int reap(pid_t pid) {
  int status = -1;
  bool exited = eventually([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, 30s);
  if (!exited) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

TEST_CASE("run --via-daemon copies output written late in a long cell while the cell still runs",
          "[run-via-daemon]") {
  for (const char* pool : {"[pool]\nenabled = true\nsize = 1\n", "[pool]\nenabled = false\n"}) {
    INFO(pool);
    Fleet fleet(pool);
    DaemonProcess daemon(fleet);
    const std::string id = unique_id("via-late");
    const std::string out = fleet.dir() + "/late.out", err = fleet.dir() + "/late.err";
    // Past the first re-read and several backed-off ones: each line must still come through
    // while the cell is alive (it ends only when run is interrupted below).
    pid_t pid = start_via(fleet,
                          sh_spec(id, "sleep 1; echo late-1; echo late-err >&2; sleep 1; "
                                      "echo late-2; exec sleep 60"),
                          out, err);
    REQUIRE(pid > 0);
    const bool streamed = eventually(
        [&] { return read_text(out) == "late-1\nlate-2\n" && read_text(err) == "late-err\n"; }, 30s);
    // Still running: the lines came from the logs as they grew, not from the end of the cell.
    const bool running = completed(fleet, id) == 0;
    ::kill(pid, SIGINT);
    const int status = reap(pid);
    INFO(read_text(err));
    CHECK(streamed);
    CHECK(running);
    CHECK(status == 128 + SIGINT);
    daemon.signal(SIGTERM);
    CHECK(daemon.wait() == 0);
  }
}

TEST_CASE("run --via-daemon reports a short cell's whole output and status, pooled and cold",
          "[run-via-daemon]") {
  for (const char* pool : {"[pool]\nenabled = true\nsize = 1\n", "[pool]\nenabled = false\n"}) {
    INFO(pool);
    Fleet fleet(pool);
    DaemonProcess daemon(fleet);
    // Many runs in a row: each one's output is read once, at its end (a cell this short ends
    // before the first re-read), and nothing of one run shows in the next.
    for (int i = 0; i < 5; ++i) {
      const std::string id = unique_id("via-short");
      auto r = run_process({CELLOS_REACTOR_BIN, "run", "-", "--via-daemon", "--config",
                            fleet.config_path()},
                           sh_spec(id, "echo out-" + std::to_string(i) + "; echo err-" +
                                           std::to_string(i) + " >&2; exit " +
                                           std::to_string(i + 1))
                               .dump());
      INFO(r.err);
      CHECK(r.status == i + 1);
      CHECK(r.out == "out-" + std::to_string(i) + "\n");
      CHECK(r.err == "err-" + std::to_string(i) + "\n");
    }
    daemon.signal(SIGTERM);
    CHECK(daemon.wait() == 0);
  }
}
