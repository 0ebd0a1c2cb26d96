// The spool's file handling and the metrics text, without a daemon.
#include "reactor/spool.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "reactor/metrics.h"
#include "tests/support/test_support.h"

namespace cellos::reactor {
namespace {

using test::read_text;
using test::TempDir;
using test::write_text;
namespace fs = std::filesystem;

TEST_CASE("spool: entries are listed oldest first, dot files are skipped", "[spool]") {
  TempDir t;
  StateDirs dirs(t.path());
  REQUIRE(dirs.make().ok());
  write_text(dirs.spool + "/b.json", "{}");
  write_text(dirs.spool + "/a.json", "{}");
  write_text(dirs.spool + "/.c.json.tmp", "{}");
  // b is older than a, whatever the names say.
  timespec times[2] = {{1000, 0}, {1000, 0}};
  REQUIRE(::utimensat(AT_FDCWD, (dirs.spool + "/b.json").c_str(), times, 0) == 0);
  CHECK(scan_spool(dirs) == std::vector<std::string>{"b.json", "a.json"});
}

TEST_CASE("spool: submit_to_spool renames a whole file in, and names sort by time", "[spool]") {
  TempDir t;
  StateDirs dirs(t.path());
  auto first = submit_to_spool(dirs, "c1", "{\"x\":1}");
  auto second = submit_to_spool(dirs, "c2", "{\"x\":2}");
  REQUIRE(first.ok());
  REQUIRE(second.ok());
  CHECK(*first < *second);
  CHECK(read_text(*first) == "{\"x\":1}");
  for (const auto& e : fs::directory_iterator(dirs.spool))
    CHECK(e.path().filename().string()[0] != '.');  // no temp file left behind
}

TEST_CASE("spool: entries that are not regular files are refused with the reason", "[spool]") {
  TempDir t;
  StateDirs dirs(t.path());
  REQUIRE(dirs.make().ok());
  REQUIRE(::mkfifo((dirs.spool + "/fifo.json").c_str(), 0644) == 0);
  fs::create_directory(dirs.spool + "/dir.json");
  fs::create_symlink("/etc/hostname", dirs.spool + "/link.json");
  write_text(dirs.spool + "/ok.json", "{\"spec\":1}");
  auto fifo = read_spool_entry(dirs, "fifo.json");
  REQUIRE_FALSE(fifo.ok());
  CHECK(fifo.error().message().find("not a regular file") != std::string::npos);
  CHECK_FALSE(read_spool_entry(dirs, "dir.json").ok());
  auto link = read_spool_entry(dirs, "link.json");
  REQUIRE_FALSE(link.ok());
  CHECK(link.error().err == ELOOP);  // O_NOFOLLOW: a symlink is never followed
  auto ok = read_spool_entry(dirs, "ok.json");
  REQUIRE(ok.ok());
  CHECK(*ok == "{\"spec\":1}");
  CHECK(read_spool_entry(dirs, "gone.json").error().err == ENOENT);
}

TEST_CASE("spool: a rejected entry moves beside a one-line .error file", "[spool]") {
  TempDir t;
  StateDirs dirs(t.path());
  REQUIRE(dirs.make().ok());
  write_text(dirs.spool + "/bad.json", "{");
  REQUIRE(move_to_rejected(dirs, "bad.json", "spec: invalid JSON\nsecond line").ok());
  CHECK_FALSE(fs::exists(dirs.spool + "/bad.json"));
  CHECK(read_text(dirs.rejected + "/bad.json") == "{");
  CHECK(read_text(dirs.rejected + "/bad.json.error") == "spec: invalid JSON second line\n");
  auto active = move_to_active(dirs, "missing.json", "c1");
  CHECK(active.error().err == ENOENT);
}

TEST_CASE("metrics: the Prometheus text has every family, cumulative buckets and labels",
          "[metrics]") {
  Metrics m;
  m.started = 3;
  m.rejected = 1;
  m.finished["exited"] = 2;
  m.finished["timeout"] = 1;
  m.failed["timeout"] = 1;
  m.failed["lost"] = 4;
  m.running = 5;
  m.waiting = 6;
  m.events_written = 42;
  m.observe_spawn(std::chrono::microseconds(1500));  // 1.5 ms
  m.observe_spawn(std::chrono::milliseconds(30));
  std::string text = m.render("h1");
  for (const char* line : {
           "# TYPE cellos_cells_started_total counter",
           "cellos_cells_started_total{host=\"h1\"} 3",
           "cellos_cells_rejected_total{host=\"h1\"} 1",
           "cellos_cells_finished_total{host=\"h1\",reason=\"exited\"} 2",
           "cellos_cells_succeeded_total{host=\"h1\"} 0",
           "cellos_cell_oom_kills_total{host=\"h1\"} 0",
           "cellos_cells_failed_total{host=\"h1\",reason=\"lost\"} 4",
           "cellos_cells_running{host=\"h1\"} 5",
           "cellos_cells_waiting{host=\"h1\"} 6",
           "# TYPE cellos_spawn_latency_seconds histogram",
           "cellos_spawn_latency_seconds_bucket{host=\"h1\",le=\"0.001\"} 0",
           "cellos_spawn_latency_seconds_bucket{host=\"h1\",le=\"0.002\"} 1",
           "cellos_spawn_latency_seconds_bucket{host=\"h1\",le=\"0.05\"} 2",
           "cellos_spawn_latency_seconds_bucket{host=\"h1\",le=\"+Inf\"} 2",
           "cellos_spawn_latency_seconds_count{host=\"h1\"} 2",
           "cellos_events_written_total{host=\"h1\"} 42",
       }) {
    INFO(line);
    CHECK(text.find(std::string(line) + "\n") != std::string::npos);
  }
  CHECK(m.finished_total() == 3);
  CHECK(m.failed_total() == 5);
  // Every family has a HELP line saying what it counts.
  for (const char* family : {"cellos_cells_finished_total", "cellos_cells_succeeded_total",
                             "cellos_cells_failed_total", "cellos_cell_oom_kills_total",
                             "cellos_cell_cpu_seconds_total", "cellos_cells_rejected_total"}) {
    INFO(family);
    CHECK(text.find(std::string("# HELP ") + family + " ") != std::string::npos);
  }
}

TEST_CASE("metrics: a finished cell counts as finished, and as succeeded or failed by reason, "
          "with its OOM kills and CPU time",
          "[metrics]") {
  Metrics m;
  cells::CellOutcome ok;
  ok.exit_code = 0;
  ok.resources = sinks::ResourcesData{};
  ok.resources->cpu_usage_usec = 1500000;
  m.observe_finished(ok);
  cells::CellOutcome nonzero;
  nonzero.exit_code = 2;
  m.observe_finished(nonzero);
  cells::CellOutcome oom;
  oom.reason = sinks::CompletedReason::kOom;
  oom.exit_code = 2;
  oom.resources = sinks::ResourcesData{};
  oom.resources->oom_kills = 3;
  oom.resources->cpu_usage_usec = 500000;
  m.observe_finished(oom);
  cells::CellOutcome shutdown;
  shutdown.reason = sinks::CompletedReason::kShutdown;
  shutdown.signal = 9;
  m.observe_finished(shutdown);

  CHECK(m.finished_total() == 4);
  CHECK(m.finished["exited"] == 2);
  CHECK(m.finished["oom"] == 1);
  CHECK(m.succeeded == 1);
  CHECK(m.failed["exit_nonzero"] == 1);
  CHECK(m.failed["oom"] == 1);
  CHECK(m.failed["shutdown"] == 1);
  CHECK(m.oom_kills == 3);
  CHECK(m.cpu_seconds == Approx(2.0));
  const std::string text = m.render("h");
  CHECK(text.find("cellos_cell_oom_kills_total{host=\"h\"} 3\n") != std::string::npos);
  CHECK(text.find("cellos_cells_failed_total{host=\"h\",reason=\"shutdown\"} 1\n") !=
        std::string::npos);
}

}  // namespace
}  // namespace cellos::reactor
