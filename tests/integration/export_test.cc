// spec.export on real cells: artifacts copied to a local export directory and PUT to a real
// HTTP server on loopback (python3's http.server, run by the test), with SHA-256 and size in
// the export event; escapes through symlinks refused; caps; a required artifact that fails
// fails the cell; and a cell whose export is stuck on a slow server does not hold up another.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "tests/support/daemon_support.h"
#include "tests/support/test_support.h"

extern char** environ;

namespace cellos::test {
namespace {

using Catch::Contains;

constexpr const char* kServer = R"PY(
import http.server, os, sys, time
root, portfile, gate = sys.argv[1], sys.argv[2], sys.argv[3]
class H(http.server.BaseHTTPRequestHandler):
    def do_PUT(self):
        n = int(self.headers.get('Content-Length', 0))
        body = self.rfile.read(n)
        if gate:
            open(gate + '.started', 'w').close()
            while not os.path.exists(gate):
                time.sleep(0.02)
        path = os.path.normpath(self.path).lstrip('/')
        if 'redirect' in path:
            self.send_response(307)
            self.send_header('Location', self.path.replace('redirect', 'moved'))
            self.send_header('Content-Length', '0')
            self.end_headers()
            return
        if path.startswith('..') or 'refuse' in path:
            self.send_response(500)
            self.send_header('Content-Length', '0')
            self.end_headers()
            return
        dest = os.path.join(root, path)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, 'wb') as f:
            f.write(body)
        self.send_response(201)
        self.send_header('Content-Length', '0')
        self.end_headers()
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), H)
with open(portfile + '.tmp', 'w') as f:
    f.write(str(s.server_address[1]))
os.rename(portfile + '.tmp', portfile)
s.serve_forever()
)PY";

// A PUT server on 127.0.0.1 (an ephemeral port), storing bodies under root(). With a gate, each
// PUT touches GATE.started and waits until GATE exists.
class PutServer {
 public:
  explicit PutServer(const std::string& gate = "") {
    write_text(dir_.path() + "/server.py", kServer);
    root_ = dir_.path() + "/received";
    const std::string portfile = dir_.path() + "/port";
    std::vector<std::string> args{"/usr/bin/python3", dir_.path() + "/server.py", root_, portfile, gate};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, argv[0], nullptr, nullptr, argv.data(), environ) != 0) pid_ = -1;
    REQUIRE(pid_ > 0);
    REQUIRE(eventually([&] { return path_exists(portfile); }, std::chrono::seconds(20)));
    url_ = "http://127.0.0.1:" + read_text(portfile) + "/artifacts";
  }
  ~PutServer() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  const std::string& url() const { return url_; }
  const std::string& root() const { return root_; }

 private:
  TempDir dir_;
  pid_t pid_ = -1;
  std::string root_, url_;
};

std::string sha256_of(const std::string& path) {
  auto p = run_process({"/usr/bin/sha256sum", path});
  return p.out.substr(0, 64);
}

std::vector<nlohmann::json> exports_of(const std::vector<nlohmann::json>& events, const std::string& id) {
  std::vector<nlohmann::json> out;
  for (const auto& e : events)
    if (e.value("subject", "") == id && e.value("type", "") == "dev.cellos.events.cell.export.v1.completed")
      out.push_back(e["data"]);
  return out;
}

// The data of cell `id`'s first event whose type ends with `suffix`, or null.
nlohmann::json event_of(const std::vector<nlohmann::json>& events, const std::string& id,
                        const std::string& suffix) {
  for (const auto& e : events) {
    const std::string type = e.value("type", "");
    if (e.value("subject", "") == id && type.size() >= suffix.size() &&
        type.compare(type.size() - suffix.size(), suffix.size(), suffix) == 0)
      return e["data"];
  }
  return nullptr;
}

nlohmann::json artifact(const std::string& name, const std::string& path, bool required = false) {
  nlohmann::json a = {{"name", name}, {"path", path}};
  if (required) a["required"] = true;
  return a;
}

TEST_CASE("artifacts go to the export directory and the HTTP target with their SHA-256", "[export]") {
  if (::access("/usr/bin/python3", X_OK) != 0) CELLOS_SKIP("no /usr/bin/python3 for the HTTP server");
  PutServer server;
  TempDir out;
  Fleet fleet("[export]\ndir = \"" + out.path() + "/exports\"\nhttp_url = \"" + server.url() + "\"\n");
  const std::string id = unique_id("exp");
  auto spec = make_spec(id, {"/bin/sh", "-c",
                             "mkdir -p out/tree/sub && echo report > out/report.txt && "
                             "echo one > out/tree/a && echo two > out/tree/sub/b && "
                             "ln -s /etc/passwd out/tree/link && echo scratch > /tmp/notes && exit 0"});
  spec["spec"]["export"] = {{"artifacts", {artifact("report", "/work/out/report.txt"),
                                           artifact("tree", "/work/out/tree"),
                                           artifact("notes", "/tmp/notes")}}};
  auto r = fleet.run(spec.dump());
  INFO(r.err);
  REQUIRE(r.status == 0);
  const std::string run_id = r.event("lifecycle.v1.started")["runId"];
  auto ex = exports_of(r.events, id);
  REQUIRE(ex.size() == 3);

  // The file: copied, hashed, and PUT.
  const std::string local = out.path() + "/exports/" + id + "/" + run_id + "/report";
  CHECK(read_text(local) == "report\n");
  struct stat st {};
  REQUIRE(::stat(local.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0644);
  REQUIRE(::stat((out.path() + "/exports/" + id).c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0755);
  CHECK(ex[0]["name"] == "report");
  CHECK(ex[0]["succeeded"] == true);
  CHECK(ex[0]["sizeBytes"] == 7);
  CHECK(ex[0]["sha256"] == sha256_of(local));
  REQUIRE(ex[0]["receipts"].size() == 2);
  CHECK(ex[0]["receipts"][0]["targetKind"] == "LocalPath");
  CHECK(ex[0]["receipts"][0]["destination"] == local);
  CHECK(ex[0]["receipts"][1]["targetKind"] == "HTTP");
  CHECK(ex[0]["receipts"][1]["succeeded"] == true);
  CHECK(read_text(server.root() + "/artifacts/" + id + "/" + run_id + "/report") == "report\n");

  // The directory: its regular files (the symlink is left out, never followed), and the
  // SHA-256 of its manifest.
  const std::string tree = out.path() + "/exports/" + id + "/" + run_id + "/tree";
  CHECK(read_text(tree + "/a") == "one\n");
  CHECK(read_text(tree + "/sub/b") == "two\n");
  CHECK_FALSE(path_exists(tree + "/link"));
  CHECK(ex[1]["files"] == 2);
  CHECK(ex[1]["sizeBytes"] == 8);
  const std::string manifest = sha256_of(tree + "/a") + "  a\n" + sha256_of(tree + "/sub/b") + "  sub/b\n";
  write_text(out.path() + "/manifest", manifest);
  CHECK(ex[1]["sha256"] == sha256_of(out.path() + "/manifest"));
  CHECK(read_text(server.root() + "/artifacts/" + id + "/" + run_id + "/tree/sub/b") == "two\n");
  // The cell's /tmp is held too.
  CHECK(ex[2]["succeeded"] == true);
  CHECK(read_text(out.path() + "/exports/" + id + "/" + run_id + "/notes") == "scratch\n");
  CHECK(r.event("lifecycle.v1.destroyed")["outcome"] == "succeeded");
}

TEST_CASE("artifact failures are named and only a required one fails the cell", "[export]") {
  TempDir out;
  Fleet fleet("[export]\ndir = \"" + out.path() + "\"\nmax_artifact_bytes = 1000\n");
  const std::string id = unique_id("expfail");
  auto spec = make_spec(id, {"/bin/sh", "-c",
                             "ln -s /etc/passwd link; mkdir d; ln -s / d/root; "
                             "head -c 5000 /dev/zero > big; echo ok > small"});
  spec["spec"]["export"] = {{"artifacts", {artifact("link", "/work/link"),
                                           artifact("through", "/work/d/root/etc/passwd"),
                                           artifact("missing", "/work/nothing"),
                                           artifact("big", "/work/big"),
                                           artifact("small", "/work/small")}}};
  auto r = fleet.run(spec.dump());
  INFO(r.err);
  CHECK(r.status == 0);  // nothing required
  auto ex = exports_of(r.events, id);
  REQUIRE(ex.size() == 5);
  CHECK_THAT(ex[0]["error"].get<std::string>(), Contains("/work/link: a component is a symlink"));
  CHECK_THAT(ex[1]["error"].get<std::string>(), Contains("a component is a symlink"));
  CHECK_THAT(ex[2]["error"].get<std::string>(), Contains("/work/nothing: No such file or directory"));
  CHECK_THAT(ex[3]["error"].get<std::string>(), Contains("over [export] max_artifact_bytes (1000)"));
  for (int i = 0; i < 4; ++i) CHECK(ex[i]["succeeded"] == false);
  CHECK(ex[4]["succeeded"] == true);
  CHECK(r.event("lifecycle.v1.destroyed")["outcome"] == "succeeded");
  // Nothing of the host's came out through the links.
  const std::string run_id = r.event("lifecycle.v1.started")["runId"];
  CHECK(dir_entries(out.path() + "/" + id + "/" + run_id) == std::vector<std::string>{"small"});

  // The same missing artifact, required: the command's success does not make the cell's.
  const std::string req = unique_id("expreq");
  spec = make_spec(req, {"/bin/true"});
  spec["spec"]["export"] = {{"artifacts", {artifact("missing", "/work/nothing", true)}}};
  r = fleet.run(spec.dump());
  CHECK(r.status == 125);
  CHECK_THAT(r.err, Contains("spec.export.artifacts: required artifact missing was not exported: "
                             "/work/nothing: No such file or directory"));
  auto d = event_of(r.events, req, "lifecycle.v1.destroyed");
  CHECK(d["outcome"] == "failed");
  CHECK(d["reason"] == "export_failed");

  // [export] helper names the helper binary; one that cannot start fails every artifact.
  Fleet broken("[export]\ndir = \"" + out.path() + "\"\nhelper = \"/nonexistent/cellos-export\"\n");
  const std::string bid = unique_id("expbroken");
  spec = make_spec(bid, {"/bin/sh", "-c", "echo ok > small"});
  spec["spec"]["export"] = {{"artifacts", {artifact("small", "/work/small")}}};
  r = broken.run(spec.dump());
  CHECK(r.status == 0);
  ex = exports_of(r.events, bid);
  REQUIRE(ex.size() == 1);
  CHECK(ex[0]["succeeded"] == false);
  CHECK_THAT(ex[0]["error"].get<std::string>(),
             Contains("export: posix_spawn(export helper \"/nonexistent/cellos-export\"): No such file"));
}

TEST_CASE("[export] max_cell_bytes caps all artifacts of a cell together", "[export]") {
  TempDir out;
  Fleet fleet("[export]\ndir = \"" + out.path() + "\"\nmax_cell_bytes = 1500\n");
  const std::string id = unique_id("expcap");
  auto spec = make_spec(id, {"/bin/sh", "-c", "head -c 1000 /dev/zero > a; head -c 1000 /dev/zero > b"});
  spec["spec"]["export"] = {{"artifacts", {artifact("a", "/work/a"), artifact("b", "/work/b")}}};
  auto r = fleet.run(spec.dump());
  CHECK(r.status == 0);
  auto ex = exports_of(r.events, id);
  REQUIRE(ex.size() == 2);
  CHECK(ex[0]["succeeded"] == true);
  CHECK(ex[1]["succeeded"] == false);
  CHECK_THAT(ex[1]["error"].get<std::string>(), Contains("pass [export] max_cell_bytes (1500)"));
}

TEST_CASE("a failing HTTP target is named in the receipt", "[export]") {
  if (::access("/usr/bin/python3", X_OK) != 0) CELLOS_SKIP("no /usr/bin/python3 for the HTTP server");
  PutServer server;
  Fleet fleet("[export]\nhttp_url = \"" + server.url() + "/refuse\"\n");
  const std::string id = unique_id("exphttp");
  auto spec = make_spec(id, {"/bin/sh", "-c", "echo x > f"});
  spec["spec"]["export"] = {{"artifacts", {artifact("f", "/work/f")}}};
  auto r = fleet.run(spec.dump());
  CHECK(r.status == 0);
  auto ex = exports_of(r.events, id);
  REQUIRE(ex.size() == 1);
  CHECK(ex[0]["succeeded"] == false);
  REQUIRE(ex[0]["receipts"].size() == 1);
  CHECK(ex[0]["receipts"][0]["targetKind"] == "HTTP");
  CHECK_THAT(ex[0]["receipts"][0]["error"].get<std::string>(), Contains("HTTP status 500"));
  CHECK(ex[0]["sha256"].is_string());  // read fine: only the target failed

  // A redirect is not followed: the export went nowhere else.
  Fleet redirected("[export]\nhttp_url = \"" + server.url() + "/redirect\"\n");
  const std::string rid = unique_id("expredir");
  spec = make_spec(rid, {"/bin/sh", "-c", "echo x > f"});
  spec["spec"]["export"] = {{"artifacts", {artifact("f", "/work/f")}}};
  r = redirected.run(spec.dump());
  ex = exports_of(r.events, rid);
  REQUIRE(ex.size() == 1);
  REQUIRE(ex[0]["receipts"].size() == 1);
  CHECK_THAT(ex[0]["receipts"][0]["error"].get<std::string>(), Contains("HTTP status 307"));
  CHECK_FALSE(path_exists(server.root() + "/artifacts/moved"));

  // A target that never answers: the helper gives up at [export] timeout_seconds and says so.
  TempDir gates;
  PutServer stuck(gates.path() + "/never");
  Fleet slow("[export]\nhttp_url = \"" + stuck.url() + "\"\ntimeout_seconds = 1\n");
  const std::string sid = unique_id("expstuck");
  spec = make_spec(sid, {"/bin/sh", "-c", "echo x > f"});
  spec["spec"]["export"] = {{"artifacts", {artifact("f", "/work/f")}}};
  r = slow.run(spec.dump());
  CHECK(r.status == 0);
  ex = exports_of(r.events, sid);
  REQUIRE(ex.size() == 1);
  CHECK(ex[0]["succeeded"] == false);
  REQUIRE(ex[0]["receipts"].size() == 1);
  CHECK_THAT(ex[0]["receipts"][0]["error"].get<std::string>(), Contains("timed out"));
}

TEST_CASE("a daemon stopped for good stops a cell's export too", "[export]") {
  if (::access("/usr/bin/python3", X_OK) != 0) CELLOS_SKIP("no /usr/bin/python3 for the HTTP server");
  TempDir gates;
  const std::string gate = gates.path() + "/never";
  PutServer server(gate);
  Fleet fleet("[export]\nhttp_url = \"" + server.url() + "\"\n", "", "shutdown_grace_seconds = 3600\n");
  DaemonProcess daemon(fleet);
  const std::string id = unique_id("expstop");
  auto a = make_spec(id, {"/bin/sh", "-c", "echo data > f"});
  a["spec"]["export"] = {{"artifacts", {artifact("f", "/work/f")}}};
  spool(fleet, a);
  REQUIRE(eventually([&] { return path_exists(gate + ".started"); }));
  // The first SIGTERM waits for running cells; the second signal kills them, exports included.
  daemon.signal(SIGTERM);
  REQUIRE(eventually([&] { return daemon.err().find("intake stopped") != std::string::npos; }));
  daemon.signal(SIGINT);
  CHECK(daemon.wait(std::chrono::seconds(30)) == 0);
  auto ex = exports_of(fleet.events(), id);
  REQUIRE(ex.size() == 1);
  CHECK(ex[0]["succeeded"] == false);
  CHECK_THAT(ex[0]["error"].get<std::string>(), Contains("the export was stopped"));
  CHECK(event_of(fleet.events(), id, "lifecycle.v1.destroyed").is_object());
}

TEST_CASE("bad export declarations are rejected naming the field", "[export]") {
  TempDir out;
  Fleet fleet("[export]\ndir = \"" + out.path() + "\"\n");
  Fleet none;
  auto with = [](nlohmann::json artifacts) {
    auto spec = make_spec(unique_id("expbad"), {"/bin/true"});
    spec["spec"]["export"] = {{"artifacts", artifacts}};
    return spec.dump();
  };
  struct Case {
    const Fleet* fleet;
    std::string spec, expected;
  };
  const std::vector<Case> cases = {
      {&fleet, with({artifact("a", "/work/../etc/passwd")}), "spec.export.artifacts[0].path: must be a normalized"},
      {&fleet, with({artifact("a", "/etc/passwd")}), "spec.export.artifacts[0].path: \"/etc/passwd\" is not inside the workspace (/work) or /tmp"},
      {&fleet, with({artifact("a", "/work")}), "spec.export.artifacts[0].path"},
      {&fleet, with({artifact("../x", "/work/x")}), "spec.export.artifacts[0].name"},
      {&fleet, with({artifact("a", "/work/x"), artifact("a", "/work/y")}), "spec.export.artifacts[1].name: \"a\" is named twice"},
      {&none, with({artifact("a", "/work/x")}), "spec.export.artifacts: this fleet has no export target"},
  };
  for (const auto& c : cases) {
    auto r = c.fleet->run(c.spec);
    INFO(c.spec);
    CHECK(r.status == 125);
    CHECK_THAT(r.err, Contains(c.expected));
  }
}

TEST_CASE("a cell stuck exporting to a slow server does not hold up another", "[export]") {
  if (::access("/usr/bin/python3", X_OK) != 0) CELLOS_SKIP("no /usr/bin/python3 for the HTTP server");
  TempDir gates;
  const std::string gate = gates.path() + "/release";
  PutServer server(gate);
  Fleet fleet("[export]\nhttp_url = \"" + server.url() + "\"\n", "", "max_concurrent_cells = 4\n");
  DaemonProcess daemon(fleet);
  const std::string slow = unique_id("expslow"), quick = unique_id("quick");
  auto a = make_spec(slow, {"/bin/sh", "-c", "echo data > f"});
  a["spec"]["export"] = {{"artifacts", {artifact("f", "/work/f")}}};
  spool(fleet, a);
  // The slow cell's command is done and its export is waiting on the server.
  REQUIRE(eventually([&] { return path_exists(gate + ".started"); }));
  spool(fleet, make_spec(quick, {"/bin/true"}));
  auto destroyed = [&](const std::string& id) {
    for (const auto& e : events_of(fleet, "lifecycle.v1.destroyed"))
      if (e["data"]["cellId"] == id) return true;
    return false;
  };
  CHECK(eventually([&] { return destroyed(quick); }));
  // The first is still exporting: its teardown waits for its own export only.
  CHECK_FALSE(destroyed(slow));
  write_text(gate, "");
  REQUIRE(eventually([&] { return destroyed(slow); }));
  auto ex = exports_of(fleet.events(), slow);
  REQUIRE(ex.size() == 1);
  CHECK(ex[0]["succeeded"] == true);
  daemon.signal(SIGTERM);
  CHECK(daemon.wait() == 0);
}

}  // namespace
}  // namespace cellos::test

namespace cellos::test {
namespace {

TEST_CASE("a CellOS spec with all five fields (export, correlation, identity, gracefulShutdownSeconds, "
          "runtimeBroker secrets), a bare argv[0] and an input runs",
          "[export][inputs][correlation][identity][broker]") {
  TempDir checkouts, out, keys, secrets;
  const std::string checkout = checkouts.path() + "/job-1";
  ::mkdir(checkout.c_str(), 0755);
  write_text(checkout + "/Makefile", "all:\n");
  ::chmod((checkout + "/Makefile").c_str(), 0644);
  REQUIRE(run_process({CELLOS_REACTOR_BIN, "keygen", "--out", keys.path(), "--name", "identity"})
              .status == 0);
  write_text(secrets.path() + "/NPM_TOKEN", "npm-secret-value");
  Fleet fleet("[export]\ndir = \"" + out.path() + "\"\n[policy.input_grants]\n\"" +
              checkouts.path() + "\" = [\"ci-*\"]\n[identity]\nsigning_key = \"" + keys.path() +
              "/identity.key\"\n[secrets]\ndir = \"" + secrets.path() +
              "\"\n[secrets.grants]\nNPM_TOKEN = [\"ci-*\"]\n");
  const std::string id = unique_id("ci-all");
  // The command: builds from its input, fetches its secret and its identity token from the
  // broker (only their lengths reach the artifact), and has a TERM trap its grace would run.
  const std::string script =
      "trap 'exit 143' TERM; cp src/Makefile result.txt && echo built >> result.txt && " +
      fleet.probe() + " broker-get \"$CELLOS_SECRET_BROKER\" NPM_TOKEN CELLOS_IDENTITY_TOKEN > "
      "/tmp/got && grep -c ' = ' /tmp/got >> result.txt && { env | grep -c NPM_TOKEN || true; } >> result.txt";
  nlohmann::json spec = nlohmann::json::parse(R"({"apiVersion":"cellos.io/v1","kind":"ExecutionCell",
    "spec":{"authority":{"secretRefs":["NPM_TOKEN"]},"lifetime":{"ttlSeconds":60},
            "correlation":{"correlationId":"github:octo/repo/run/7"},
            "identity":{"audience":"https://artifacts.example"},
            "run":{"secretDelivery":"runtimeBroker","limits":{"gracefulShutdownSeconds":5}},
            "export":{"artifacts":[{"name":"result","path":"/work/result.txt","required":true}]}}})");
  spec["spec"]["id"] = id;
  spec["spec"]["run"]["argv"] = {"sh", "-c", script};
  spec["spec"]["inputs"] = {{{"hostPath", checkout}, {"path", "/work/src"}}};
  auto r = fleet.run(spec.dump());
  INFO(r.err);
  CHECK(r.status == 0);
  const std::string run_id = r.event("lifecycle.v1.started")["runId"];
  CHECK(r.event("lifecycle.v1.started")["argv0Path"] == "/usr/bin/sh");
  // The input read, both values served by the broker, the secret in no environment variable.
  CHECK(read_text(out.path() + "/" + id + "/" + run_id + "/result") == "all:\nbuilt\n2\n0\n");
  for (const auto& e : r.events) {
    INFO(e.value("type", ""));
    if (e.value("subject", "") == id) CHECK(e["correlationid"] == "github:octo/repo/run/7");
  }
  CHECK(r.event("identity.v1.materialized")["audience"] == "https://artifacts.example");
  CHECK(r.event("export.v1.completed")["succeeded"] == true);
  CHECK(r.event("lifecycle.v1.destroyed")["outcome"] == "succeeded");
  for (const auto& line : fleet.log_records())
    CHECK(line.dump().find("npm-secret-value") == std::string::npos);
}

}  // namespace
}  // namespace cellos::test

namespace cellos::test {
namespace {

TEST_CASE("a CellOS spec with correlation, a bare argv[0], an input and artifacts runs", "[export][inputs][correlation]") {
  TempDir checkouts, out;
  const std::string checkout = checkouts.path() + "/job-1";
  ::mkdir(checkout.c_str(), 0755);
  write_text(checkout + "/Makefile", "all:\n");
  ::chmod((checkout + "/Makefile").c_str(), 0644);
  Fleet fleet("[export]\ndir = \"" + out.path() + "\"\n[policy.input_grants]\n\"" + checkouts.path() +
              "\" = [\"ci-*\"]\n");
  const std::string id = unique_id("ci-all");
  nlohmann::json spec = nlohmann::json::parse(R"({"apiVersion":"cellos.io/v1","kind":"ExecutionCell",
    "spec":{"authority":{"secretRefs":[]},"lifetime":{"ttlSeconds":60},
            "correlation":{"correlationId":"github:octo/repo/run/7"},
            "run":{"secretDelivery":"env",
                   "argv":["sh","-c","cp src/Makefile result.txt && echo built >> result.txt"]},
            "export":{"artifacts":[{"name":"result","path":"/work/result.txt","required":true}]}}})");
  spec["spec"]["id"] = id;
  spec["spec"]["inputs"] = {{{"hostPath", checkout}, {"path", "/work/src"}}};
  auto r = fleet.run(spec.dump());
  INFO(r.err);
  CHECK(r.status == 0);
  const std::string run_id = r.event("lifecycle.v1.started")["runId"];
  CHECK(read_text(out.path() + "/" + id + "/" + run_id + "/result") == "all:\nbuilt\n");
  for (const auto& e : r.events)
    if (e.value("subject", "") == id) CHECK(e["correlationid"] == "github:octo/repo/run/7");
  CHECK(r.event("lifecycle.v1.destroyed")["outcome"] == "succeeded");
}

}  // namespace
}  // namespace cellos::test
