// The NATS companion's weak paths, on a real nats-server: the companion killed (again and
// again, or after hanging past AckWait) while the daemon runs cells: the daemon restarts it and
// loses or doubles no spec and no batch; a daemon stopped while its companion restarts, or right
// after its last cell: its last batches are in the stream when it exits; and a spec over the
// size limit on the work queue: rejected and terminated, never run, nothing crashes.
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <map>
#include <thread>

#include "tests/support/daemon_support.h"
#include "tests/support/nats_support.h"

namespace cellos::test {
namespace {

using namespace std::chrono_literals;

std::vector<std::string> specs(const std::string& stem, int n, const std::vector<std::string>& argv,
                               std::vector<std::string>* ids) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) {
    ids->push_back(unique_id(stem));
    out.push_back(make_spec(ids->back(), argv).dump());
  }
  return out;
}

// How many events of a type each cell id has in the fleet's log.
std::map<std::string, int> per_cell(const Fleet& f, const std::string& suffix) {
  std::map<std::string, int> n;
  for (const auto& e : events_of(f, suffix)) ++n[e.value("subject", "")];
  return n;
}

bool all_of_ids(const std::map<std::string, int>& m, const std::vector<std::string>& ids) {
  for (const auto& id : ids)
    if (!m.count(id)) return false;
  return true;
}

void require_once_each(const std::map<std::string, int>& m, const std::vector<std::string>& ids,
                       const std::string& what) {
  std::vector<std::string> lost, twice;
  for (const auto& id : ids) {
    auto it = m.find(id);
    if (it == m.end()) lost.push_back(id);
    else if (it->second != 1) twice.push_back(id);
  }
  INFO(what << ": missing " << lost.size() << (lost.empty() ? "" : " e.g. " + lost[0]));
  INFO(what << ": more than once " << twice.size() << (twice.empty() ? "" : " e.g. " + twice[0]));
  REQUIRE(lost.empty());
  REQUIRE(twice.empty());
}

// Alive and not a zombie waiting for its reaper.
bool running(pid_t pid) {
  const std::string stat = read_text("/proc/" + std::to_string(pid) + "/stat");
  size_t close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z';
}

size_t count_of(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t at = hay.find(needle); at != std::string::npos; at = hay.find(needle, at + 1)) ++n;
  return n;
}

// The host's batches in the stream are its local log byte for byte, and verify as a log.
void require_stream_is_log(const NatsServer& s, const Fleet& f, std::chrono::seconds patience) {
  std::string stream;
  bool same = eventually([&] {
    stream = fetch_events(s, f.host_id());
    return stream == read_text(f.events_path());
  }, patience);
  INFO("stream " << stream.size() << " bytes, local log " << read_text(f.events_path()).size() << " bytes");
  REQUIRE(same);
  const std::string copy = f.dir() + "/from-stream.jsonl";
  write_text(copy, stream);
  auto v = run_process({CELLOS_REACTOR_BIN, "verify", copy});
  INFO(v.out << v.err);
  REQUIRE(v.status == 0);
}

constexpr const char* kSpecs = "CELLOS_SPECS";
constexpr const char* kCompletions = "KV_cellos-completions";

}  // namespace

TEST_CASE("nats companion: killed mid-run again and again it is restarted and every spec and batch goes through exactly once") {
  if (!NatsServer::available()) CELLOS_SKIP("nats-server is not installed");
  NatsServer server;
  Fleet fleet(nats_toml(server, 3), "batch_max_delay_ms = 5\n", "max_concurrent_cells = 4\n");
  DaemonProcess daemon(fleet);
  std::vector<std::string> ids;
  // Four slots and half-second cells: the queue is still long when the companion dies.
  auto jsons = specs("ck", 60, {"/bin/sleep", "0.5"}, &ids);
  REQUIRE(submit_all(server, jsons, fleet.dir()) == 60);
  // Killed three times while cells run, completions settle and batches are published; the
  // second and third time within the backoff streak of the first.
  std::vector<pid_t> pids;
  for (size_t after : {8u, 20u, 32u}) {
    REQUIRE(eventually([&] { return events_of(fleet, "command.v1.completed").size() >= after; }, 30s));
    const pid_t victim = companion_pid(daemon.pid());
    REQUIRE(victim > 0);
    pids.push_back(victim);
    REQUIRE(::kill(victim, SIGKILL) == 0);
    REQUIRE(eventually([&] {
      const pid_t next = companion_pid(daemon.pid());
      return next > 0 && next != victim;
    }, 15s));
  }
  const pid_t first = pids[0], last = companion_pid(daemon.pid());
  const size_t done_at_restart = events_of(fleet, "command.v1.completed").size();
  INFO("completed when the companion came back the last time: " << done_at_restart << " of 60");
  CHECK(done_at_restart < 60);  // it died mid-run, not after the work

  REQUIRE(eventually([&] { return all_of_ids(per_cell(fleet, "command.v1.completed"), ids); }, 40s));
  std::this_thread::sleep_for(1s);  // a spec run twice would show up now
  require_once_each(per_cell(fleet, "lifecycle.v1.started"), ids, "started");
  require_once_each(per_cell(fleet, "command.v1.completed"), ids, "completed");
  // The cells running when it died ran on, undisturbed.
  for (const auto& e : events_of(fleet, "command.v1.completed")) CHECK(e["data"].value("exitCode", -1) == 0);
  REQUIRE(running(daemon.pid()));
  CHECK(companion_pid(daemon.pid()) == last);  // it stayed up since
  const std::string err = daemon.err();
  INFO(err);
  // Said once for the streak, naming the pid that died first.
  CHECK(count_of(err, "NATS companion (pid " + std::to_string(first) + ") was killed by SIGKILL") == 1);
  CHECK(count_of(err, "NATS companion (pid") == 1);
  // Every spec settled: acked off the work queue, one completion record each.
  REQUIRE(eventually([&] {
    return server.stream_messages(kSpecs) == 0 && server.stream_messages(kCompletions) == 60;
  }, 15s));
  require_stream_is_log(server, fleet, 20s);

  daemon.signal(SIGTERM);
  REQUIRE(daemon.wait() == 0);
  CHECK(daemon.err().find("not yet acked") == std::string::npos);
  require_stream_is_log(server, fleet, 0s);
}

TEST_CASE("nats companion: hung past AckWait and then killed it lets no spec run twice on its host") {
  if (!NatsServer::available()) CELLOS_SKIP("nats-server is not installed");
  NatsServer server;
  // AckWait 3 s: a companion stopped for 5 s misses every heartbeat, so the server redelivers
  // the specs this host runs, waits for, or finished and has not acked yet.
  Fleet fleet(nats_toml(server, 3), "batch_max_delay_ms = 5\n", "max_concurrent_cells = 4\n");
  DaemonProcess daemon(fleet);
  std::vector<std::string> ids;
  auto jsons = specs("hk", 24, {"/bin/sleep", "0.5"}, &ids);
  REQUIRE(submit_all(server, jsons, fleet.dir()) == 24);
  REQUIRE(eventually([&] { return events_of(fleet, "command.v1.completed").size() >= 4; }, 30s));
  const pid_t hung = companion_pid(daemon.pid());
  REQUIRE(hung > 0);
  REQUIRE(::kill(hung, SIGSTOP) == 0);
  std::this_thread::sleep_for(5s);
  REQUIRE(::kill(hung, SIGKILL) == 0);
  REQUIRE(eventually([&] {
    const pid_t next = companion_pid(daemon.pid());
    return next > 0 && next != hung;
  }, 15s));
  REQUIRE(eventually([&] { return all_of_ids(per_cell(fleet, "command.v1.completed"), ids); }, 90s));
  std::this_thread::sleep_for(4s);  // past AckWait: a spec not settled would come again
  const std::string err = daemon.err();
  INFO(err);
  require_once_each(per_cell(fleet, "lifecycle.v1.started"), ids, "started");
  require_once_each(per_cell(fleet, "command.v1.completed"), ids, "completed");
  REQUIRE(eventually([&] {
    return server.stream_messages(kSpecs) == 0 && server.stream_messages(kCompletions) == 24;
  }, 15s));
  require_stream_is_log(server, fleet, 20s);
  daemon.signal(SIGTERM);
  REQUIRE(daemon.wait() == 0);
}

TEST_CASE("nats companion: a daemon stopped while its companion restarts still settles and publishes everything") {
  if (!NatsServer::available()) CELLOS_SKIP("nats-server is not installed");
  NatsServer server;
  Fleet fleet(nats_toml(server, 3), "batch_max_delay_ms = 5\n", "max_concurrent_cells = 4\n");
  DaemonProcess daemon(fleet);
  std::vector<std::string> ids;
  auto jsons = specs("sr", 16, {"/bin/sleep", "0.3"}, &ids);
  REQUIRE(submit_all(server, jsons, fleet.dir()) == 16);
  REQUIRE(eventually([&] { return events_of(fleet, "command.v1.completed").size() >= 4; }, 30s));
  const pid_t victim = companion_pid(daemon.pid());
  REQUIRE(victim > 0);
  REQUIRE(::kill(victim, SIGKILL) == 0);
  daemon.signal(SIGTERM);  // the companion is dead or restarting now
  REQUIRE(daemon.wait() == 0);
  const std::string err = daemon.err();
  INFO(err);
  // Under CPU load the daemon may give up waiting for the new companion's confirmations and
  // say "stopping with completions not yet acked" (seen in CI): the server's state below is
  // what must hold either way.
  if (err.find("not yet acked") != std::string::npos)
    WARN("the daemon stopped before hearing every settlement confirmation");
  // What started here finished once, and is acked and recorded; the rest is still queued.
  auto started = per_cell(fleet, "lifecycle.v1.started");
  std::vector<std::string> ran;
  for (const auto& id : ids)
    if (started.count(id)) ran.push_back(id);
  require_once_each(started, ran, "started");
  require_once_each(per_cell(fleet, "command.v1.completed"), ran, "completed");
  CHECK(server.stream_messages(kCompletions) == static_cast<long>(ran.size()));
  CHECK(server.stream_messages(kSpecs) == static_cast<long>(ids.size() - ran.size()));
  require_stream_is_log(server, fleet, 0s);
}

TEST_CASE("nats companion: a daemon stopped right after its last cell leaves every batch in the stream") {
  if (!NatsServer::available()) CELLOS_SKIP("nats-server is not installed");
  NatsServer server;
  // Events on NATS, specs from the spool: no completion to settle holds the daemon back, so
  // only its wait for the publisher stands between the last batches and the exit.
  Fleet fleet("[events.nats]\nurl = \"" + server.url() + "\"\n", "batch_max_delay_ms = 5\n",
              "max_concurrent_cells = 4\n");
  DaemonProcess daemon(fleet);
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) {
    ids.push_back(unique_id("st"));
    spool(fleet, make_spec(ids.back(), {"/bin/sleep", "1"}));
  }
  // Stopped while its last cells run: they finish in the grace period, and their completed and
  // destroyed events are the last batches, written as the daemon stops.
  REQUIRE(eventually([&] { return all_of_ids(per_cell(fleet, "lifecycle.v1.started"), ids); }, 30s));
  daemon.signal(SIGTERM);
  REQUIRE(daemon.wait() == 0);
  INFO(daemon.err());
  require_once_each(per_cell(fleet, "lifecycle.v1.destroyed"), ids, "destroyed");
  // No waiting: the daemon is gone, nothing publishes any more.
  require_stream_is_log(server, fleet, 0s);
}

TEST_CASE("nats companion: a spec over 1 MiB on the work queue is rejected and terminated and never runs") {
  if (!NatsServer::available()) CELLOS_SKIP("nats-server is not installed");
  // The server's default max_payload (1 MiB) would refuse it before it reaches the queue.
  NatsServer server(NatsServerOptions{4u << 20});
  Fleet fleet(nats_toml(server, 3), "batch_max_delay_ms = 5\n");
  DaemonProcess daemon(fleet);
  const std::string big_id = unique_id("big");
  auto big = make_spec(big_id, {"/bin/true"});
  big["spec"]["run"]["env"] = {{"PAD", std::string((1u << 20) + 4096, 'x')}};
  const std::string big_path = fleet.dir() + "/big.json";
  write_text(big_path, big.dump());

  // `submit --nats` refuses it before it is queued: one line naming the size.
  auto sub = run_process({CELLOS_REACTOR_BIN, "submit", "--nats", server.url(), big_path});
  INFO(sub.err);
  CHECK(sub.status == 125);
  CHECK(sub.err.find("1 MiB") != std::string::npos);
  CHECK(count_of(sub.err, "\n") == 1);
  REQUIRE(eventually([&] { return companion_pid(daemon.pid()) > 0; }, 10s));
  const pid_t companion = companion_pid(daemon.pid());

  // Published as raw bytes, the way any other NATS client could.
  const std::string nats_bin =
      std::string(CELLOS_REACTOR_BIN).substr(0, std::string(CELLOS_REACTOR_BIN).rfind('/') + 1) +
      "cellos-reactor-nats";
  auto pub = run_process({nats_bin, "publish", "--url", server.url(), "--stream", kSpecs, "--subject",
                          "cellos.specs"},
                         big.dump());
  INFO(pub.err);
  REQUIRE(pub.status == 0);
  // After it, a spec just under the limit (one datagram of almost a MiB between the companion
  // and the daemon) and a small one still run: the daemon and its companion carry on.
  std::vector<std::string> ids;
  auto small = specs("after", 1, {"/bin/true"}, &ids);
  const std::string near_id = unique_id("near");
  auto near = make_spec(near_id, {"/bin/true"});
  // Ten values of 100 kB: each under execve's per-string limit, together near the spec limit.
  for (int i = 0; i < 10; ++i)
    near["spec"]["run"]["env"]["PAD" + std::to_string(i)] = std::string(100000, 'y');
  const size_t near_size = near.dump().size();
  REQUIRE(near_size > 1000000);
  REQUIRE(near_size <= (1u << 20));
  ids.push_back(near_id);
  small.push_back(near.dump());
  REQUIRE(submit_all(server, small, fleet.dir()) == 2);
  REQUIRE(eventually([&] { return all_of_ids(per_cell(fleet, "command.v1.completed"), ids); }, 30s));
  REQUIRE(eventually([&] { return !events_of(fleet, "lifecycle.v1.rejected").empty(); }, 10s));

  for (const auto& e : events_of(fleet, "command.v1.completed")) CHECK(e["data"].value("exitCode", -1) == 0);
  auto rejected = events_of(fleet, "lifecycle.v1.rejected");
  REQUIRE(rejected.size() == 1);
  const std::string reason = rejected[0]["data"].value("reason", "");
  INFO(reason);
  CHECK(reason.find("over the 1 MiB") != std::string::npos);
  CHECK(reason.find("stream seq") != std::string::npos);
  CHECK(reason.find('\n') == std::string::npos);
  CHECK(per_cell(fleet, "lifecycle.v1.started").count(big_id) == 0);
  CHECK(running(daemon.pid()));
  CHECK(companion_pid(daemon.pid()) == companion);
  CHECK(daemon.err().find("NATS companion (pid") == std::string::npos);
  // Terminated: off the queue for good, never redelivered.
  REQUIRE(eventually([&] { return server.stream_messages(kSpecs) == 0; }, 10s));
  std::this_thread::sleep_for(4s);  // past AckWait: a spec not terminated would come again
  CHECK(events_of(fleet, "lifecycle.v1.rejected").size() == 1);

  daemon.signal(SIGTERM);
  REQUIRE(daemon.wait() == 0);
}

}  // namespace cellos::test
