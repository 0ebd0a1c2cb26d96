#include "tests/support/nats_support.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <thread>

#include "tests/support/daemon_support.h"

extern char** environ;

namespace cellos::test {
namespace {

constexpr const char* kServer = "/usr/sbin/nats-server";

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("no free port");
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

bool accepts(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// HTTP/1.0 GET on the loopback: the body, or "" when nothing answers.
std::string http_get(int port, const std::string& path) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    const std::string req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (::write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size())) {
      char buf[8192];
      for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
    }
  }
  ::close(fd);
  size_t body = out.find("\r\n\r\n");
  return body == std::string::npos ? "" : out.substr(body + 4);
}

// The payload of the first MSG on `sock` after what was sent, answering the server's PINGs.
std::string read_reply(int fd) {
  std::string in;
  char buf[16384];
  for (;;) {
    size_t eol;
    while ((eol = in.find("\r\n")) != std::string::npos) {
      const std::string line = in.substr(0, eol);
      if (line.rfind("MSG ", 0) == 0) {
        const size_t len = std::stoul(line.substr(line.rfind(' ') + 1));
        if (in.size() < eol + 2 + len + 2) break;  // the payload is still coming
        return in.substr(eol + 2, len);
      }
      if (line == "PING") (void)::write(fd, "PONG\r\n", 6);
      in.erase(0, eol + 2);
    }
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return "";
    in.append(buf, static_cast<size_t>(n));
  }
}

std::string base64_decode(const std::string& in) {
  static const std::string abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    size_t v = abc.find(c);
    if (v == std::string::npos) continue;  // '=' padding
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

}  // namespace

std::string NatsServer::request(const std::string& subject, const std::string& body) const {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port_));
  std::string reply;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    const std::string out = "CONNECT {\"verbose\":false,\"pedantic\":false}\r\nSUB _INBOX.test 1\r\n"
                            "PUB " + subject + " _INBOX.test " + std::to_string(body.size()) + "\r\n" +
                            body + "\r\n";
    if (::write(fd, out.data(), out.size()) == static_cast<ssize_t>(out.size())) reply = read_reply(fd);
  }
  ::close(fd);
  return reply;
}

nlohmann::json NatsServer::js_api(const std::string& api, const nlohmann::json& body) const {
  return nlohmann::json::parse(request("$JS.API." + api, body.dump()), nullptr, false);
}

std::map<std::string, nlohmann::json> kv_records(const NatsServer& s, const std::string& bucket) {
  std::map<std::string, nlohmann::json> out;
  const std::string stream = "KV_" + bucket, prefix = "$KV." + bucket + ".";
  auto info = s.js_api("STREAM.INFO." + stream, {{"subjects_filter", prefix + ">"}});
  if (info.is_discarded() || !info.contains("state")) return out;
  const nlohmann::json& state = info["state"];
  if (!state.contains("subjects") || !state["subjects"].is_object()) return out;
  for (const auto& [subject, n] : state["subjects"].items()) {
    auto m = s.js_api("STREAM.MSG.GET." + stream, {{"last_by_subj", subject}});
    if (m.is_discarded() || !m.contains("message")) continue;
    out[subject.substr(prefix.size())] =
        nlohmann::json::parse(base64_decode(m["message"].value("data", "")), nullptr, false);
  }
  return out;
}

bool NatsServer::available() { return ::access(kServer, X_OK) == 0; }

NatsServer::NatsServer(NatsServerOptions o) : o_(o) {
  port_ = free_port();
  do monitor_port_ = free_port();
  while (monitor_port_ == port_);
  start();
}

NatsServer::~NatsServer() { stop(); }

void NatsServer::start() {
  const std::string store = dir_.path() + "/js", log = dir_.path() + "/nats.log";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  std::string port = std::to_string(port_);
  std::string monitor = std::to_string(monitor_port_);
  std::vector<std::string> args = {kServer, "-js", "-a", "127.0.0.1", "-p", port, "-sd", store,
                                   "-m", monitor};
  if (o_.max_payload) {
    const std::string conf = dir_.path() + "/nats.conf";
    write_text(conf, "max_payload: " + std::to_string(o_.max_payload) + "\n");
    args.insert(args.end(), {"-c", conf});
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int rc = posix_spawn(&pid_, kServer, &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error("posix_spawn nats-server failed");
  if (!eventually([&] { return accepts(port_); }, std::chrono::seconds(10)))
    throw std::runtime_error("nats-server did not come up: " + read_text(log));
}

void NatsServer::stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

void NatsServer::restart() {
  stop();
  start();
}

void NatsServer::kill() { stop(); }

long NatsServer::stream_messages(const std::string& stream) const {
  auto j = nlohmann::json::parse(http_get(monitor_port_, "/jsz?streams=true"), nullptr, false);
  if (j.is_discarded() || !j.contains("account_details")) return -1;
  for (const auto& acct : j["account_details"])
    for (const auto& s : acct.value("stream_detail", nlohmann::json::array()))
      if (s.value("name", "") == stream) return s["state"].value("messages", -1L);
  return -1;
}

pid_t companion_pid(pid_t daemon) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string status = read_text(e.path().string() + "/status");  // "" if gone meanwhile
    size_t at = status.find("\nPPid:\t");
    if (at == std::string::npos || std::stol(status.substr(at + 7)) != daemon) continue;
    auto exe = fs::read_symlink(e.path() / "exe", ec);
    if (!ec && exe.filename() == "cellos-reactor-nats") return static_cast<pid_t>(std::stol(name));
  }
  return -1;
}

std::string nats_toml(const NatsServer& s, int ack_wait_seconds, bool events) {
  std::string t = "[intake.nats]\nurl = \"" + s.url() + "\"\nack_wait_seconds = " +
                  std::to_string(ack_wait_seconds) + "\n";
  if (events) t += "[events.nats]\nurl = \"" + s.url() + "\"\n";
  return t;
}

std::string fetch_events(const NatsServer& s, const std::string& host_id) {
  auto p = run_process({CELLOS_REACTOR_BIN, "events", "fetch", "--nats", s.url(), "--subject",
                        "CELLOS_EVENTS." + host_id});
  if (p.status != 0) throw std::runtime_error("events fetch: " + p.err);
  return p.out;
}

int submit_all(const NatsServer& s, const std::vector<std::string>& spec_jsons, const std::string& dir) {
  // Eight submitters at once: each `submit --nats` is a process start and a connection.
  std::atomic<int> ok{0};
  std::atomic<size_t> next{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < 8; ++w)
    workers.emplace_back([&] {
      for (size_t i; (i = next++) < spec_jsons.size();) {
        const std::string path = dir + "/spec-" + std::to_string(i) + ".json";
        write_text(path, spec_jsons[i]);
        auto p = run_process({CELLOS_REACTOR_BIN, "submit", "--nats", s.url(), path});
        if (p.status == 0) ++ok;
        else std::fprintf(stderr, "submit --nats %s: status %d: %s", path.c_str(), p.status, p.err.c_str());
      }
    });
  for (auto& t : workers) t.join();
  return ok;
}

}  // namespace cellos::test
