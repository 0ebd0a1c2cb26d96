#include "reactor/status.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "cells/config.h"
#include "reactor/run_command.h"

namespace cellos::reactor {
namespace {

constexpr size_t kMaxConnections = 16;

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
  auto addr = socket_address(path);
  if (!addr) return std::move(addr).error();
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return base::sys_error("socket", "status socket \"" + path + "\"");
  base::Fd sock(fd);
  ::unlink(path.c_str());
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) != 0)
    return base::sys_error("bind", "status socket \"" + path + "\"");
  // Status shows cell ids and memory: for the operator (root) and the group of the state dir.
  ::chmod(path.c_str(), 0660);
  if (::listen(fd, 64) != 0) return base::sys_error("listen", "status socket \"" + path + "\"");
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
}

void StatusServer::arm_accept() {
  acceptor_.in_flight = true;
  ring_.accept(fd_.get(), acceptor_);
}

void StatusServer::collect() {
  std::erase_if(conns_, [](const std::unique_ptr<Conn>& c) { return c->done; });
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
      c->data = server->snapshot_() + "\n";
      Conn* raw = c.get();
      server->conns_.push_back(std::move(c));
      server->ring_.write(raw->fd.get(), std::as_bytes(std::span(raw->data)), *raw);
    }
  }
  server->arm_accept();
}

void StatusServer::Conn::complete(int res) {
  if (res > 0) off += static_cast<size_t>(res);
  if (res > 0 && off < data.size()) {
    server->ring_.write(fd.get(), std::as_bytes(std::span(data).subspan(off)), *this);
    return;
  }
  // Done, or the client went away: either way this connection is over.
  fd.reset();
  done = true;
}

int status_command(const StatusArgs& args) {
  auto loaded = load_config_or_say(args.config_path);
  if (!loaded) return 125;
  const cells::Config& config = *loaded;
  const std::string path = config.host.state_dir + "/reactor.sock";
  auto addr = socket_address(path);
  if (!addr) {
    std::fprintf(stderr, "cellos-reactor: %s\n", addr.error().message().c_str());
    return 1;
  }
  base::Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd || ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) != 0) {
    std::fprintf(stderr, "cellos-reactor: no daemon is serving %s (connect %s: %s)\n",
                 config.host.state_dir.c_str(), path.c_str(), std::strerror(errno));
    return 1;
  }
  auto text = base::read_fd(fd.get(), "status socket \"" + path + "\"", 64 << 20);
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
  return 0;
}

}  // namespace cellos::reactor
