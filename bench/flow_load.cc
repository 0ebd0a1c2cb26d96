// The two ends of flow_bench's traffic: the client (each cell's command) and the server (a
// sink in the test host's namespace). Both are plain blocking/epoll socket code with no
// reactor library: the client runs inside a cell under seccomp and the policy uid.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/tcp.h>  // struct tcp_info with tcpi_segs_out/in (glibc's copy lacks them)
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bench/flow_bench.h"

namespace cellos::flowbench {

int64_t mono_ns() {
  timespec t{};
  ::clock_gettime(CLOCK_MONOTONIC, &t);
  return int64_t{t.tv_sec} * 1000000000 + t.tv_nsec;
}

namespace {

sockaddr_in address(const std::string& ip, int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  return a;
}

// The client's result line. The connect latencies go out in full so the driver takes
// percentiles over every connection of the run, not a median of medians.
struct ClientResult {
  int64_t go_wait_ns = 0, tcp_start = 0, tcp_end = 0, udp_start = 0, udp_end = 0;
  long conns_ok = 0, conns_failed = 0;
  uint64_t tcp_bytes = 0, tcp_segs_out = 0, tcp_segs_in = 0;
  uint64_t udp_sent = 0, udp_bytes = 0, udp_errors = 0;
  std::string error;  // the first failure, "connect(172.30.4.2:4100): ECONNREFUSED"
  std::vector<int64_t> connect_ns;
};

void note(ClientResult& r, const std::string& what, int err) {
  if (r.error.empty()) r.error = what + ": " + strerrorname_np(err);
}

bool send_all(int fd, const char* buf, size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd, buf, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    buf += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// One connection: connect (timed), the payload, our FIN, then wait for the server's EOF: the
// server closes only after reading ours, so when this returns the server has counted it all.
void one_connection(const ClientOptions& o, const sockaddr_in& to, ClientResult& r) {
  static char payload[1 << 16];
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return note(r, "socket", errno), void(++r.conns_failed);
  int64_t t0 = mono_ns();
  int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to);
  int64_t t1 = mono_ns();
  if (rc != 0) {
    note(r, "connect(" + o.server + ":" + std::to_string(o.tcp_port) + ")", errno);
    ++r.conns_failed;
    ::close(fd);
    return;
  }
  r.connect_ns.push_back(t1 - t0);
  long left = o.bytes;
  bool ok = true;
  while (ok && left > 0) {
    size_t n = static_cast<size_t>(std::min<long>(left, sizeof payload));
    ok = send_all(fd, payload, n);
    if (ok) left -= static_cast<long>(n), r.tcp_bytes += n;
  }
  if (!ok) note(r, "send", errno);
  ::shutdown(fd, SHUT_WR);
  char sink[256];
  while (::read(fd, sink, sizeof sink) > 0) {
  }
  tcp_info ti{};
  socklen_t len = sizeof ti;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0) {
    r.tcp_segs_out += ti.tcpi_segs_out;
    r.tcp_segs_in += ti.tcpi_segs_in;
  }
  ::close(fd);
  ok ? ++r.conns_ok : ++r.conns_failed;
}

// Paced datagrams on one connected socket, in sendmmsg batches of up to 32: after each batch
// the sender sleeps until the schedule (start + sent / rate) catches up, so the aggregate rate
// is the target when the path can carry it, and the achieved rate shows when it cannot.
void udp_flood(const ClientOptions& o, ClientResult& r) {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return note(r, "socket(udp)", errno);
  sockaddr_in to = address(o.server, o.udp_port);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0) {
    note(r, "connect(udp " + o.server + ":" + std::to_string(o.udp_port) + ")", errno);
    ::close(fd);
    return;
  }
  constexpr int kBatch = 32;
  std::vector<char> buf(static_cast<size_t>(o.udp_size));
  iovec iov{buf.data(), buf.size()};
  mmsghdr msgs[kBatch]{};
  for (auto& m : msgs) m.msg_hdr.msg_iov = &iov, m.msg_hdr.msg_iovlen = 1;
  r.udp_start = mono_ns();
  uint64_t total = static_cast<uint64_t>(o.udp_packets);
  while (r.udp_sent < total) {
    unsigned n = static_cast<unsigned>(std::min<uint64_t>(kBatch, total - r.udp_sent));
    int s = ::sendmmsg(fd, msgs, n, 0);
    if (s < 0) {
      if (errno == EINTR) continue;
      // ENOBUFS/EAGAIN: the device queue is full; the datagram was not sent, count and go on.
      note(r, "sendmmsg", errno);
      if (++r.udp_errors > 1000000) break;
      continue;
    }
    r.udp_sent += static_cast<uint64_t>(s);
    r.udp_bytes += static_cast<uint64_t>(s) * buf.size();
    if (o.udp_pps > 0) {
      int64_t due = r.udp_start + static_cast<int64_t>(1e9 * static_cast<double>(r.udp_sent) / o.udp_pps);
      if (due > mono_ns() + 50000) {
        timespec ts{due / 1000000000, due % 1000000000};
        ::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr);
      }
    }
  }
  r.udp_end = mono_ns();
  ::close(fd);
}

void print(const ClientResult& r) {
  std::string s = "{\"goWaitNs\":" + std::to_string(r.go_wait_ns);
  auto u = [&](const char* k, uint64_t v) { s += ",\"" + std::string(k) + "\":" + std::to_string(v); };
  auto i = [&](const char* k, int64_t v) { s += ",\"" + std::string(k) + "\":" + std::to_string(v); };
  i("tcpStart", r.tcp_start), i("tcpEnd", r.tcp_end), i("udpStart", r.udp_start), i("udpEnd", r.udp_end);
  i("connsOk", r.conns_ok), i("connsFailed", r.conns_failed);
  u("tcpBytes", r.tcp_bytes), u("tcpSegsOut", r.tcp_segs_out), u("tcpSegsIn", r.tcp_segs_in);
  u("udpSent", r.udp_sent), u("udpBytes", r.udp_bytes), u("udpErrors", r.udp_errors);
  s += ",\"error\":\"" + r.error + "\",\"connectNs\":[";  // error text has no quotes
  for (size_t k = 0; k < r.connect_ns.size(); ++k) s += (k ? "," : "") + std::to_string(r.connect_ns[k]);
  s += "]}\n";
  (void)!::write(1, s.data(), s.size());
}

}  // namespace

int run_client(const ClientOptions& o) {
  ClientResult r;
  // The barrier: every cell of the run starts its load at once, so connections/s measures N
  // cells in parallel rather than the daemon's spawn rate.
  int64_t t0 = mono_ns();
  if (!o.go_file.empty()) {
    struct stat st{};
    while (::stat(o.go_file.c_str(), &st) != 0) {
      if (mono_ns() - t0 > int64_t{o.go_timeout_s} * 1000000000) {
        r.error = "start barrier: " + o.go_file + " did not appear";
        print(r);
        return 2;
      }
      timespec ms{0, 1000000};
      ::nanosleep(&ms, nullptr);
    }
  }
  r.go_wait_ns = mono_ns() - t0;
  sockaddr_in to = address(o.server, o.tcp_port);
  r.tcp_start = mono_ns();
  for (long k = 0; k < o.conns; ++k) one_connection(o, to, r);
  r.tcp_end = mono_ns();
  if (o.udp_packets > 0) udp_flood(o, r);
  print(r);
  return r.conns_failed == 0 ? 0 : 1;
}

namespace {

int listen_on(int type, const std::string& ip) {
  int fd = ::socket(AF_INET, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (type == SOCK_DGRAM) {
    // A flood must not be lost to a small socket buffer while the sink waits for a CPU.
    int big = 64 << 20;
    if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big) != 0)
      ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  }
  sockaddr_in a = address(ip, 0);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return -1;
  if (type == SOCK_STREAM && ::listen(fd, 4096) != 0) return -1;
  return fd;
}

int port_of(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

struct Counts {
  uint64_t conns = 0, bytes = 0, datagrams = 0, udp_bytes = 0;
};

void drain_udp(int fd, Counts& c) {
  constexpr int kBatch = 64;
  static char bufs[kBatch][2048];
  iovec iov[kBatch];
  mmsghdr msgs[kBatch]{};
  for (int k = 0; k < kBatch; ++k) {
    iov[k] = {bufs[k], sizeof bufs[k]};
    msgs[k].msg_hdr.msg_iov = &iov[k];
    msgs[k].msg_hdr.msg_iovlen = 1;
  }
  for (;;) {
    int n = ::recvmmsg(fd, msgs, kBatch, MSG_DONTWAIT, nullptr);
    if (n <= 0) return;
    c.datagrams += static_cast<uint64_t>(n);
    for (int k = 0; k < n; ++k) c.udp_bytes += msgs[k].msg_len;
  }
}

}  // namespace

int run_server(const std::string& ip) {
  int tcp = listen_on(SOCK_STREAM, ip), udp = listen_on(SOCK_DGRAM, ip);
  if (tcp < 0 || udp < 0) {
    std::fprintf(stderr, "flow_bench --serve: bind %s: %s\n", ip.c_str(), strerrorname_np(errno));
    return 1;
  }
  std::printf("ready %d %d\n", port_of(tcp), port_of(udp));
  std::fflush(stdout);
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  auto watch = [&](int fd) {
    epoll_event ev{EPOLLIN, {}};
    ev.data.fd = fd;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  };
  ::fcntl(0, F_SETFL, O_NONBLOCK);
  watch(0), watch(tcp), watch(udp);
  Counts c;
  static char buf[1 << 18];
  std::string control;
  epoll_event evs[256];
  for (;;) {
    int n = ::epoll_wait(ep, evs, 256, -1);
    if (n < 0 && errno == EINTR) continue;
    for (int k = 0; k < n; ++k) {
      int fd = evs[k].data.fd;
      if (fd == tcp) {
        int s;
        while ((s = ::accept4(tcp, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
          watch(s);
        }
      } else if (fd == udp) {
        drain_udp(udp, c);
      } else if (fd == 0) {
        ssize_t r = ::read(0, buf, sizeof buf);
        if (r == 0) return 0;  // the driver is done (or gone)
        if (r < 0) continue;
        control.append(buf, static_cast<size_t>(r));
        while (control.find('\n') != std::string::npos) {
          control.erase(0, control.find('\n') + 1);
          drain_udp(udp, c);  // what is queued belongs to the run just finished
          std::printf("counts %lu %lu %lu %lu\n", c.conns, c.bytes, c.datagrams, c.udp_bytes);
          std::fflush(stdout);
          c = {};
        }
      } else {
        for (;;) {
          ssize_t r = ::read(fd, buf, sizeof buf);
          if (r > 0) {
            c.bytes += static_cast<uint64_t>(r);
            continue;
          }
          if (r < 0 && (errno == EAGAIN || errno == EINTR)) break;
          // EOF (the client's FIN) or a reset: the connection is done; closing sends our FIN.
          if (r == 0) ++c.conns;
          ::close(fd);  // also leaves the epoll set
          break;
        }
      }
    }
  }
}

}  // namespace cellos::flowbench
