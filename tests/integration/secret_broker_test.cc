// secretDelivery runtimeBroker / runtimeLeasedBroker on real cells: the cell reads its secret
// through /run/cellos/secrets.sock and never finds it in its environment; undeclared names, a
// second read of a leased secret and a peer outside the cell are refused; every access is an
// event naming the secret, never its value; the socket is gone once the command exits; another
// cell cannot reach it.
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "tests/support/daemon_support.h"
#include "tests/support/test_support.h"

namespace cellos::test {
namespace {

using Catch::Contains;
using Json = nlohmann::json;

// A fleet whose [secrets] dir holds NPM_TOKEN and OTHER_SECRET, both granted to every cell.
struct SecretFleet {
  TempDir secrets;
  std::string token = "npm-" + unique_id("v");
  std::string other = "other-" + unique_id("v");
  std::unique_ptr<Fleet> fleet;
  explicit SecretFleet(const std::string& extra = "") {
    write_text(secrets.path() + "/NPM_TOKEN", token + "\n");
    write_text(secrets.path() + "/OTHER_SECRET", other + "\n");
    fleet = std::make_unique<Fleet>("[secrets]\ndir = \"" + secrets.path() +
                                    "\"\n[secrets.grants]\nNPM_TOKEN = [\"*\"]\n"
                                    "OTHER_SECRET = [\"*\"]\n" + extra);
  }
  std::string broker_dir(const std::string& id) const {
    return fleet->state_dir() + "/broker/" + id;
  }
};

Json broker_spec(const std::string& id, const std::string& delivery,
                 const std::vector<std::string>& refs, const std::string& script) {
  Json s = make_spec(id, {"/bin/sh", "-c", script});
  s["spec"]["authority"]["secretRefs"] = refs;
  s["spec"]["run"]["secretDelivery"] = delivery;
  return s;
}

std::vector<Json> of_type(const std::vector<Json>& events, const std::string& suffix,
                          const std::string& cell) {
  std::vector<Json> out;
  for (const auto& e : events)
    if (e.value("type", "").ends_with(suffix) && e.value("subject", "") == cell)
      out.push_back(e["data"]);
  return out;
}

// Index of the first event of this type for this cell in the log, or -1.
int position(const std::vector<Json>& events, const std::string& suffix, const std::string& cell) {
  for (size_t i = 0; i < events.size(); ++i)
    if (events[i].value("type", "").ends_with(suffix) && events[i].value("subject", "") == cell)
      return static_cast<int>(i);
  return -1;
}

// Connects to a unix socket from this (host, root) process; the first reply line, or why not.
std::string host_request(const std::string& path, const std::string& request) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() + 1 > sizeof a.sun_path) return "path too long";
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    std::string why = std::string("connect: ") + std::strerror(errno);
    ::close(s);
    return why;
  }
  // The broker may answer and close before the request is written: no SIGPIPE for that.
  (void)!::send(s, request.data(), request.size(), MSG_NOSIGNAL);
  timeval tv{10, 0};
  ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string got;
  char buf[512];
  ssize_t n;
  while ((n = ::read(s, buf, sizeof buf)) > 0) got.append(buf, static_cast<size_t>(n));
  ::close(s);
  return got;
}

bool wait_for_path(const std::string& path) {
  // A deadline for a hung reactor, not a timed assertion.
  for (int i = 0; i < 1000; ++i) {
    if (path_exists(path)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

}  // namespace

TEST_CASE("runtimeBroker: the cell reads its secret through the socket, never from its "
          "environment, and undeclared names are refused",
          "[secrets][broker]") {
  SecretFleet sf;
  const std::string id = unique_id("broker");
  const std::string script = "env; echo ---; " + sf.fleet->probe() +
                             " broker-get \"$CELLOS_SECRET_BROKER\" NPM_TOKEN NPM_TOKEN OTHER_SECRET "
                             "'BAD NAME' " + std::string(600, 'A');
  auto r = sf.fleet->run(broker_spec(id, "runtimeBroker", {"NPM_TOKEN"}, script).dump());
  INFO(r.err);
  INFO(r.out);
  REQUIRE(r.status == 0);
  const std::string env = r.out.substr(0, r.out.find("---"));
  CHECK_THAT(env, Contains("CELLOS_SECRET_BROKER=/run/cellos/secrets.sock"));
  CHECK(env.find(sf.token) == std::string::npos);
  CHECK(env.find("NPM_TOKEN") == std::string::npos);
  const std::string got = r.out.substr(r.out.find("---"));
  // Served as often as asked: runtimeBroker has no lease.
  CHECK(got.find("NPM_TOKEN = " + sf.token + "\n") != std::string::npos);
  CHECK(got.find("NPM_TOKEN = " + sf.token + "\n", got.find(sf.token) + 1) != std::string::npos);
  // Granted by the fleet, but not declared by this spec.
  CHECK_THAT(got, Contains("OTHER_SECRET refused: ERR not_declared"));
  CHECK(got.find(sf.other) == std::string::npos);
  CHECK_THAT(got, Contains("BAD NAME refused: ERR malformed_request"));
  CHECK_THAT(got, Contains(std::string(600, 'A') + " refused: ERR malformed_request"));

  auto access = of_type(r.events, "secrets.v1.access_decision", id);
  REQUIRE(access.size() == 5);
  CHECK(access[0]["secretName"] == "NPM_TOKEN");
  CHECK(access[0]["decision"] == "allow");
  CHECK(access[0]["reasonCode"] == "granted");
  CHECK(access[0]["delivery"] == "runtimeBroker");
  CHECK(access[0]["peerPid"].get<int64_t>() > 0);
  CHECK(access[1]["decision"] == "allow");
  CHECK(access[2]["secretName"] == "OTHER_SECRET");
  CHECK(access[2]["decision"] == "deny");
  CHECK(access[2]["reasonCode"] == "not_declared");
  CHECK(access[3]["reasonCode"] == "malformed_request");
  CHECK(access[4]["reasonCode"] == "malformed_request");
  auto revoked = of_type(r.events, "secrets.v1.revoked", id);
  REQUIRE(revoked.size() == 1);
  CHECK(revoked[0]["secretNames"] == Json{"NPM_TOKEN"});
  CHECK(revoked[0]["served"] == 2);
  CHECK(revoked[0]["refused"] == 3);
  CHECK(revoked[0]["reason"] == "command_exited");
  // Revoked when the command exited: before the cell's completed and destroyed events.
  CHECK(position(r.events, "secrets.v1.revoked", id) <
        position(r.events, "command.v1.completed", id));
  // The values appear in no event and no line of the log.
  const std::string log = read_text(sf.fleet->events_path());
  CHECK(log.find(sf.token) == std::string::npos);
  CHECK(log.find(sf.other) == std::string::npos);
  // The endpoint is gone from the host.
  CHECK_FALSE(path_exists(sf.broker_dir(id)));
}

TEST_CASE("the Python client docs/identity.md shows reads a secret from the broker",
          "[secrets][broker]") {
  if (::access("/usr/bin/python3", X_OK) != 0) CELLOS_SKIP("no /usr/bin/python3 on this host");
  const std::string doc = read_text(std::string(CELLOS_SOURCE_DIR) + "/docs/identity.md");
  const auto at = doc.find("python3 -c '");
  REQUIRE(at != std::string::npos);
  const std::string line = doc.substr(at, doc.find('\n', at) - at);
  SecretFleet sf;
  const std::string id = unique_id("pyclient");
  Json spec = broker_spec(id, "runtimeBroker", {"NPM_TOKEN"}, "PATH=/usr/bin:/bin; " + line);
  auto r = sf.fleet->run(spec.dump());
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(r.out == sf.token + "\n");
}

TEST_CASE("runtimeLeasedBroker: each secret is served once per run", "[secrets][broker]") {
  SecretFleet sf;
  const std::string id = unique_id("leased");
  const std::string script = sf.fleet->probe() +
                             " broker-get \"$CELLOS_SECRET_BROKER\" NPM_TOKEN NPM_TOKEN OTHER_SECRET";
  auto r = sf.fleet->run(
      broker_spec(id, "runtimeLeasedBroker", {"NPM_TOKEN", "OTHER_SECRET"}, script).dump());
  INFO(r.err);
  INFO(r.out);
  REQUIRE(r.status == 0);
  CHECK_THAT(r.out, Contains("NPM_TOKEN = " + sf.token + "\n"));
  CHECK_THAT(r.out, Contains("NPM_TOKEN refused: ERR lease_consumed"));
  CHECK_THAT(r.out, Contains("OTHER_SECRET = " + sf.other + "\n"));
  auto access = of_type(r.events, "secrets.v1.access_decision", id);
  REQUIRE(access.size() == 3);
  CHECK(access[0]["decision"] == "allow");
  CHECK(access[1]["decision"] == "deny");
  CHECK(access[1]["reasonCode"] == "lease_consumed");
  CHECK(access[1]["delivery"] == "runtimeLeasedBroker");
  CHECK(access[2]["decision"] == "allow");
  auto revoked = of_type(r.events, "secrets.v1.revoked", id);
  REQUIRE(revoked.size() == 1);
  CHECK(revoked[0]["secretNames"] == Json{"NPM_TOKEN", "OTHER_SECRET"});
  CHECK_FALSE(path_exists(sf.broker_dir(id)));
}

TEST_CASE("the broker serves only its own cell: a host process is refused, another cell cannot "
          "reach the socket, and it is gone when the command ends",
          "[secrets][broker]") {
  SecretFleet sf;
  const std::string a = unique_id("holder");
  const std::string sock = sf.broker_dir(a) + "/secrets.sock";
  pid_t run = sf.fleet->start_run(
      broker_spec(a, "runtimeBroker", {"NPM_TOKEN"}, "exec " + sf.fleet->probe() + " sleep 60")
          .dump());
  REQUIRE(run > 0);
  struct Reap {
    pid_t pid;
    ~Reap() {
      if (pid > 0) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
      }
    }
  } reap{run};
  REQUIRE(wait_for_path(sock));

  // Root on the host reaches the path but is no process of the cell: refused, and evented.
  const std::string reply = host_request(sock, "GET NPM_TOKEN\n");
  CHECK_THAT(reply, Contains("ERR peer_not_in_cell"));
  CHECK(reply.find(sf.token) == std::string::npos);

  // A host process with the cell's own uid (the broker directory's owner) but outside the cell's
  // pid namespace: refused too. It reaches the socket through a descriptor of the directory,
  // since the test's own directories are closed to that uid.
  struct stat dst{};
  REQUIRE(::stat(sf.broker_dir(a).c_str(), &dst) == 0);
  const uid_t cell_uid = dst.st_uid;
  REQUIRE(cell_uid != 0);
  int dfd = ::open(sf.broker_dir(a).c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  REQUIRE(dfd >= 0);
  int pipefd[2];
  REQUIRE(::pipe2(pipefd, O_CLOEXEC) == 0);
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    std::string got = "setuid failed";
    if (::setgroups(0, nullptr) == 0 && ::setgid(cell_uid) == 0 && ::setuid(cell_uid) == 0)
      got = host_request("/proc/self/fd/" + std::to_string(dfd) + "/secrets.sock",
                         "GET NPM_TOKEN\n");
    (void)!::write(pipefd[1], got.data(), got.size());
    ::_exit(0);
  }
  ::close(pipefd[1]);
  ::close(dfd);
  std::string same_uid;
  char buf[512];
  ssize_t n;
  while ((n = ::read(pipefd[0], buf, sizeof buf)) > 0) same_uid.append(buf, static_cast<size_t>(n));
  ::close(pipefd[0]);
  ::waitpid(child, nullptr, 0);
  CHECK_THAT(same_uid, Contains("ERR peer_not_in_cell"));
  CHECK(same_uid.find(sf.token) == std::string::npos);

  // Another cell: the holder's directory is not in its view, and its own broker (holding only
  // OTHER_SECRET) does not serve the holder's secret.
  const std::string b = unique_id("other");
  auto rb = sf.fleet->run(broker_spec(b, "runtimeBroker", {"OTHER_SECRET"},
                                      sf.fleet->probe() + " broker-get " + sock + " NPM_TOKEN; " +
                                          sf.fleet->probe() +
                                          " broker-get \"$CELLOS_SECRET_BROKER\" NPM_TOKEN")
                              .dump());
  INFO(rb.err);
  INFO(rb.out);
  CHECK_THAT(rb.out, Contains("broker " + sock + " failed: ENOENT"));
  CHECK_THAT(rb.out, Contains("NPM_TOKEN refused: ERR not_declared"));
  CHECK(rb.out.find(sf.token) == std::string::npos);

  // The holder's command ends (its run is stopped): the socket and its directory go.
  ::kill(run, SIGTERM);
  int st = 0;
  REQUIRE(::waitpid(run, &st, 0) == run);
  reap.pid = -1;
  CHECK_FALSE(path_exists(sock));
  CHECK_FALSE(path_exists(sf.broker_dir(a)));
  auto events = sf.fleet->events();
  auto access = of_type(events, "secrets.v1.access_decision", a);
  REQUIRE(access.size() == 2);
  CHECK(access[0]["decision"] == "deny");
  CHECK(access[0]["reasonCode"] == "peer_not_in_cell");
  CHECK(access[0]["peerUid"] == 0);
  CHECK(access[1]["reasonCode"] == "peer_not_in_cell");
  CHECK(access[1]["peerUid"] == cell_uid);
  auto revoked = of_type(events, "secrets.v1.revoked", a);
  REQUIRE(revoked.size() == 1);
  CHECK(revoked[0]["served"] == 0);
  CHECK(revoked[0]["refused"] == 2);
  CHECK(read_text(sf.fleet->events_path()).find(sf.token) == std::string::npos);
}

TEST_CASE("require_runtime_secret_delivery: an env-delivery spec with secrets runs nothing",
          "[secrets][policy]") {
  SecretFleet sf("[policy]\nrequire_runtime_secret_delivery = true\n");
  const std::string id = unique_id("envdelivery");
  Json spec = make_spec(id, {"/bin/true"});
  spec["spec"]["authority"]["secretRefs"] = {"NPM_TOKEN"};
  auto r = sf.fleet->run(spec.dump());
  CHECK(r.status == 125);
  CHECK_THAT(r.err, Contains("spec.run.secretDelivery") &&
                        Contains("require_runtime_secret_delivery"));
  CHECK(of_type(r.events, "lifecycle.v1.started", id).empty());
  // The same spec with runtime delivery runs.
  spec["spec"]["run"]["secretDelivery"] = "runtimeBroker";
  auto ok = sf.fleet->run(spec.dump());
  INFO(ok.err);
  CHECK(ok.status == 0);
}

TEST_CASE("the fleet daemon: two cells at once each get their own secret and are refused the "
          "other's",
          "[secrets][broker][daemon]") {
  SecretFleet sf;
  DaemonProcess daemon(*sf.fleet);
  const std::string a = unique_id("dbra"), b = unique_id("dbrb");
  // Two cells of one daemon, each with a broker of its own; each also tries the other's host
  // path (first: a refused connect exits 1, the last command's status is the cell's).
  auto spec = [&](const std::string& id, const std::string& mine, const std::string& theirs,
                  const std::string& other_id) {
    const std::string other_sock = sf.broker_dir(other_id) + "/secrets.sock";
    return broker_spec(id, "runtimeBroker", {mine},
                       sf.fleet->probe() + " broker-get " + other_sock + " " + theirs + "; " +
                           sf.fleet->probe() + " broker-get \"$CELLOS_SECRET_BROKER\" " + mine +
                           " " + theirs);
  };
  spool(*sf.fleet, spec(a, "NPM_TOKEN", "OTHER_SECRET", b));
  spool(*sf.fleet, spec(b, "OTHER_SECRET", "NPM_TOKEN", a));
  REQUIRE(eventually([&] { return events_of(*sf.fleet, "lifecycle.v1.destroyed").size() == 2; }));
  const std::string out_a = read_text(sf.fleet->state_dir() + "/logs/" + a + "/stdout");
  const std::string out_b = read_text(sf.fleet->state_dir() + "/logs/" + b + "/stdout");
  INFO(out_a);
  INFO(out_b);
  CHECK_THAT(out_a, Contains("NPM_TOKEN = " + sf.token + "\n"));
  CHECK_THAT(out_a, Contains("OTHER_SECRET refused: ERR not_declared"));
  CHECK(out_a.find(sf.other) == std::string::npos);
  CHECK_THAT(out_b, Contains("OTHER_SECRET = " + sf.other + "\n"));
  CHECK_THAT(out_b, Contains("NPM_TOKEN refused: ERR not_declared"));
  CHECK(out_b.find(sf.token) == std::string::npos);
  // The other cell's host path is not in a cell's view.
  CHECK_THAT(out_a, Contains("failed: ENOENT"));
  CHECK_THAT(out_b, Contains("failed: ENOENT"));
  for (const auto& d : events_of(*sf.fleet, "lifecycle.v1.destroyed"))
    CHECK(d["data"]["outcome"] == "succeeded");
  CHECK_FALSE(path_exists(sf.broker_dir(a)));
  CHECK_FALSE(path_exists(sf.broker_dir(b)));
  daemon.signal(SIGTERM);
  CHECK(daemon.wait() == 0);
}

TEST_CASE("a broker left by a daemon that died is removed when the next one starts",
          "[secrets][broker][daemon]") {
  SecretFleet sf;
  const std::string id = unique_id("dbrlost");
  {
    DaemonProcess daemon(*sf.fleet);
    spool(*sf.fleet, broker_spec(id, "runtimeBroker", {"NPM_TOKEN"},
                                 "exec " + sf.fleet->probe() + " sleep 300"));
    REQUIRE(eventually([&] { return path_exists(sf.broker_dir(id) + "/secrets.sock"); }));
    daemon.signal(SIGKILL);
    CHECK(daemon.wait() == 128 + SIGKILL);
  }
  CHECK(path_exists(sf.broker_dir(id)));
  DaemonProcess again(*sf.fleet);
  REQUIRE(eventually([&] { return !events_of(*sf.fleet, "lifecycle.v1.destroyed").empty(); }));
  CHECK_FALSE(path_exists(sf.broker_dir(id)));
  again.signal(SIGTERM);
  CHECK(again.wait() == 0);
}

}  // namespace cellos::test
