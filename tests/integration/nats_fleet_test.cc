// Fleets on NATS JetStream: three daemons share one work queue and one event stream on a real
// nats-server (loopback, free port, temp store). Every spec runs exactly once, across a host
// killed with SIGKILL and across a server restart, and the stream holds exactly the local logs'
// batches, which `cellos-reactor verify` accepts.
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <map>
#include <memory>
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
    const std::string id = unique_id(stem);
    ids->push_back(id);
    out.push_back(make_spec(id, argv).dump());
  }
  return out;
}

// Completed events per cell id, over the fleets' local logs.
std::map<std::string, int> completions(const std::vector<std::unique_ptr<Fleet>>& fleets) {
  std::map<std::string, int> n;
  for (const auto& f : fleets)
    for (const auto& e : events_of(*f, "command.v1.completed")) ++n[e.value("subject", "")];
  return n;
}

size_t total(const std::map<std::string, int>& m) {
  size_t t = 0;
  for (const auto& [id, c] : m) t += static_cast<size_t>(c);
  return t;
}

std::vector<std::unique_ptr<Fleet>> three_fleets(const NatsServer& s, int ack_wait_s, int slots) {
  std::vector<std::unique_ptr<Fleet>> f;
  for (int i = 0; i < 3; ++i)
    f.push_back(std::make_unique<Fleet>(nats_toml(s, ack_wait_s), "batch_max_delay_ms = 5\n",
                                        "max_concurrent_cells = " + std::to_string(slots) + "\n"));
  return f;
}

// What each host's log and stderr say about a spec, and its record: for a failure's message.
std::string trace(const std::string& id, const std::vector<std::unique_ptr<Fleet>>& fleets,
                  const std::vector<std::unique_ptr<DaemonProcess>>& daemons, const NatsServer& server) {
  std::string out = "spec " + id + ":\n";
  for (size_t i = 0; i < fleets.size(); ++i) {
    for (const auto& e : fleets[i]->events())
      if (e.value("subject", "") == id)
        out += "  host " + fleets[i]->host_id() + " " + e.value("type", "") + " " + e.value("time", "") + "\n";
    const std::string err = daemons[i]->err();
    for (size_t at = err.find(id); at != std::string::npos; at = err.find(id, at + 1)) {
      size_t from = err.rfind('\n', at), to = err.find('\n', at);
      out += "  stderr " + fleets[i]->host_id() + ": " +
             err.substr(from == std::string::npos ? 0 : from + 1, to - (from == std::string::npos ? 0 : from + 1)) + "\n";
      at = to == std::string::npos ? err.size() : to;
      if (at >= err.size()) break;
    }
  }
  for (const auto& [key, r] : kv_records(server, "cellos-completions"))
    if (r.is_object() && r.value("specId", "") == id) out += "  record " + key + " " + r.dump() + "\n";
  return out;
}

void require_exactly_once(const std::map<std::string, int>& done, const std::vector<std::string>& ids) {
  std::vector<std::string> lost, twice;
  for (const auto& id : ids) {
    auto it = done.find(id);
    if (it == done.end()) lost.push_back(id);
    else if (it->second > 1) twice.push_back(id);
  }
  INFO("lost: " << lost.size() << (lost.empty() ? "" : " e.g. " + lost[0]));
  INFO("ran twice: " << twice.size() << (twice.empty() ? "" : " e.g. " + twice[0]));
  REQUIRE(lost.empty());
  REQUIRE(twice.empty());
}

}  // namespace

TEST_CASE("nats fleet: three daemons share 500 specs and run each exactly once") {
  if (!NatsServer::available()) CELLOS_SKIP("nats-server is not installed");
  NatsServer server;
  auto fleets = three_fleets(server, 5, 8);
  std::vector<std::unique_ptr<DaemonProcess>> daemons;
  for (auto& f : fleets) daemons.push_back(std::make_unique<DaemonProcess>(*f));
  std::vector<std::string> ids;
  auto jsons = specs("q", 500, {"/bin/true"}, &ids);
  REQUIRE(submit_all(server, jsons, fleets[0]->dir()) == 500);
  bool all = eventually([&] { return total(completions(fleets)) >= 500; }, 150s);
  std::this_thread::sleep_for(1s);  // a spec run twice would show up now
  auto done = completions(fleets);
  INFO("completed " << total(done) << " of 500");
  REQUIRE(all);
  require_exactly_once(done, ids);
  int hosts_used = 0;
  for (auto& f : fleets) hosts_used += !events_of(*f, "command.v1.completed").empty();
  CHECK(hosts_used >= 2);  // the queue is shared, not taken by one host
  for (auto& d : daemons) d->signal(SIGTERM);
  for (auto& d : daemons) REQUIRE(d->wait() == 0);
}

TEST_CASE("nats fleet: a daemon killed with SIGKILL mid-run loses no spec and runs none twice") {
  if (!NatsServer::available()) CELLOS_SKIP("nats-server is not installed");
  NatsServer server;
  auto fleets = three_fleets(server, 3, 3);
  std::vector<std::unique_ptr<DaemonProcess>> daemons;
  for (auto& f : fleets) daemons.push_back(std::make_unique<DaemonProcess>(*f));
  std::vector<std::string> ids;
  // Nine slots and one-second cells: the queue is still long when the host dies.
  auto jsons = specs("k", 120, {"/bin/sleep", "1"}, &ids);
  REQUIRE(submit_all(server, jsons, fleets[0]->dir()) == 120);
  // Killed while it runs cells of its own.
  REQUIRE(eventually([&] { return events_of(*fleets[0], "command.v1.completed").size() >= 3; }, 60s));
  daemons[0]->signal(SIGKILL);
  REQUIRE(daemons[0]->wait() == 128 + SIGKILL);
  const size_t started_on_killed = events_of(*fleets[0], "lifecycle.v1.started").size();
  const size_t completed_on_killed = events_of(*fleets[0], "command.v1.completed").size();
  INFO("killed host started " << started_on_killed << ", completed " << completed_on_killed);
  bool all = eventually([&] {
    auto d = completions(fleets);
    for (const auto& id : ids)
      if (!d.count(id)) return false;
    return true;
  }, 120s);
  std::this_thread::sleep_for(1s);
  auto done = completions(fleets);
  INFO("completed " << total(done) << " of 120");
  {
    std::string why;  // what each host and the bucket say about a spec lost or run twice
    for (const auto& id : ids)
      if (!done.count(id) || done[id] > 1) why += trace(id, fleets, daemons, server);
    INFO(why);
    REQUIRE(all);
    require_exactly_once(done, ids);
  }
  // The killed host's cells that never finished were redelivered elsewhere after AckWait.
  CHECK(started_on_killed > completed_on_killed);
  // Its restart reports what it lost and runs none of it again.
  {
    // The dead daemon's socket file is still there: DaemonProcess waits for a fresh one.
    ::unlink((fleets[0]->state_dir() + "/reactor.sock").c_str());
    DaemonProcess again(*fleets[0]);
    again.signal(SIGTERM);
    REQUIRE(again.wait() == 0);
  }
  require_exactly_once(completions(fleets), ids);
  for (size_t i = 1; i < daemons.size(); ++i) daemons[i]->signal(SIGTERM);
  for (size_t i = 1; i < daemons.size(); ++i) REQUIRE(daemons[i]->wait() == 0);
}

TEST_CASE("nats fleet: a server restart mid-run loses and duplicates no event in the stream") {
  if (!NatsServer::available()) CELLOS_SKIP("nats-server is not installed");
  NatsServer server;
  auto fleets = three_fleets(server, 5, 6);
  std::vector<std::unique_ptr<DaemonProcess>> daemons;
  for (auto& f : fleets) daemons.push_back(std::make_unique<DaemonProcess>(*f));
  std::vector<std::string> ids;
  auto jsons = specs("r", 150, {"/bin/sleep", "0.1"}, &ids);
  REQUIRE(submit_all(server, jsons, fleets[0]->dir()) == 150);
  REQUIRE(eventually([&] { return total(completions(fleets)) >= 30; }, 60s));
  server.restart();
  bool all = eventually([&] {
    auto d = completions(fleets);
    for (const auto& id : ids)
      if (!d.count(id)) return false;
    return true;
  }, 120s);
  REQUIRE(all);
  {
    std::string why;
    for (const auto& [id, n] : completions(fleets))
      if (n > 1) why += trace(id, fleets, daemons, server);
    INFO(why);
    require_exactly_once(completions(fleets), ids);
  }
  // Each host's batches in the stream are exactly its local log, byte for byte, once the
  // publisher caught up; and they verify as a log of their own.
  for (auto& f : fleets) {
    std::string stream;
    bool same = eventually([&] {
      stream = fetch_events(server, f->host_id());
      return stream == read_text(f->events_path());
    }, 30s);
    INFO("host " << f->host_id() << ": stream " << stream.size() << " bytes, local log "
                 << read_text(f->events_path()).size() << " bytes");
    REQUIRE(same);
    const std::string copy = f->dir() + "/from-stream.jsonl";
    write_text(copy, stream);
    auto v = run_process({CELLOS_REACTOR_BIN, "verify", copy});
    INFO(v.out << v.err);
    REQUIRE(v.status == 0);
  }
  for (auto& d : daemons) {
    INFO(d->err());
    CHECK(d->err().find("disconnected") != std::string::npos);
  }
  for (auto& d : daemons) d->signal(SIGTERM);
  for (auto& d : daemons) REQUIRE(d->wait() == 0);
}

}  // namespace cellos::test
