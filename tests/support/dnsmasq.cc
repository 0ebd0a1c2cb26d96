#include "tests/support/dnsmasq.h"

#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "base/fd.h"

extern char** environ;

namespace cellos::test {
namespace {

int free_port() {
  base::Fd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return -1;
  socklen_t len = sizeof a;
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0) return -1;
  return ntohs(a.sin_port);
}

bool tcp_answers(int port) {
  base::Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  return ::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
}

}  // namespace

Dnsmasq::Dnsmasq(const std::vector<std::string>& options, int ttl) {
  if (::access("/usr/sbin/dnsmasq", X_OK) != 0) {
    why_ = "dnsmasq is not installed (scripts/install-deps.sh installs dnsmasq-base)";
    return;
  }
  port_ = free_port();
  char dir[] = "/tmp/cellos-dnsmasq-XXXXXX";
  if (port_ <= 0 || !::mkdtemp(dir)) {
    why_ = "no free port or temp dir for dnsmasq";
    return;
  }
  dir_ = dir;
  log_ = dir_ + "/queries.log";
  std::vector<std::string> args{"/usr/sbin/dnsmasq", "--keep-in-foreground", "--no-resolv",
                                "--no-hosts", "--bind-interfaces", "--listen-address=127.0.0.1",
                                "--port=" + std::to_string(port_), "--pid-file=", "--user=root",
                                "--log-queries", "--log-facility=" + log_,
                                "--local-ttl=" + std::to_string(ttl)};
  args.insert(args.end(), options.begin(), options.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  // A test process may block SIGTERM (in-process reactors take it by signalfd); dnsmasq would
  // inherit the mask and never see the SIGTERM that ends it. It starts with none blocked.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, deflt;
  sigemptyset(&none);
  sigemptyset(&deflt);
  sigaddset(&deflt, SIGTERM);
  sigaddset(&deflt, SIGINT);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &deflt);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  const int spawned = posix_spawn(&pid_, argv[0], nullptr, &attr, argv.data(), environ);
  posix_spawnattr_destroy(&attr);
  if (spawned != 0) {
    why_ = "posix_spawn dnsmasq failed";
    pid_ = -1;
    return;
  }
  // It binds UDP and TCP before it serves: ready once TCP connects.
  for (int i = 0; i < 250 && !tcp_answers(port_); ++i) ::usleep(20000);
}

Dnsmasq::~Dnsmasq() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    // Two seconds to go, then SIGKILL: a test must not hang on its server.
    for (int i = 0; i < 200 && ::waitpid(pid_, nullptr, WNOHANG) == 0; ++i) ::usleep(10000);
    if (::waitpid(pid_, nullptr, WNOHANG) == 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  if (!dir_.empty()) {
    ::unlink(log_.c_str());
    ::rmdir(dir_.c_str());
  }
}

int Dnsmasq::queries_for(const std::string& name) const {
  std::ifstream in(log_);
  std::string line;
  int n = 0;
  while (std::getline(in, line))
    if (line.find("query[") != std::string::npos &&
        line.find("] " + name + " from") != std::string::npos)
      ++n;
  return n;
}

}  // namespace cellos::test
