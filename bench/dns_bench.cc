// DNS authority: what the per-cell proxy (netns/dns_proxy.h) costs. One reactor ring drives
// 100 proxies at once (one per simulated cell, on loopback ports of this process's namespace),
// in front of a real DNS server (dnsmasq on loopback). A client thread measures:
//
//   latency   one query at a time, alternating: straight to dnsmasq, and through a proxy
//             (round-robin over the 100); the added latency is the difference of medians
//   permitted queries/s through all 100 proxies with 256 in flight (proxy + dnsmasq: dnsmasq
//             is single-threaded, so this is the pair's rate, not the proxy's alone)
//   refused   queries/s of names off the allow-list, answered by the proxies themselves
//
// Traffic: loopback only. Usage: dns_bench [-n latency_samples] [--seconds S]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "base/completion.h"
#include "bench/report_line.h"
#include "netns/dns_proxy.h"
#include "reactor/ring.h"

// Last: ldns's headers define macros (false, true) that break <optional> included after them.
#include <ldns/ldns.h>

extern char** environ;

using namespace cellos;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kCells = 100;

int free_port() {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

std::vector<uint8_t> make_query(const char* name, uint16_t id) {
  ldns_pkt* p = nullptr;
  ldns_pkt_query_new_frm_str(&p, name, LDNS_RR_TYPE_A, LDNS_RR_CLASS_IN, LDNS_RD);
  ldns_pkt_set_id(p, id);
  uint8_t* buf = nullptr;
  size_t size = 0;
  ldns_pkt2wire(&buf, p, &size);
  std::vector<uint8_t> out(buf, buf + size);
  std::free(buf);
  ldns_pkt_free(p);
  return out;
}

sockaddr_in loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  return a;
}

// One query, one answer, blocking (1 s timeout). Nanoseconds, or -1.
int64_t exchange(int fd, int port, const std::vector<uint8_t>& q) {
  sockaddr_in a = loopback(port);
  auto t0 = Clock::now();
  if (::sendto(fd, q.data(), q.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return -1;
  uint8_t buf[1500];
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, 1000) != 1 || ::recv(fd, buf, sizeof buf, 0) <= 0) return -1;
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count();
}

// Answers/s with `window` queries in flight, spread over `ports`, for `seconds`.
double rate(const std::vector<int>& ports, const char* name, double seconds, int window) {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  int big = 4 << 20;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  auto q = make_query(name, 1);
  size_t next = 0;
  uint64_t answered = 0;
  int in_flight = 0;
  auto send_one = [&] {
    sockaddr_in a = loopback(ports[next++ % ports.size()]);
    if (::sendto(fd, q.data(), q.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof a) > 0) ++in_flight;
  };
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  while (in_flight < window) send_one();
  auto last_progress = Clock::now();
  while (Clock::now() < end) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 10) == 1) {
      uint8_t buf[1500];
      while (::recv(fd, buf, sizeof buf, 0) > 0) {
        ++answered;
        --in_flight;
        last_progress = Clock::now();
      }
    }
    // Lost datagrams (a full socket buffer) would shrink the window for good: refill it.
    if (Clock::now() - last_progress > std::chrono::milliseconds(200)) in_flight = 0;
    while (in_flight < window) send_one();
  }
  ::close(fd);
  return static_cast<double>(answered) / seconds;
}

int64_t percentile(std::vector<int64_t> v, double p) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace

int main(int argc, char** argv) {
  int samples = 2000;
  double seconds = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "-n")) samples = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--seconds")) seconds = std::atof(argv[i + 1]);
  }
  if (::access("/usr/sbin/dnsmasq", X_OK) != 0) {
    std::fprintf(stderr, "dns_bench: needs /usr/sbin/dnsmasq (dnsmasq-base)\n");
    return 2;
  }
  const int dns_port = free_port();
  std::vector<std::string> args{"/usr/sbin/dnsmasq", "--keep-in-foreground", "--no-resolv",
                                "--no-hosts", "--bind-interfaces", "--listen-address=127.0.0.1",
                                "--port=" + std::to_string(dns_port), "--pid-file=", "--user=root",
                                "--log-facility=/dev/null", "--local-ttl=300",
                                "--address=/bench.cellos.test/10.1.2.3"};
  std::vector<char*> av;
  for (auto& a : args) av.push_back(a.data());
  av.push_back(nullptr);
  pid_t dnsmasq = -1;
  if (posix_spawn(&dnsmasq, av[0], nullptr, nullptr, av.data(), environ) != 0) return 2;
  ::usleep(300000);

  auto ring = reactor::Ring::create({});
  if (!ring) return 2;
  std::vector<std::unique_ptr<netns::DnsProxy>> proxies;
  std::vector<int> ports;
  for (int i = 0; i < kCells; ++i) {
    netns::DnsProxyOptions o;
    o.listen_port = 0;
    o.upstreams = {"127.0.0.1:" + std::to_string(dns_port)};
    o.allowed = [](std::string_view n) { return n == "bench.cellos.test"; };
    auto p = netns::DnsProxy::open(**ring, std::move(o));
    if (!p) {
      std::fprintf(stderr, "dns_bench: %s\n", p.error().message().c_str());
      return 2;
    }
    ports.push_back((*p)->udp_port());
    proxies.push_back(std::move(*p));
  }

  std::atomic<bool> done{false};
  std::vector<int64_t> direct, proxied;
  double permitted_qps = 0, refused_qps = 0;
  std::thread client([&] {
    int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    for (int i = 0; i < samples; ++i) {
      auto q = make_query("bench.cellos.test", static_cast<uint16_t>(i));
      int64_t d = exchange(fd, dns_port, q);
      int64_t p = exchange(fd, ports[static_cast<size_t>(i) % ports.size()], q);
      if (d > 0) direct.push_back(d);
      if (p > 0) proxied.push_back(p);
    }
    ::close(fd);
    permitted_qps = rate(ports, "bench.cellos.test", seconds, 256);
    refused_qps = rate(ports, "other.cellos.test", seconds, 256);
    done = true;
  });
  // The reactor's side: the ring, woken every 10 ms to see whether the client is done.
  base::Timer tick(ring->get());
  std::function<void(int)> again = [&](int) {
    if (!done) tick.start(std::chrono::milliseconds(10), again);
  };
  tick.start(std::chrono::milliseconds(10), again);
  while (!done || tick.armed()) (void)(*ring)->run_once();
  client.join();

  uint64_t permitted = 0, refused = 0;
  for (auto& p : proxies) permitted += p->stats().permitted, refused += p->stats().refused;
  proxies.clear();
  ::kill(dnsmasq, SIGTERM);
  ::waitpid(dnsmasq, nullptr, 0);

  auto us = [](int64_t ns) { return static_cast<double>(ns) / 1000.0; };
  std::printf("dns proxy benchmark: %d proxies on one ring, dnsmasq upstream on loopback\n", kCells);
  std::printf("latency (%zu/%zu samples)  direct: median %.1f us, p99 %.1f us\n", direct.size(),
              proxied.size(), us(percentile(direct, 0.5)), us(percentile(direct, 0.99)));
  std::printf("                          proxy:  median %.1f us, p99 %.1f us\n",
              us(percentile(proxied, 0.5)), us(percentile(proxied, 0.99)));
  std::printf("added latency per query (median): %.1f us\n",
              us(percentile(proxied, 0.5) - percentile(direct, 0.5)));
  std::printf("permitted queries/s over %d proxies (with dnsmasq): %.0f\n", kCells, permitted_qps);
  std::printf("refused queries/s over %d proxies (proxy alone):    %.0f\n", kCells, refused_qps);
  std::printf("proxy counters: permitted %llu, refused %llu\n",
              static_cast<unsigned long long>(permitted), static_cast<unsigned long long>(refused));
  // The line bench/report.py reads, and the raw latencies when CELLOS_BENCH_OUT is set.
  cellos::bench::ReportLine rep("dns");
  rep.row("direct to dnsmasq", {{"median us", us(percentile(direct, 0.5))},
                                {"p99 us", us(percentile(direct, 0.99))}})
      .row("through a proxy", {{"median us", us(percentile(proxied, 0.5))},
                               {"p99 us", us(percentile(proxied, 0.99))}})
      .metric("added latency per query (median)",
              us(percentile(proxied, 0.5) - percentile(direct, 0.5)), "us")
      .metric("permitted queries/s, 100 proxies + dnsmasq", permitted_qps, "queries/s")
      .metric("refused queries/s, 100 proxies alone", refused_qps, "queries/s")
      .field("reproduce", std::string(argv[0]) + " -n " + std::to_string(samples) + " --seconds " +
                              std::to_string(seconds));
  if (std::string path = cellos::bench::out_path("dns-latency.csv"); !path.empty()) {
    if (FILE* f = std::fopen(path.c_str(), "w")) {
      std::fprintf(f, "row,iteration,us\n");
      for (size_t i = 0; i < direct.size(); ++i) std::fprintf(f, "direct,%zu,%.3f\n", i, us(direct[i]));
      for (size_t i = 0; i < proxied.size(); ++i) std::fprintf(f, "proxy,%zu,%.3f\n", i, us(proxied[i]));
      std::fclose(f);
      rep.field("samples", path);
    }
  }
  rep.print();
  return 0;
}
