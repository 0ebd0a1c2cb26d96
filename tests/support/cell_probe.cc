// cell_probe: runs inside cells and reports what the cell can and cannot do, so integration
// tests observe isolation from the inside. One subcommand per property; output is plain text
// the tests match on.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

int usage() {
  std::fprintf(stderr,
               "usage: cell_probe fds | alloc MB | connect IP PORT | loopback-echo | "
               "fork N | daemonize MARKER | write PATH | mount | sleep S | "
               "tcp-connect IP PORT | udp-send IP PORT | udp-fire IP PORT | udp-session IP PORT GAP | udp-burst IP PORT COUNT SIZE | "
               "unix-connect PATH | abstract-connect NAME | socket FAMILY TYPE PROTO | "
               "socketpair FAMILY | inotify N | inotify-hog MARKER | broker-get PATH NAME...\n");
  return 2;
}

// Lists this process's open descriptors, leaving out the one opendir uses to list them.
int fds() {
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return 1;
  int self = dirfd(d);
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    if (std::atoi(e->d_name) == self) continue;
    std::printf("%s\n", e->d_name);
  }
  closedir(d);
  return 0;
}

int alloc(long mb) {
  std::vector<char*> chunks;
  for (long i = 0; i < mb; ++i) {
    char* p = static_cast<char*>(std::malloc(1 << 20));
    if (p == nullptr) {
      std::printf("malloc failed after %ld MiB\n", i);
      return 3;
    }
    std::memset(p, 1, 1 << 20);  // touch every page so it is charged
    chunks.push_back(p);
  }
  std::printf("allocated %ld MiB\n", mb);
  return 0;
}

int connect_to(const char* ip, int port) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, ip, &a.sin_addr);
  if (connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    std::printf("connect failed: %s\n", std::strerror(errno));
    return 1;
  }
  std::printf("connected\n");
  return 0;
}

// A listener and a client on the cell's own loopback, one byte each way.
int loopback_echo() {
  int l = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) || listen(l, 1) ||
      getsockname(l, reinterpret_cast<sockaddr*>(&a), &len)) {
    std::printf("listen failed: %s\n", std::strerror(errno));
    return 1;
  }
  int c = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    std::printf("connect failed: %s\n", std::strerror(errno));
    return 1;
  }
  int s = accept(l, nullptr, nullptr);
  char b = 'x';
  if (write(c, &b, 1) != 1 || read(s, &b, 1) != 1) return 1;
  std::printf("loopback ok\n");
  return 0;
}

// Forks up to n children that wait; prints how many forks succeeded.
int fork_n(int n) {
  int ok = 0;
  for (int i = 0; i < n; ++i) {
    pid_t p = fork();
    if (p == 0) {
      pause();
      _exit(0);
    }
    if (p < 0) break;
    ++ok;
  }
  std::printf("forked %d\n", ok);
  return 0;
}

// Leaves a session leader behind that outlives its parent, as a daemonizing build step would.
// The daemon carries `marker` as its argv[0] so tests can find it on the host; the probe
// prints "daemonized" only once the daemon is seen running.
int daemonize(const char* marker) {
  int p[2];
  if (pipe(p) != 0) return 1;
  pid_t mid = fork();
  if (mid == 0) {
    setsid();
    pid_t d = fork();
    if (d == 0) {
      close(p[0]);
      close(p[1]);
      execl("/bin/sleep", marker, "1000", static_cast<char*>(nullptr));
      _exit(1);
    }
    (void)!write(p[1], &d, sizeof d);
    _exit(0);
  }
  close(p[1]);
  pid_t daemon = -1;
  if (read(p[0], &daemon, sizeof daemon) != sizeof daemon) return 1;
  waitpid(mid, nullptr, 0);
  char path[64], cmd[256];
  std::snprintf(path, sizeof path, "/proc/%d/cmdline", daemon);
  for (int i = 0; i < 500; ++i) {  // until the exec has happened
    FILE* f = std::fopen(path, "r");
    if (f == nullptr) return 1;
    size_t n = std::fread(cmd, 1, sizeof cmd - 1, f);
    std::fclose(f);
    cmd[n] = '\0';
    if (std::strcmp(cmd, marker) == 0) {
      std::printf("daemonized\n");
      std::fflush(stdout);
      return 0;
    }
    usleep(2000);
  }
  std::printf("daemon did not start\n");
  return 1;
}

// Prints one word per attempt, prefixed by what was tried: "tcp 10.0.0.1:80 ok hello",
// "... blocked: Operation not permitted" (nft drop on output), "... refused", "... timeout".
// Short timeouts: a dropped SYN must not stall a test.
constexpr int kNetTimeoutMs = 1500;

bool make_addr(const char* ip, int port, sockaddr_in& a) {
  a = {};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  return inet_pton(AF_INET, ip, &a.sin_addr) == 1;
}

void report_error(const char* what, int err) {
  if (err == ECONNREFUSED) std::printf("%s refused\n", what);
  else if (err == ETIMEDOUT) std::printf("%s timeout\n", what);
  else std::printf("%s blocked: %s\n", what, std::strerror(err));
}

int tcp_connect(const char* ip, int port) {
  char what[80];
  std::snprintf(what, sizeof what, "tcp %s:%d", ip, port);
  sockaddr_in a;
  if (!make_addr(ip, port, a)) return usage();
  int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 && errno != EINPROGRESS) {
    report_error(what, errno);
    return 1;
  }
  pollfd p{s, POLLOUT, 0};
  if (poll(&p, 1, kNetTimeoutMs) != 1) {
    report_error(what, ETIMEDOUT);
    return 1;
  }
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    report_error(what, err);
    return 1;
  }
  // The test hosts greet every connection: a reply proves the flow went both ways.
  char buf[64] = {};
  p = {s, POLLIN, 0};
  ssize_t n = poll(&p, 1, kNetTimeoutMs) == 1 ? read(s, buf, sizeof buf - 1) : -1;
  std::printf("%s ok %s\n", what, n > 0 ? buf : "(no greeting)");
  close(s);
  return 0;
}

int udp_send(const char* ip, int port) {
  char what[80];
  std::snprintf(what, sizeof what, "udp %s:%d", ip, port);
  sockaddr_in a;
  if (!make_addr(ip, port, a)) return usage();
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  if (sendto(s, "ping", 4, 0, reinterpret_cast<sockaddr*>(&a), sizeof a) != 4) {
    report_error(what, errno);
    return 1;
  }
  pollfd p{s, POLLIN, 0};
  if (poll(&p, 1, kNetTimeoutMs) != 1) {
    report_error(what, ETIMEDOUT);
    return 1;
  }
  char buf[64] = {};
  ssize_t n = recv(s, buf, sizeof buf - 1, 0);
  if (n < 0) {
    report_error(what, errno);
    return 1;
  }
  std::printf("%s ok %s\n", what, buf);
  return 0;
}

// One connected UDP socket, a ping now and another `gap` seconds later on the same flow:
// "udp IP:PORT first pong" / "udp IP:PORT second pong" (or "... second timeout").
int udp_session(const char* ip, int port, int gap) {
  sockaddr_in a;
  if (!make_addr(ip, port, a) || gap < 0) return usage();
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  if (connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    report_error("udp-session connect", errno);
    return 1;
  }
  for (const char* round : {"first", "second"}) {
    if (round[0] == 's') sleep(static_cast<unsigned>(gap));
    char buf[64] = {};
    pollfd p{s, POLLIN, 0};
    bool got = send(s, "ping", 4, 0) == 4 && poll(&p, 1, kNetTimeoutMs) == 1 &&
               recv(s, buf, sizeof buf - 1, 0) > 0;
    std::printf("udp %s:%d %s %s\n", ip, port, round, got ? buf : "timeout");
    std::fflush(stdout);
  }
  return 0;
}

// One socket, `count` datagrams of `size` bytes, then up to 1.5 s for the replies (the test
// hosts answer each with "pong"): "udp-burst sent N received M".
// One datagram, and exit at once (no reply awaited): the cell's last act is that packet.
int udp_fire(const char* ip, int port) {
  sockaddr_in a;
  if (!make_addr(ip, port, a)) return usage();
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  const bool sent = sendto(s, "last", 4, 0, reinterpret_cast<sockaddr*>(&a), sizeof a) == 4;
  std::printf("udp-fire %s\n", sent ? "sent" : std::strerror(errno));
  return 0;
}

int udp_burst(const char* ip, int port, int count, int size) {
  sockaddr_in a;
  if (!make_addr(ip, port, a) || count < 0 || size < 0 || size > 60000) return usage();
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  std::vector<char> payload(static_cast<size_t>(size), 'x');
  int sent = 0, received = 0;
  for (int i = 0; i < count; ++i)
    if (sendto(s, payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof a) ==
        static_cast<ssize_t>(payload.size()))
      ++sent;
  pollfd p{s, POLLIN, 0};
  char buf[64];
  while (received < sent && poll(&p, 1, kNetTimeoutMs) == 1 && recv(s, buf, sizeof buf, 0) > 0)
    ++received;
  std::printf("udp-burst sent %d received %d\n", sent, received);
  close(s);
  return 0;
}

// Waits up to `seconds` for a tcp connection or a udp datagram on `port` (every address).
int listen_once(int port, int seconds) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  int t = socket(AF_INET, SOCK_STREAM, 0), u = socket(AF_INET, SOCK_DGRAM, 0);
  if (bind(t, reinterpret_cast<sockaddr*>(&a), sizeof a) || listen(t, 4) ||
      bind(u, reinterpret_cast<sockaddr*>(&a), sizeof a)) {
    std::printf("listen failed: %s\n", std::strerror(errno));
    return 1;
  }
  std::printf("listening\n");
  std::fflush(stdout);
  pollfd p[2] = {{t, POLLIN, 0}, {u, POLLIN, 0}};
  if (poll(p, 2, seconds * 1000) <= 0) {
    std::printf("nothing\n");
    return 0;
  }
  std::printf(p[0].revents ? "tcp accepted\n" : "udp received\n");
  return 0;
}

int write_file(const char* path) {
  FILE* f = std::fopen(path, "w");
  if (f == nullptr) {
    std::printf("write failed: %s\n", std::strerror(errno));
    return 1;
  }
  std::fputs("written by a cell\n", f);
  std::fclose(f);
  std::printf("written\n");
  return 0;
}

// Connects to a unix socket, pathname or abstract (`abstract`: NAME without the leading NUL),
// and exchanges one message: "unix NAME exchanged <reply>", "unix NAME connected" (no reply),
// or "unix NAME failed: ECONNREFUSED" / ENOENT / ... . Error names, not texts, for the tests.
int unix_connect(const char* name, bool abstract) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  size_t len = std::strlen(name);
  if (len + 2 > sizeof a.sun_path) return usage();
  std::memcpy(a.sun_path + (abstract ? 1 : 0), name, len);
  socklen_t alen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len + (abstract ? 1 : 0));
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  if (s < 0 || connect(s, reinterpret_cast<sockaddr*>(&a), alen) != 0) {
    std::printf("unix %s failed: %s\n", name, strerrorname_np(errno));
    return 1;
  }
  char buf[64] = {};
  pollfd p{s, POLLIN, 0};
  bool sent = write(s, "hello", 5) == 5;
  ssize_t n = sent && poll(&p, 1, kNetTimeoutMs) == 1 ? read(s, buf, sizeof buf - 1) : -1;
  if (n > 0) std::printf("unix %s exchanged %s\n", name, buf);
  else std::printf("unix %s connected\n", name);
  return 0;
}

// The secret broker's protocol (cells/secret_broker.h), as a client in a cell uses it: one
// connection, one "GET NAME" per name. Prints "NAME = VALUE" or "NAME refused: ERR ...".
int broker_get(const char* path, char** names, int n) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (std::strlen(path) + 1 > sizeof a.sun_path) return usage();
  std::strcpy(a.sun_path, path);
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  if (s < 0 || connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    std::printf("broker %s failed: %s\n", path, strerrorname_np(errno));
    return 1;
  }
  std::string in;
  auto fill = [&]() {
    char buf[4096];
    pollfd p{s, POLLIN, 0};
    if (poll(&p, 1, kNetTimeoutMs) != 1) return false;
    ssize_t r = read(s, buf, sizeof buf);
    if (r <= 0) return false;
    in.append(buf, static_cast<size_t>(r));
    return true;
  };
  for (int i = 0; i < n; ++i) {
    std::string req = std::string("GET ") + names[i] + "\n";
    if (send(s, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
      std::printf("%s write failed: %s\n", names[i], strerrorname_np(errno));
      return 1;
    }
    while (in.find('\n') == std::string::npos)
      if (!fill()) {
        std::printf("%s no answer\n", names[i]);
        return 1;
      }
    std::string head = in.substr(0, in.find('\n'));
    in.erase(0, head.size() + 1);
    if (head.rfind("OK ", 0) != 0) {
      std::printf("%s refused: %s\n", names[i], head.c_str());
      continue;
    }
    size_t len = std::strtoul(head.c_str() + 3, nullptr, 10);
    while (in.size() < len + 1)
      if (!fill()) {
        std::printf("%s short value\n", names[i]);
        return 1;
      }
    std::printf("%s = %s\n", names[i], in.substr(0, len).c_str());
    in.erase(0, len + 1);
  }
  close(s);
  return 0;
}

// "socket F T P ok" or "socket F T P failed: EAFNOSUPPORT".
int make_socket(long family, int type, int proto) {
  int s = socket(static_cast<int>(family), type, proto);
  if (s < 0) std::printf("socket %ld %d %d failed: %s\n", family, type, proto, strerrorname_np(errno));
  else std::printf("socket %ld %d %d ok\n", family, type, proto);
  return s < 0 ? 1 : 0;
}

int make_socketpair(int family) {
  int sv[2];
  if (socketpair(family, SOCK_STREAM, 0, sv) != 0) {
    std::printf("socketpair %d failed: %s\n", family, strerrorname_np(errno));
    return 1;
  }
  std::printf("socketpair %d ok\n", family);
  return 0;
}

// Opens n inotify instances: "inotify N ok" or "inotify failed after K: EMFILE".
int inotify_n(int n) {
  for (int i = 0; i < n; ++i)
    if (inotify_init1(IN_CLOEXEC) < 0) {
      std::printf("inotify failed after %d: %s\n", i, strerrorname_np(errno));
      return 1;
    }
  std::printf("inotify %d ok\n", n);
  return 0;
}

// Takes every inotify instance its uid may have (fs.inotify.max_user_instances), keeps them
// across an exec of `sleep` named `marker`, so tests see from the host when it holds them all.
int inotify_hog(const char* marker) {
  int n = 0;
  while (inotify_init1(0) >= 0) ++n;
  std::printf("inotify-hog holds %d\n", n);
  std::fflush(stdout);
  execl("/bin/sleep", marker, "60", static_cast<char*>(nullptr));
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  std::string cmd = argv[1];
  if (cmd == "fds") return fds();
  if (cmd == "alloc" && argc == 3) return alloc(std::atol(argv[2]));
  if (cmd == "connect" && argc == 4) return connect_to(argv[2], std::atoi(argv[3]));
  if (cmd == "loopback-echo") return loopback_echo();
  if (cmd == "tcp-connect" && argc == 4) return tcp_connect(argv[2], std::atoi(argv[3]));
  if (cmd == "udp-session" && argc == 5)
    return udp_session(argv[2], std::atoi(argv[3]), std::atoi(argv[4]));
  if (cmd == "udp-send" && argc == 4) return udp_send(argv[2], std::atoi(argv[3]));
  if (cmd == "udp-fire" && argc == 4) return udp_fire(argv[2], std::atoi(argv[3]));
  if (cmd == "udp-burst" && argc == 6)
    return udp_burst(argv[2], std::atoi(argv[3]), std::atoi(argv[4]), std::atoi(argv[5]));
  if (cmd == "listen-once" && argc == 4) return listen_once(std::atoi(argv[2]), std::atoi(argv[3]));
  if (cmd == "fork" && argc == 3) return fork_n(std::atoi(argv[2]));
  if (cmd == "daemonize" && argc == 3) return daemonize(argv[2]);
  if (cmd == "write" && argc == 3) return write_file(argv[2]);
  if (cmd == "mount") {
    if (mount("tmpfs", "/mnt", "tmpfs", 0, nullptr) != 0) {
      std::printf("mount failed: %s\n", std::strerror(errno));
      return 1;
    }
    return 0;
  }
  if (cmd == "unix-connect" && argc == 3) return unix_connect(argv[2], false);
  if (cmd == "abstract-connect" && argc == 3) return unix_connect(argv[2], true);
  if (cmd == "broker-get" && argc >= 4) return broker_get(argv[2], argv + 3, argc - 3);
  if (cmd == "socket" && argc == 5)
    return make_socket(std::atol(argv[2]), std::atoi(argv[3]), std::atoi(argv[4]));
  if (cmd == "socketpair" && argc == 3) return make_socketpair(std::atoi(argv[2]));
  if (cmd == "inotify" && argc == 3) return inotify_n(std::atoi(argv[2]));
  if (cmd == "inotify-hog" && argc == 3) return inotify_hog(argv[2]);
  if (cmd == "sleep" && argc == 3) return sleep(static_cast<unsigned>(std::atoi(argv[2])));
  return usage();
}
