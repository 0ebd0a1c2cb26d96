// What the integration tests share: a throwaway fleet (state dir + fleet.toml), running the
// real `cellos-reactor run` binary, and reading back its events.
#pragma once

#include <sys/types.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace cellos::test {

// Catch2 2.x has no SKIP(): print the reason in the form CTest's SKIP_REGULAR_EXPRESSION
// recognises, and leave the test case.
#define CELLOS_SKIP(reason)                                 \
  do {                                                      \
    std::printf("SKIPPED: %s\n", std::string(reason).c_str()); \
    return;                                                 \
  } while (0)

// mkdtemp under /var/tmp; removed (recursively) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct RunResult {
  int status = -1;  // exit status of `cellos-reactor run`, or 128+N if a signal ended it
  std::string out, err;
  std::vector<nlohmann::json> events;
  // The data of the first event of this type suffix ("lifecycle.v1.started"), or null.
  nlohmann::json event(const std::string& type_suffix) const;
};

struct ProcessResult {
  int status = -1;
  std::string out, err;
};

// Runs argv with stdin from `input`, collecting stdout and stderr. Gives up (SIGKILL) after
// `timeout_s` seconds so a hung reactor fails its test instead of stalling CI.
ProcessResult run_process(const std::vector<std::string>& argv, const std::string& input = "",
                          int timeout_s = 60);

// A fleet of one: its own state dir, event log and host id (so its cgroups never collide with
// another test's), and a fleet.toml allowing the probe binary as argv[0].
class Fleet {
 public:
  // events_toml: more [events] keys (the table itself is the fleet's, holding its log path);
  // host_toml: more [host] keys (max_concurrent_cells = 4, ...).
  explicit Fleet(const std::string& extra_toml = "", const std::string& events_toml = "",
                 const std::string& host_toml = "");
  // Removes the fleet's cgroup parents (cellos/<host id>), which `run` keeps for the next cell.
  ~Fleet();
  const std::string& config_path() const { return config_; }
  const std::string& state_dir() const { return state_; }
  const std::string& events_path() const { return events_; }
  const std::string& host_id() const { return host_id_; }
  const std::string& dir() const { return dir_.path(); }
  // The probe program as cells of this fleet run it.
  const std::string& probe() const { return probe_; }

  // `cellos-reactor run - --config <fleet.toml>` with the spec on stdin.
  RunResult run(const std::string& spec_json, const std::vector<std::string>& extra = {},
                int timeout_s = 60) const;
  // `cellos-reactor run <dir>/spec.json --config <fleet.toml>` started in the background, its
  // stdout to /dev/null: for tests that signal or kill the reactor mid-run. The caller reaps it.
  pid_t start_run(const std::string& spec_json) const;
  // Every cell event in the log so far (the log's own records, batch manifests and gaps, left
  // out).
  std::vector<nlohmann::json> events() const;
  // Every line of the log, manifests included.
  std::vector<nlohmann::json> log_records() const;

 private:
  TempDir dir_;
  std::string host_id_, state_, events_, config_, probe_;
};

// A unique, valid cell id for this test process.
std::string unique_id(const std::string& stem);

// {"apiVersion":..., "kind":..., "spec":{"id":id, "run":{"argv":argv}}} to extend in place.
nlohmann::json make_spec(const std::string& id, const std::vector<std::string>& argv);

// The probe program that runs inside cells (tests/support/cell_probe.cc).
std::string probe_path();

// pids of host processes whose command line contains `marker`.
std::vector<int> processes_with(const std::string& marker);

bool path_exists(const std::string& path);
std::string read_text(const std::string& path);
void write_text(const std::string& path, const std::string& text);

}  // namespace cellos::test
