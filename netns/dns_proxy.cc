#include "netns/dns_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include "base/fd.h"
#include "netns/loopback.h"

namespace cellos::netns {

using Clock = std::chrono::steady_clock;

base::Result<std::pair<sockaddr_storage, socklen_t>> parse_dns_endpoint(const std::string& s) {
  sockaddr_storage ss{};
  std::string host = s;
  unsigned long port = 53;
  auto bad = [&] {
    return base::value_error("dns endpoint", "\"" + s + "\" is not \"ip\", \"ip:port\" or \"[v6]:port\"");
  };
  auto read_port = [&](const std::string& p) {
    if (p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos)
      return false;
    port = std::stoul(p);
    return port >= 1 && port <= 65535;
  };
  in6_addr a6{};
  if (inet_pton(AF_INET6, s.c_str(), &a6) != 1) {
    if (!s.empty() && s.front() == '[') {
      auto close = s.find(']');
      if (close == std::string::npos || close + 1 >= s.size() || s[close + 1] != ':') return bad();
      host = s.substr(1, close - 1);
      if (!read_port(s.substr(close + 2)) || inet_pton(AF_INET6, host.c_str(), &a6) != 1)
        return bad();
    } else {
      if (auto colon = s.find(':'); colon != std::string::npos) {
        host = s.substr(0, colon);
        if (!read_port(s.substr(colon + 1))) return bad();
      }
      in_addr a4{};
      if (inet_pton(AF_INET, host.c_str(), &a4) != 1) return bad();
      auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
      sin->sin_family = AF_INET;
      sin->sin_addr = a4;
      sin->sin_port = htons(static_cast<uint16_t>(port));
      return std::pair{ss, static_cast<socklen_t>(sizeof(sockaddr_in))};
    }
  }
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_addr = a6;
  sin6->sin6_port = htons(static_cast<uint16_t>(port));
  return std::pair{ss, static_cast<socklen_t>(sizeof(sockaddr_in6))};
}

namespace {

std::string endpoint_text(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    auto* sin = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof buf);
    return std::string(buf) + ":" + std::to_string(ntohs(sin->sin_port));
  }
  auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&ss);
  inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof buf);
  return "[" + std::string(buf) + "]:" + std::to_string(ntohs(sin6->sin6_port));
}

bool would_block(int err) { return err == EAGAIN || err == EWOULDBLOCK; }

}  // namespace

struct DnsProxy::Core {
  // One ring operation. Its function captures ids, never pointers to things that may be gone
  // by its completion (a client connection, a pending query).
  struct Op final : base::Completion {
    Core* core = nullptr;
    uint64_t tag = 0;  // a client connection's id, or kUpTag | an upstream attempt: cancel_tag()
    std::function<void(int)> fn;
    void complete(int res) override {
      Core* c = core;
      c->ops.erase(this);
      auto f = std::move(fn);
      delete this;
      if (c->closing) {
        if (c->ops.empty()) delete c;
        return;
      }
      f(res);
    }
  };

  struct Upstream {
    sockaddr_storage addr{};
    socklen_t len = 0;
    std::string text;
    base::Fd udp;  // connected: the kernel drops datagrams from anyone else
  };

  struct TcpClient {
    base::Fd fd;
    std::vector<uint8_t> in, out;
    bool eof = false, reading = false, writing = false;
    size_t waiting = 0;  // its queries in flight
    Clock::time_point last_active;
  };

  // A forwarded query, by the id it carries upstream.
  struct Pending {
    bool tcp = false;                 // the client's transport, and so the upstream's
    sockaddr_storage client{};        // UDP client
    socklen_t client_len = 0;
    uint64_t conn = 0;                // TCP client
    uint16_t client_id = 0;
    DnsQuestion question;
    std::vector<uint8_t> wire;        // the query with the upstream id
    size_t upstream = 0;
    int tries_left = 0;
    Clock::time_point sent, deadline;
    // TCP upstream: its connection and what it has read so far.
    base::Fd up_fd;
    std::vector<uint8_t> up_in;
    uint64_t attempt = 0;  // bumps on retry: completions of an older attempt are ignored
  };

  base::IoPort& io;
  DnsProxyOptions o;
  DnsProxyStats stats;
  std::unordered_set<Op*> ops;
  bool closing = false;
  base::Fd udp, tcp;
  uint16_t udp_port = 0, tcp_port = 0;
  std::vector<Upstream> upstreams;
  size_t next_upstream = 0;
  std::unordered_map<uint16_t, Pending> pending;
  std::map<uint64_t, TcpClient> clients;
  uint64_t next_conn = 1, next_attempt = 1;
  bool sweeping = false;
  std::array<uint8_t, 65536 + 2> buf{};

  Core(base::IoPort& port, DnsProxyOptions opts) : io(port), o(std::move(opts)) {}

  static constexpr uint64_t kUpTag = 1ull << 63;

  void start(std::function<void(int)> fn, const std::function<void(Op&)>& submit,
             uint64_t tag = 0) {
    auto* op = new Op;
    op->core = this;
    op->tag = tag;
    op->fn = std::move(fn);
    ops.insert(op);
    submit(*op);
  }
  void poll(int fd, short events, std::function<void(int)> fn, uint64_t tag = 0) {
    start(std::move(fn), [&](Op& op) { io.poll(fd, events, op); }, tag);
  }
  // A poll holds its file until it completes, closed fd or not: the polls of a connection
  // that is gone are cancelled, and their completions find nothing to do.
  void cancel_tag(uint64_t tag) {
    for (Op* op : ops)
      if (op->tag == tag) io.cancel(*op);
  }
  void drop_upstream_tcp(Pending& p) {
    if (!p.up_fd) return;
    cancel_tag(kUpTag | p.attempt);
    p.up_fd = base::Fd();
  }
  void after(std::chrono::nanoseconds d, std::function<void(int)> fn) {
    start(std::move(fn), [&](Op& op) { io.timeout(d, op); });
  }

  void close() {
    closing = true;
    if (ops.empty()) {
      delete this;
      return;
    }
    std::vector<Op*> all(ops.begin(), ops.end());
    for (Op* op : all) io.cancel(*op);
  }

  // ---- reports

  void report(const Pending& p, bool permitted, const std::string& reason, uint8_t rcode,
              std::vector<std::string> answers = {}, std::optional<int64_t> latency = {}) {
    if (permitted) ++stats.permitted;
    else if (rcode == kRcodeRefused) ++stats.refused;
    else ++stats.failed;
    if (!o.on_query) return;
    DnsQueryReport r;
    r.name = p.question.name;
    r.qtype = p.question.qtype;
    r.transport = p.tcp ? "tcp" : "udp";
    r.permitted = permitted;
    r.reason = reason;
    r.rcode = rcode;
    r.answers = std::move(answers);
    r.upstream_latency_us = latency;
    if (latency) r.upstream = upstreams[p.upstream].text;
    o.on_query(r);
  }

  // Never answered: a reply to garbage is what a reflection attack wants.
  void dropped(const Pending& p, const char* reason) {
    if (std::string_view(reason) == "oversized_query") ++stats.oversized;
    else ++stats.malformed;
    if (!o.on_query) return;
    DnsQueryReport r;
    r.transport = p.tcp ? "tcp" : "udp";
    r.reason = reason;
    r.dropped = true;
    o.on_query(r);
  }

  // ---- replies to the cell

  void reply(const Pending& p, std::vector<uint8_t> wire) {
    set_message_id(wire, p.client_id);
    if (!p.tcp) {
      // A full socket buffer loses the answer; the client asks again, as over any UDP path.
      (void)::sendto(udp.get(), wire.data(), wire.size(), MSG_DONTWAIT,
                     reinterpret_cast<const sockaddr*>(&p.client), p.client_len);
      return;
    }
    auto it = clients.find(p.conn);
    if (it == clients.end()) return;  // the client hung up meanwhile
    TcpClient& c = it->second;
    if (c.waiting) --c.waiting;
    c.out.push_back(static_cast<uint8_t>(wire.size() >> 8));
    c.out.push_back(static_cast<uint8_t>(wire.size()));
    c.out.insert(c.out.end(), wire.begin(), wire.end());
    flush_client(p.conn);
  }

  void answer_locally(Pending& p, std::span<const uint8_t> query, uint8_t rcode,
                      const std::string& reason) {
    auto wire = empty_answer(query, rcode);
    report(p, false, reason, rcode);
    if (wire) return reply(p, std::move(*wire));
    if (auto it = clients.find(p.conn); p.tcp && it != clients.end()) {
      if (it->second.waiting) --it->second.waiting;
      close_client_if_done(p.conn);
    }
  }

  // ---- queries from the cell

  void on_query(std::span<const uint8_t> wire, Pending&& p) {
    ++stats.queries;
    if (wire.size() > kMaxDnsQueryBytes) return dropped(p, "oversized_query");
    auto q = parse_query(wire);
    if (!q) return dropped(p, "malformed_query");
    p.question = std::move(*q);
    p.client_id = p.question.id;
    if (p.tcp) ++clients[p.conn].waiting;
    if (p.question.qclass != kDnsClassIn)
      return answer_locally(p, wire, kRcodeRefused, "query_class_not_allowed");
    if (!o.allowed || !o.allowed(p.question.name))
      return answer_locally(p, wire, kRcodeRefused, "hostname_not_allowlisted");
    const uint16_t t = p.question.qtype;
    if (t != kDnsTypeA && t != kDnsTypeAaaa && t != kDnsTypeCname)
      return answer_locally(p, wire, kRcodeRefused, "query_type_not_allowed");
    if (pending.size() >= o.max_pending)
      return answer_locally(p, wire, kRcodeServfail, "proxy_busy");
    uint16_t id = 0;
    do {
      if (::getrandom(&id, sizeof id, GRND_NONBLOCK) != sizeof id) id = static_cast<uint16_t>(std::rand());
    } while (pending.count(id));
    p.wire.assign(wire.begin(), wire.end());
    set_message_id(p.wire, id);
    p.tries_left = std::max(1, o.tries);
    p.upstream = next_upstream++ % upstreams.size();
    auto [it, _] = pending.emplace(id, std::move(p));
    send_upstream(id, it->second);
    arm_sweep();
  }

  void send_upstream(uint16_t id, Pending& p) {
    --p.tries_left;
    drop_upstream_tcp(p);
    p.attempt = next_attempt++;
    p.sent = Clock::now();
    p.deadline = p.sent + o.timeout;
    Upstream& u = upstreams[p.upstream];
    if (!p.tcp) {
      // Failing here (a full buffer, an unreachable route) is left to the retry at the deadline.
      (void)::send(u.udp.get(), p.wire.data(), p.wire.size(), MSG_DONTWAIT);
      return;
    }
    p.up_in.clear();
    p.up_fd = base::Fd(::socket(u.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!p.up_fd) return;
    if (::connect(p.up_fd.get(), reinterpret_cast<const sockaddr*>(&u.addr), u.len) != 0 &&
        errno != EINPROGRESS) {
      p.up_fd = base::Fd();
      return;
    }
    const uint64_t attempt = p.attempt;
    poll(p.up_fd.get(), POLLOUT, [this, id, attempt](int res) { on_tcp_up_writable(id, attempt, res); },
         kUpTag | attempt);
  }

  Pending* current(uint16_t id, uint64_t attempt) {
    auto it = pending.find(id);
    if (it == pending.end() || it->second.attempt != attempt || !it->second.up_fd) return nullptr;
    return &it->second;
  }

  void on_tcp_up_writable(uint16_t id, uint64_t attempt, int res) {
    Pending* p = current(id, attempt);
    if (!p) return;
    int err = 0;
    socklen_t len = sizeof err;
    if (res < 0 || ::getsockopt(p->up_fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err) {
      p->up_fd = base::Fd();  // the sweep retries or gives up
      return;
    }
    std::vector<uint8_t> frame(2 + p->wire.size());
    frame[0] = static_cast<uint8_t>(p->wire.size() >> 8);
    frame[1] = static_cast<uint8_t>(p->wire.size());
    std::copy(p->wire.begin(), p->wire.end(), frame.begin() + 2);
    // Under 520 bytes into an empty, just-connected socket buffer: sent whole or not at all.
    if (::send(p->up_fd.get(), frame.data(), frame.size(), MSG_DONTWAIT | MSG_NOSIGNAL) !=
        static_cast<ssize_t>(frame.size())) {
      p->up_fd = base::Fd();
      return;
    }
    poll(p->up_fd.get(), POLLIN, [this, id, attempt](int r) { on_tcp_up_readable(id, attempt, r); },
         kUpTag | attempt);
  }

  void on_tcp_up_readable(uint16_t id, uint64_t attempt, int res) {
    Pending* p = current(id, attempt);
    if (!p) return;
    if (res < 0) {
      p->up_fd = base::Fd();
      return;
    }
    for (;;) {
      ssize_t n = ::recv(p->up_fd.get(), buf.data(), buf.size(), MSG_DONTWAIT);
      if (n < 0 && would_block(errno)) break;
      if (n <= 0) {
        p->up_fd = base::Fd();
        return;
      }
      p->up_in.insert(p->up_in.end(), buf.begin(), buf.begin() + n);
      if (p->up_in.size() >= 2) {
        size_t want = static_cast<size_t>(p->up_in[0]) << 8 | p->up_in[1];
        if (p->up_in.size() >= 2 + want) {
          std::vector<uint8_t> msg(p->up_in.begin() + 2, p->up_in.begin() + 2 + static_cast<long>(want));
          drop_upstream_tcp(*p);
          return on_upstream_answer(id, msg);
        }
      }
    }
    poll(p->up_fd.get(), POLLIN, [this, id, attempt](int r) { on_tcp_up_readable(id, attempt, r); },
         kUpTag | attempt);
  }

  // ---- answers from upstream

  void on_upstream_answer(uint16_t id, std::vector<uint8_t>& wire) {
    auto it = pending.find(id);
    if (it == pending.end()) {
      ++stats.upstream_bad_answers;
      return;
    }
    Pending& p = it->second;
    auto a = parse_answer(wire);
    if (!a || a->question.name != p.question.name || a->question.qtype != p.question.qtype ||
        a->question.qclass != p.question.qclass) {
      ++stats.upstream_bad_answers;  // not the answer to this question: wait for the real one
      return;
    }
    drop_upstream_tcp(p);
    Pending done = std::move(p);
    pending.erase(it);
    const int64_t latency =
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - done.sent).count();
    if (o.on_answer) {
      if (auto why = o.on_answer(*a)) {
        auto refused = empty_answer(wire, kRcodeRefused);
        report(done, false, *why, kRcodeRefused, {}, latency);
        if (refused) reply(done, std::move(*refused));
        return;
      }
    }
    std::vector<std::string> answers;
    for (const auto& r : a->records) answers.push_back(r.data);
    report(done, true, "allowlist_match", a->rcode, std::move(answers), latency);
    reply(done, std::move(wire));
  }

  void on_upstream_readable(size_t i, int res) {
    if (res >= 0) {
      for (int n = 0; n < 64; ++n) {
        ssize_t got = ::recv(upstreams[i].udp.get(), buf.data(), buf.size(), MSG_DONTWAIT);
        if (got < 0 && would_block(errno)) break;
        if (got < 0) continue;  // ICMP errors (ECONNREFUSED) surface here: the retry handles them
        std::vector<uint8_t> wire(buf.begin(), buf.begin() + got);
        on_upstream_answer(message_id(wire), wire);
      }
    }
    arm_upstream(i);
  }
  void arm_upstream(size_t i) {
    poll(upstreams[i].udp.get(), POLLIN, [this, i](int res) { on_upstream_readable(i, res); });
  }

  // ---- deadlines: retries, SERVFAIL, idle TCP clients

  void arm_sweep() {
    if (sweeping) return;
    sweeping = true;
    after(std::chrono::milliseconds(50), [this](int) {
      sweeping = false;
      sweep();
    });
  }

  void sweep() {
    const auto now = Clock::now();
    std::vector<uint16_t> due;
    for (auto& [id, p] : pending)
      if (now >= p.deadline) due.push_back(id);
    for (uint16_t id : due) {
      Pending& p = pending.at(id);
      if (p.tries_left > 0) {
        ++stats.upstream_retries;
        p.upstream = (p.upstream + 1) % upstreams.size();
        send_upstream(id, p);
        continue;
      }
      drop_upstream_tcp(p);
      Pending dead = std::move(p);
      pending.erase(id);
      auto wire = empty_answer(dead.wire, kRcodeServfail);
      report(dead, false, "upstream_timeout", kRcodeServfail);
      if (wire) reply(dead, std::move(*wire));
    }
    std::vector<uint64_t> idle;
    for (auto& [id, c] : clients)
      if (c.waiting == 0 && c.out.empty() && now - c.last_active >= o.tcp_idle) idle.push_back(id);
    for (uint64_t id : idle) close_client(id);
    if (!pending.empty() || !clients.empty()) arm_sweep();
  }

  // ---- the cell's UDP socket

  void arm_udp() {
    poll(udp.get(), POLLIN, [this](int res) { on_udp_readable(res); });
  }
  void on_udp_readable(int res) {
    if (res >= 0) {
      for (int n = 0; n < 64; ++n) {
        Pending p;
        p.client_len = sizeof p.client;
        // MSG_TRUNC: the datagram's real length, so an oversized one is seen as such.
        ssize_t got = ::recvfrom(udp.get(), buf.data(), kMaxDnsQueryBytes + 1, MSG_DONTWAIT | MSG_TRUNC,
                                 reinterpret_cast<sockaddr*>(&p.client), &p.client_len);
        if (got < 0 && would_block(errno)) break;
        if (got < 0) continue;
        const size_t len = static_cast<size_t>(got);
        if (len > kMaxDnsQueryBytes) {
          ++stats.queries;
          dropped(p, "oversized_query");
          continue;
        }
        on_query(std::span<const uint8_t>(buf.data(), len), std::move(p));
      }
    }
    arm_udp();
  }

  // ---- the cell's TCP socket

  void arm_accept() {
    poll(tcp.get(), POLLIN, [this](int res) { on_acceptable(res); });
  }
  void on_acceptable(int res) {
    if (res >= 0) {
      for (int n = 0; n < 16; ++n) {
        int fd = ::accept4(tcp.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) break;
        if (clients.size() >= o.max_tcp_clients) {
          ++stats.tcp_refused;
          ::close(fd);
          continue;
        }
        ++stats.tcp_connections;
        const uint64_t id = next_conn++;
        TcpClient& c = clients[id];
        c.fd = base::Fd(fd);
        c.last_active = Clock::now();
        arm_client_read(id);
        arm_sweep();
      }
    }
    arm_accept();
  }

  void arm_client_read(uint64_t id) {
    TcpClient& c = clients.at(id);
    if (c.reading || c.eof) return;
    c.reading = true;
    poll(c.fd.get(), POLLIN, [this, id](int res) { on_client_readable(id, res); }, id);
  }

  void on_client_readable(uint64_t id, int res) {
    auto it = clients.find(id);
    if (it == clients.end()) return;
    it->second.reading = false;
    if (res < 0) return close_client(id);
    for (;;) {
      TcpClient& c = clients.at(id);
      ssize_t n = ::recv(c.fd.get(), buf.data(), 4096, MSG_DONTWAIT);
      if (n < 0 && would_block(errno)) break;
      if (n <= 0) {
        c.eof = true;
        break;
      }
      c.last_active = Clock::now();
      c.in.insert(c.in.end(), buf.begin(), buf.begin() + n);
      while (clients.count(id)) {
        TcpClient& cc = clients.at(id);
        if (cc.in.size() < 2) break;
        const size_t len = static_cast<size_t>(cc.in[0]) << 8 | cc.in[1];
        if (len > kMaxDnsQueryBytes) {
          ++stats.queries;
          Pending p;
          p.tcp = true;
          dropped(p, "oversized_query");
          return close_client(id);  // the stream cannot be resynchronised
        }
        if (cc.in.size() < 2 + len) break;
        std::vector<uint8_t> msg(cc.in.begin() + 2, cc.in.begin() + 2 + static_cast<long>(len));
        cc.in.erase(cc.in.begin(), cc.in.begin() + 2 + static_cast<long>(len));
        Pending p;
        p.tcp = true;
        p.conn = id;
        on_query(msg, std::move(p));
      }
      if (!clients.count(id)) return;
      if (clients.at(id).in.size() > 2 + kMaxDnsQueryBytes) return close_client(id);
    }
    close_client_if_done(id);
    if (clients.count(id)) arm_client_read(id);
  }

  void flush_client(uint64_t id) {
    auto it = clients.find(id);
    if (it == clients.end()) return;
    TcpClient& c = it->second;
    while (!c.out.empty()) {
      ssize_t n = ::send(c.fd.get(), c.out.data(), c.out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n < 0 && would_block(errno)) {
        if (!c.writing) {
          c.writing = true;
          poll(c.fd.get(), POLLOUT, [this, id](int res) {
            auto i = clients.find(id);
            if (i == clients.end()) return;
            i->second.writing = false;
            if (res < 0) return close_client(id);
            flush_client(id);
          }, id);
        }
        return;
      }
      if (n <= 0) return close_client(id);
      c.out.erase(c.out.begin(), c.out.begin() + n);
    }
    c.last_active = Clock::now();
    close_client_if_done(id);
  }

  void close_client_if_done(uint64_t id) {
    auto it = clients.find(id);
    if (it == clients.end()) return;
    const TcpClient& c = it->second;
    if (c.eof && c.waiting == 0 && c.out.empty()) close_client(id);
  }
  void close_client(uint64_t id) {
    cancel_tag(id);
    clients.erase(id);
  }
};

base::Result<std::unique_ptr<DnsProxy>> DnsProxy::open(base::IoPort& io, DnsProxyOptions o) {
  if (o.upstreams.empty()) return base::value_error("dns proxy", "no upstream resolver");
  auto core = std::make_unique<Core>(io, std::move(o));
  for (const auto& text : core->o.upstreams) {
    auto ep = parse_dns_endpoint(text);
    if (!ep) return std::move(ep).error();
    Core::Upstream u;
    u.addr = ep->first;
    u.len = ep->second;
    u.text = endpoint_text(u.addr);
    u.udp = base::Fd(::socket(u.addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!u.udp) return base::sys_error("socket", "dns upstream " + u.text);
    if (::connect(u.udp.get(), reinterpret_cast<const sockaddr*>(&u.addr), u.len) != 0)
      return base::sys_error("connect", "dns upstream " + u.text);
    core->upstreams.push_back(std::move(u));
  }

  auto listen_addr = parse_dns_endpoint(
      core->o.listen_address.find(':') != std::string::npos
          ? "[" + core->o.listen_address + "]:" + std::to_string(core->o.listen_port ? core->o.listen_port : 1)
          : core->o.listen_address + ":" + std::to_string(core->o.listen_port ? core->o.listen_port : 1));
  if (!listen_addr) return std::move(listen_addr).error();
  auto& [la, la_len] = *listen_addr;
  if (!core->o.listen_port) reinterpret_cast<sockaddr_in*>(&la)->sin_port = 0;  // same offset in v6

  {
    // The listening sockets belong to the cell's namespace: enter it, open them, come back.
    base::Fd home;
    if (core->o.netns_fd >= 0) {
      home = base::Fd(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
      if (!home) return base::sys_error("open", "/proc/thread-self/ns/net");
      if (::setns(core->o.netns_fd, CLONE_NEWNET) != 0) return base::sys_error("setns", "cell netns");
    }
    auto open_sockets = [&]() -> base::Result<void> {
      if (core->o.netns_fd >= 0) {
        if (int err = bring_up_loopback(); err != 0)
          return base::Error{err, "bring_up_loopback", "cell netns", {}, {}};
      }
      sockaddr_storage bound{};
      socklen_t blen = sizeof bound;
      // Without a fixed port (tests, benchmarks), TCP takes the port UDP got, so clients use
      // one port for both; another TCP socket may hold it already, then both try again.
      for (int attempt = 0;; ++attempt) {
        core->udp = base::Fd(::socket(la.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        core->tcp = base::Fd(::socket(la.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        if (!core->udp || !core->tcp) return base::sys_error("socket", "dns proxy");
        int one = 1;
        ::setsockopt(core->tcp.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (::bind(core->udp.get(), reinterpret_cast<sockaddr*>(&la), la_len) != 0)
          return base::sys_error("bind", "dns proxy udp " + endpoint_text(la));
        blen = sizeof bound;
        ::getsockname(core->udp.get(), reinterpret_cast<sockaddr*>(&bound), &blen);
        if (::bind(core->tcp.get(), reinterpret_cast<sockaddr*>(&bound), blen) == 0) break;
        if (errno != EADDRINUSE || core->o.listen_port != 0 || attempt >= 16)
          return base::sys_error("bind", "dns proxy tcp " + endpoint_text(bound));
      }
      if (::listen(core->tcp.get(), 16) != 0) return base::sys_error("listen", "dns proxy");
      core->udp_port = core->tcp_port = ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
      return base::ok();
    };
    auto opened = open_sockets();
    if (home && ::setns(home.get(), CLONE_NEWNET) != 0) {
      // As in cell_net.cc: the reactor left in a cell's namespace could trust nothing after.
      std::perror("cellos-reactor: setns back to the host network namespace");
      std::abort();
    }
    if (!opened) return std::move(opened).error();
  }

  Core* c = core.release();
  c->arm_udp();
  c->arm_accept();
  for (size_t i = 0; i < c->upstreams.size(); ++i) c->arm_upstream(i);
  return std::unique_ptr<DnsProxy>(new DnsProxy(c));
}

DnsProxy::~DnsProxy() { core_->close(); }

uint16_t DnsProxy::udp_port() const { return core_->udp_port; }
uint16_t DnsProxy::tcp_port() const { return core_->tcp_port; }
const DnsProxyStats& DnsProxy::stats() const { return core_->stats; }
size_t DnsProxy::pending() const { return core_->pending.size(); }

}  // namespace cellos::netns
