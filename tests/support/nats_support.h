// A real nats-server with JetStream for fleet tests: loopback, a free port, a temp store dir,
// killed and removed with the test. Restartable on the same port and store (a server restart
// mid-run).
#pragma once

#include <sys/types.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/support/test_support.h"

namespace cellos::test {

struct NatsServerOptions {
  // The server's max_payload; 0 keeps its default (1 MiB).
  size_t max_payload = 0;
};

class NatsServer {
 public:
  explicit NatsServer(NatsServerOptions o = {});
  ~NatsServer();
  NatsServer(const NatsServer&) = delete;
  NatsServer& operator=(const NatsServer&) = delete;

  // Whether nats-server is installed (a test without it skips, saying so).
  static bool available();
  std::string url() const { return "nats://127.0.0.1:" + std::to_string(port_); }
  // SIGKILL, then start again on the same port and store dir.
  void restart();
  // SIGKILL only (restart() or start_again() brings it back).
  void kill();
  void start_again() { start(); }
  // One request over a fresh plain NATS connection (the protocol spoken by hand, so the tests
  // need no client library): the reply's payload, or "" when none came within 5 s.
  std::string request(const std::string& subject, const std::string& body) const;
  // A JetStream API call ($JS.API.<api>): the JSON reply (discarded when none).
  nlohmann::json js_api(const std::string& api, const nlohmann::json& body) const;
  // Messages a stream holds now (its state in the monitoring endpoint's /jsz); -1 when the
  // server does not know the stream (yet).
  long stream_messages(const std::string& stream) const;

 private:
  void start();
  void stop();
  NatsServerOptions o_;
  TempDir dir_;
  int port_ = 0, monitor_port_ = 0;
  pid_t pid_ = -1;
};

// Every record of a KV bucket, by key, parsed as JSON (the completion bucket's claims).
std::map<std::string, nlohmann::json> kv_records(const NatsServer& s, const std::string& bucket);

// `[intake.nats]` and `[events.nats]` tables for a Fleet's extra_toml.
std::string nats_toml(const NatsServer& s, int ack_wait_seconds = 3, bool events = true);

// `cellos-reactor events fetch --nats ... --subject CELLOS_EVENTS.<host>`: the stream's batches
// of one host, concatenated.
std::string fetch_events(const NatsServer& s, const std::string& host_id);

// `cellos-reactor submit --nats URL` of each spec; returns how many were accepted.
// The pid of the daemon's NATS companion (its child running cellos-reactor-nats), or -1.
pid_t companion_pid(pid_t daemon);

int submit_all(const NatsServer& s, const std::vector<std::string>& spec_jsons, const std::string& dir);

}  // namespace cellos::test
