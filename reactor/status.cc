#include "reactor/status.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "cells/config.h"
#include "reactor/run_command.h"
#include "reactor/spool.h"

namespace cellos::reactor {
namespace {

// Waiting clients (`submit --wait`) hold a connection each while their cell runs.
constexpr size_t kMaxConnections = 1024;

base::Result<sockaddr_un> socket_address(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path)
    return base::Error{ENAMETOOLONG, "bind", "status socket \"" + path + "\"",
                       "path longer than a unix socket address allows", {}};
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  return a;
}

std::string human_bytes(uint64_t b) {
  char buf[32];
  if (b >= (1ull << 30)) std::snprintf(buf, sizeof buf, "%.1fG", static_cast<double>(b) / (1ull << 30));
  else if (b >= (1ull << 20)) std::snprintf(buf, sizeof buf, "%.1fM", static_cast<double>(b) / (1ull << 20));
  else if (b >= (1ull << 10)) std::snprintf(buf, sizeof buf, "%.1fK", static_cast<double>(b) / (1ull << 10));
  else std::snprintf(buf, sizeof buf, "%lluB", static_cast<unsigned long long>(b));
  return buf;
}

}  // namespace

base::Result<std::unique_ptr<StatusServer>> StatusServer::create(Ring& ring,
                                                                 const std::string& path,
                                                                 Snapshot snapshot) {
  // Bound and listening under a temporary name, then renamed into place: a client that sees
  // the socket's name can connect (no ECONNREFUSED between bind and listen) and never finds it
  // with any mode but 0660.
  const std::string staged = path + ".new";
  auto addr = socket_address(staged);
  if (!addr) return std::move(addr).error();
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return base::sys_error("socket", "status socket \"" + path + "\"");
  base::Fd sock(fd);
  ::unlink(staged.c_str());
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) != 0)
    return base::sys_error("bind", "status socket \"" + staged + "\"");
  // Status shows cell ids and memory: for the operator (root) and the group of the state dir.
  const char* call = ::chmod(staged.c_str(), 0660) != 0 ? "chmod"
                     : ::listen(fd, 64) != 0                ? "listen"
                     : ::rename(staged.c_str(), path.c_str()) != 0 ? "rename"
                                                                   : nullptr;
  if (call != nullptr) {
    base::Error e = base::sys_error(call, "status socket \"" + staged + "\"");
    ::unlink(staged.c_str());
    return e;
  }
  std::unique_ptr<StatusServer> s(
      new StatusServer(ring, path, std::move(sock), std::move(snapshot)));
  s->acceptor_.server = s.get();
  s->arm_accept();
  return s;
}

StatusServer::~StatusServer() {
  if (!stopped_) ::unlink(path_.c_str());
}

void StatusServer::stop() {
  if (stopped_) return;
  stopped_ = true;
  ::unlink(path_.c_str());
  if (acceptor_.in_flight) ring_.cancel(acceptor_);
  for (auto& c : conns_) {
    if (c->done || c->closing) continue;
    if (!c->waiting_for.empty())
      c->send(nlohmann::json{{"event", "stopped"}, {"id", c->waiting_for}}.dump(), true);
    else
      c->finish();
  }
}

void StatusServer::arm_accept() {
  acceptor_.in_flight = true;
  ring_.accept(fd_.get(), acceptor_);
}

void StatusServer::collect() {
  std::erase_if(conns_, [](const std::unique_ptr<Conn>& c) { return c->done; });
}

void StatusServer::tell(const std::string& id, Step step, const std::string& run_id,
                        std::string line) {
  for (auto& c : conns_) {
    if (c->done || c->closing || c->waiting_for != id) continue;
    switch (step) {
      case Step::kStarted:
        if (!c->run_id.empty()) continue;
        c->run_id = run_id;
        c->send(line, false);
        break;
      case Step::kRejected:
        if (!c->run_id.empty()) continue;
        c->send(line, true);
        break;
      case Step::kFinished:
        if (c->run_id != run_id) continue;
        c->send(line, true);
        break;
    }
  }
}

bool StatusServer::watched(const std::string& id) const {
  return std::any_of(conns_.begin(), conns_.end(), [&](const auto& c) {
    return !c->done && !c->closing && c->waiting_for == id;
  });
}

void StatusServer::draining() {
  draining_ = true;
  for (auto& c : conns_)
    if (!c->done && !c->closing && !c->waiting_for.empty() && c->run_id.empty())
      c->send(nlohmann::json{{"event", "stopped"}, {"id", c->waiting_for}}.dump(), true);
}

bool StatusServer::idle() const {
  return std::all_of(conns_.begin(), conns_.end(), [](const auto& c) { return c->done; });
}

void StatusServer::request(Conn& c, std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line == "status") return c.send(snapshot_(), true);
  if (line.starts_with("wait ") && (stopped_ || draining_))
    return c.send(nlohmann::json{{"event", "stopped"}}.dump(), true);
  if (line.starts_with("wait ") && line.size() > 5) {
    wait_for(c, std::string(line.substr(5)));
    c.send(nlohmann::json{{"event", "watching"}, {"id", c.waiting_for}}.dump(), false);
    return;
  }
  if (line.starts_with("hand ") && (stopped_ || draining_))
    return c.send(nlohmann::json{{"event", "stopped"}}.dump(), true);
  if (line.starts_with("hand ")) return hand(c, line.substr(5));
  for (std::string_view verb : {"stop", "kill"}) {
    if (!line.starts_with(verb) || line.size() <= verb.size() + 1 || line[verb.size()] != ' ')
      continue;
    const std::string id(line.substr(verb.size() + 1));
    if (control_ && control_(verb, id))
      return c.send(nlohmann::json{{"event", verb == "stop" ? "stopping" : "killing"}, {"id", id}}
                        .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                    true);
    return c.send(nlohmann::json{{"error", "no cell " + id + " runs here"}}
                      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                  true);
  }
  c.send(nlohmann::json{{"error", "unknown request (expected `status`, `wait ID`, `hand ID NAME`, "
                                  "`stop ID` or `kill ID`)"}}.dump(),
         true);
}

void StatusServer::wait_for(Conn& c, std::string id) {
  c.waiting_for = std::move(id);
  // Its next read ends when the client leaves: then it is forgotten.
  ring_.read(c.fd.get(), std::as_writable_bytes(std::span(c.in)), c.arm_read());
}

void StatusServer::hand(Conn& c, std::string_view args) {
  auto refuse = [&](const std::string& why) {
    c.send(nlohmann::json{{"error", "hand: " + why}}.dump(-1, ' ', false,
                                                         nlohmann::json::error_handler_t::replace),
           true);
  };
  const size_t sp = args.find(' ');
  if (sp == std::string_view::npos || sp == 0) return refuse("expected `hand ID NAME`");
  const std::string id(args.substr(0, sp));
  const std::string_view staged = args.substr(sp + 1);
  const std::string entry = staged_entry_name(staged);
  if (spool_dir_.empty()) return refuse("this daemon takes no handed specs");
  if (entry.empty()) return refuse("not a staged spool name: " + std::string(staged));
  // The waiter first, then the entry: the cell's start cannot come before the wait.
  wait_for(c, id);
  const std::string from = spool_dir_ + "/" + std::string(staged), to = spool_dir_ + "/" + entry;
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) != 0) {
    const int err = errno;
    c.waiting_for.clear();
    return refuse("rename " + std::string(staged) + ": " + std::strerror(err));
  }
}

void StatusServer::Acceptor::complete(int res) {
  in_flight = false;
  server->collect();
  if (server->stopped_) {
    if (res >= 0) ::close(res);
    return;
  }
  if (res >= 0) {
    base::Fd fd(res);
    if (server->conns_.size() < kMaxConnections) {
      auto c = std::make_unique<Conn>();
      c->server = server;
      c->fd = std::move(fd);
      Conn* raw = c.get();
      server->conns_.push_back(std::move(c));
      server->ring_.read(raw->fd.get(), std::as_writable_bytes(std::span(raw->in)),
                         raw->arm_read());
    }
  }
  server->arm_accept();
}

void StatusServer::Conn::on_read(int res) {
  if (closing || done) return finish();
  if (!waiting_for.empty()) {
    // A waiter sends nothing more: data or not, the stream's end (or an error) means it left.
    if (res > 0) {
      server->ring_.read(fd.get(), std::as_writable_bytes(std::span(in)), arm_read());
      return;
    }
    waiting_for.clear();
    closing = true;
    return finish();
  }
  if (res <= 0) {
    closing = true;
    return finish();
  }
  in_len += static_cast<size_t>(res);
  std::string_view got(in.data(), in_len);
  if (auto nl = got.find('\n'); nl != std::string_view::npos)
    return server->request(*this, got.substr(0, nl));
  if (in_len == in.size()) {
    send(nlohmann::json{{"error", "request line longer than 512 bytes"}}.dump(), true);
    return;
  }
  server->ring_.read(fd.get(), std::as_writable_bytes(std::span(in).subspan(in_len)),
                     arm_read());
}

void StatusServer::Conn::send(std::string line, bool last) {
  pending += line;
  pending += '\n';
  if (last) closing = true;
  if (writing) return;
  data = std::move(pending);
  pending.clear();
  off = 0;
  writing = true;
  server->ring_.write(fd.get(), std::as_bytes(std::span(data)), *this);
}

void StatusServer::Conn::complete(int res) {
  writing = false;
  if (res > 0) off += static_cast<size_t>(res);
  if (res > 0 && off < data.size()) {
    writing = true;
    server->ring_.write(fd.get(), std::as_bytes(std::span(data).subspan(off)), *this);
    return;
  }
  if (res <= 0) {
    // The client went away: this connection is over.
    closing = true;
    waiting_for.clear();
    pending.clear();
    return finish();
  }
  if (!pending.empty()) {
    data = std::move(pending);
    pending.clear();
    off = 0;
    writing = true;
    server->ring_.write(fd.get(), std::as_bytes(std::span(data)), *this);
    return;
  }
  if (closing) finish();
}

// Closes the connection once nothing is in flight on it; it is then collected.
void StatusServer::Conn::finish() {
  if (writing) return;
  if (reader.busy()) {
    // A read still waits on the client: shutting the socket down ends it, and its completion
    // comes back here.
    ::shutdown(fd.get(), SHUT_RDWR);
    return;
  }
  fd.reset();
  done = true;
}

base::Result<base::Fd> connect_status(const std::string& state_dir, const std::string& request) {
  const std::string path = state_dir + "/reactor.sock";
  auto addr = socket_address(path);
  if (!addr) return std::move(addr).error();
  base::Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return base::sys_error("socket", "status socket \"" + path + "\"");
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) != 0) {
    const int err = errno;
    return base::Error{err, "connect", "status socket \"" + path + "\"",
                       "no daemon is serving " + state_dir, {}};
  }
  const std::string line = request + "\n";
  if (::send(fd.get(), line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size()))
    return base::sys_error("send", "status socket \"" + path + "\"");
  return fd;
}

int status_command(const StatusArgs& args) {
  auto loaded = load_config_or_say(args.config_path);
  if (!loaded) return 125;
  const cells::Config& config = *loaded;
  const std::string path = config.host.state_dir + "/reactor.sock";
  auto fd = connect_status(config.host.state_dir, "status");
  if (!fd) {
    std::fprintf(stderr, "cellos-reactor: %s\n", fd.error().message().c_str());
    return 1;
  }
  auto text = base::read_fd(fd->get(), "status socket \"" + path + "\"", 64 << 20);
  if (!text) {
    std::fprintf(stderr, "cellos-reactor: %s\n", text.error().message().c_str());
    return 1;
  }
  if (args.json) {
    std::fwrite(text->data(), 1, text->size(), stdout);
    return 0;
  }
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, false);
  if (j.is_discarded()) {
    std::fprintf(stderr, "cellos-reactor: status socket \"%s\": not JSON\n", path.c_str());
    return 1;
  }
  std::printf("host %s  pid %lld  running %llu  waiting %llu  succeeded %llu  failed %llu  "
              "rejected %llu%s\n",
              j.value("hostId", "").c_str(), j.value("pid", 0LL),
              j.value("running", 0ULL), j.value("waiting", 0ULL), j.value("succeeded", 0ULL),
              j.value("failed", 0ULL), j.value("rejected", 0ULL),
              j.value("stopping", false) ? "  (draining: intake stopped, running cells finishing)"
                                         : "");
  std::printf("%-40s %8s %7s %10s %10s\n", "CELL", "PID", "BACKEND", "AGE", "MEMORY");
  for (const auto& c : j.value("cells", nlohmann::json::array())) {
    char age[32];
    std::snprintf(age, sizeof age, "%.1fs", c.value("ageSeconds", 0.0));
    std::printf("%-40s %8lld %7s %10s %10s\n", c.value("id", "").c_str(), c.value("pid", 0LL),
                c.value("backend", "").c_str(), age,
                human_bytes(c.value("memoryBytes", 0ULL)).c_str());
  }
  // The last few finished cells, newest first (`status --json` has up to 50; `show ID` has
  // the rest of a cell's story).
  const auto recent = j.value("recentlyFinished", nlohmann::json::array());
  if (!recent.empty()) {
    std::printf("\n%-40s %-14s %6s %10s  %s\n", "RECENTLY FINISHED", "REASON", "EXIT",
                "DURATION", "FINISHED AT");
    size_t shown = 0;
    for (const auto& c : recent) {
      if (++shown > 10) break;
      char took[32];
      std::snprintf(took, sizeof took, "%.1fs", c.value("durationMs", 0ULL) / 1000.0);
      std::printf("%-40s %-14s %6d %10s  %s\n", c.value("id", "").c_str(),
                  c.value("reason", "").c_str(), c.value("exitStatus", 0), took,
                  c.value("finishedAt", "").c_str());
    }
  }
  return 0;
}

}  // namespace cellos::reactor
