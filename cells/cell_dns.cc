#include "cells/cell_dns.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <set>
#include <fstream>
#include <map>
#include <sstream>
#include <tuple>

#include "base/completion.h"
#include "base/fd.h"
#include "netns/dns_proxy.h"

namespace cellos::cells {
namespace {

const char* rcode_name(uint8_t rc) {
  switch (rc) {
    case netns::kRcodeNoError: return "NOERROR";
    case netns::kRcodeServfail: return "SERVFAIL";
    case netns::kRcodeNxdomain: return "NXDOMAIN";
    case netns::kRcodeRefused: return "REFUSED";
    case 1: return "FORMERR";
    case 4: return "NOTIMP";
  }
  return "RCODE";
}

// The host's own addresses, once per cell (one netlink dump, local and quick): an answer
// naming one of them would turn the allow-list into a way back to the host.
std::vector<std::string> host_addresses() {
  std::vector<std::string> out;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return out;
  for (ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr) continue;
    char buf[INET6_ADDRSTRLEN] = {};
    if (i->ifa_addr->sa_family == AF_INET)
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, buf, sizeof buf);
    else if (i->ifa_addr->sa_family == AF_INET6)
      inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(i->ifa_addr)->sin6_addr, buf, sizeof buf);
    else
      continue;
    out.emplace_back(buf);
  }
  ::freeifaddrs(list);
  return out;
}

std::string endpoint(const DnsResolver& r) {
  return r.address.find(':') != std::string::npos
             ? "[" + r.address + "]:" + std::to_string(r.port)
             : r.address + ":" + std::to_string(r.port);
}

}  // namespace

bool is_rebind_address(const std::string& a, const std::vector<std::string>& host) {
  if (std::find(host.begin(), host.end(), a) != host.end()) return true;
  in_addr v4{};
  in6_addr v6{};
  uint32_t ip = 0;
  if (inet_pton(AF_INET, a.c_str(), &v4) == 1) {
    ip = ntohl(v4.s_addr);
  } else if (inet_pton(AF_INET6, a.c_str(), &v6) == 1) {
    const uint8_t* b = v6.s6_addr;
    if (IN6_IS_ADDR_LOOPBACK(&v6) || IN6_IS_ADDR_UNSPECIFIED(&v6)) return true;
    if ((b[0] & 0xfe) == 0xfc) return true;                   // fc00::/7 unique local
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return true;   // fe80::/10 link-local
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) return true;   // fec0::/10 site-local
    if (!IN6_IS_ADDR_V4MAPPED(&v6) && !IN6_IS_ADDR_V4COMPAT(&v6)) return false;
    ip = static_cast<uint32_t>(b[12]) << 24 | b[13] << 16 | b[14] << 8 | b[15];
  } else {
    return false;
  }
  auto in = [ip](uint32_t net, int bits) { return (ip >> (32 - bits)) == (net >> (32 - bits)); };
  return in(0x00000000, 8) ||   // 0/8: "this host"
         in(0x0a000000, 8) ||   // 10/8
         in(0x7f000000, 8) ||   // 127/8
         in(0x64400000, 10) ||  // 100.64/10 carrier-grade NAT
         in(0xa9fe0000, 16) ||  // 169.254/16 link-local (cloud metadata lives here)
         in(0xac100000, 12) ||  // 172.16/12
         in(0xc0a80000, 16);    // 192.168/16
}

base::Result<std::vector<std::string>> dns_upstreams(const DnsAuthority& dns,
                                                     const std::vector<std::string>& fleet) {
  std::vector<std::string> out;
  for (const auto& r : dns.resolvers) out.push_back(endpoint(r));
  if (!out.empty()) return out;
  if (!fleet.empty()) return fleet;
  // The host's resolver, as c-ares reads it: a small local file, read when a cell starts.
  std::ifstream in("/etc/resolv.conf");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string key, addr;
    if (!(words >> key >> addr) || key != "nameserver") continue;
    in6_addr a6{};
    out.push_back(inet_pton(AF_INET6, addr.c_str(), &a6) == 1 ? "[" + addr + "]:53" : addr);
  }
  if (out.empty())
    return base::value_error("dns", "no upstream resolver: the spec declares none, [network] "
                                    "resolvers is empty and /etc/resolv.conf names no nameserver");
  return out;
}

base::Result<std::string> cell_resolv_conf(const std::string& state_dir) {
  const std::string dir = state_dir + "/dns";
  const std::string path = dir + "/resolv.conf";
  static constexpr std::string_view kText =
      "# Written by cellos-reactor: each cell's own DNS proxy, on the cell's own loopback.\n"
      "nameserver 127.0.0.1\n";
  struct stat st{};
  if (::stat(path.c_str(), &st) == 0 && static_cast<size_t>(st.st_size) == kText.size()) return path;
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return base::sys_error("mkdir", dir);
  // Written beside and renamed: a cell starting meanwhile binds the old file or the new one.
  const std::string tmp = path + ".tmp";
  auto fd = base::open_at(AT_FDCWD, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (!fd) return std::move(fd).error();
  if (::write(fd->get(), kText.data(), kText.size()) != static_cast<ssize_t>(kText.size()))
    return base::sys_error("write", tmp);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return base::sys_error("rename", path);
  return path;
}

struct CellDns::Impl {
  using Key = std::tuple<std::string, std::string, std::string, std::string>;
  struct Bucket {
    sinks::DnsQueryData last;
    uint64_t repeats = 0;  // since the last report
  };

  explicit Impl(base::IoPort& io) : window(&io), expiry_timer(&io) { expiry = &expiry_timer; }

  CellDnsOptions o;
  std::vector<std::string> host;
  std::unique_ptr<netns::DnsProxy> proxy;
  sinks::DnsSummaryData summary;
  std::map<Key, Bucket> seen;
  base::Timer window, expiry_timer;
  bool finished = false;

  std::optional<std::string> check(const netns::DnsAnswer& a) {
    if (!dns_name_allowed(o.internal_names, a.question.name))
      for (const auto& r : a.records)
        if (r.type != netns::kDnsTypeCname && is_rebind_address(r.data, host))
          return std::string("rebind_rejected");
    if (auto r = grant(a); !r) {
      std::fprintf(stderr, "cellos-reactor: cell %s: dns: %s\n", o.cell_id.c_str(),
                   r.error().message().c_str());
      return std::string("allowlist_update_failed");
    }
    return std::nullopt;
  }

  // ---- answers open the allow-list

  using Clock = std::chrono::steady_clock;
  struct Held {
    std::string addr;
    Clock::time_point until;
  };
  std::map<std::string, std::deque<Held>> by_name;         // oldest first
  struct Element {
    netns::EgressTarget target;
    Clock::time_point until;
  };
  std::map<std::string, Element> elements;  // open targets by key text
  base::Timer* expiry = nullptr;            // BPF: removes elements past their time

  // BPF entries have no timeout of their own: those past their time go here, once a second.
  void expire_bpf() {
    if (!o.update_bpf) return;
    const auto now = Clock::now();
    std::vector<netns::EgressTarget> gone;
    for (auto it = elements.begin(); it != elements.end();) {
      if (it->second.until <= now) {
        gone.push_back(it->second.target);
        it = elements.erase(it);
      } else {
        ++it;
      }
    }
    if (!gone.empty()) (void)o.update_bpf({}, gone);
  }
  void arm_expiry() {
    if (!o.update_bpf || finished || expiry->armed() || elements.empty()) return;
    expiry->start(std::chrono::seconds(1), [this](int res) {
      if (res != -ETIME || finished) return;
      expire_bpf();
      arm_expiry();
    });
  }

  // The targets an address opens for a name: one per matching rule and protocol.
  std::vector<netns::EgressTarget> targets_for(const std::string& name, const std::string& addr) {
    std::vector<netns::EgressTarget> out;
    auto parsed = netns::parse_target(addr);
    if (!parsed) return out;
    for (const auto& rule : o.named_rules) {
      if (!dns_name_matches(lower_name(rule.host), name)) continue;
      for (uint8_t proto : {IPPROTO_TCP, IPPROTO_UDP}) {
        if (rule.protocol && *rule.protocol != (proto == IPPROTO_TCP ? "tcp" : "udp")) continue;
        netns::EgressTarget t = *parsed;
        t.port = rule.port;
        t.l4proto = proto;
        out.push_back(t);
      }
    }
    return out;
  }
  static std::string lower_name(std::string s) {
    if (s.ends_with('.')) s.pop_back();
    for (char& c : s)
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return s;
  }
  static std::string key_text(const netns::EgressTarget& t) {
    return std::string(reinterpret_cast<const char*>(t.addr.data()), 16) + char(t.l4proto) +
           std::to_string(t.port);
  }

  base::Result<void> grant(const netns::DnsAnswer& a) {
    if (o.named_rules.empty() || !o.update_sets) return base::ok();
    const std::string& name = a.question.name;
    const auto now = Clock::now();
    expire_bpf();
    std::vector<netns::DnsSetElement> add;
    std::vector<netns::EgressTarget> del, del_bpf;
    std::set<std::string> deleting, adding;
    auto remove_element = [&](const netns::EgressTarget& t) {
      const std::string k = key_text(t);
      auto it = elements.find(k);
      if (it == elements.end() || !deleting.insert(k).second) return;
      // The kernel removes an nft element at its timeout: one within a second of it may be
      // gone already, and deleting it would fail the batch. BPF entries stay until removed.
      if (it->second.until > now + std::chrono::seconds(1)) del.push_back(t);
      del_bpf.push_back(t);
      elements.erase(it);
    };
    std::deque<Held>& held = by_name[name];
    std::vector<std::string> addrs;
    for (const auto& r : a.records)
      if (r.type != netns::kDnsTypeCname &&
          std::find(addrs.begin(), addrs.end(), r.data) == addrs.end() &&
          addrs.size() < o.max_addresses_per_name)
        addrs.push_back(r.data);
    for (const auto& addr : addrs) {
      uint32_t ttl = 0;
      for (const auto& r : a.records)
        if (r.data == addr) ttl = std::max(ttl, r.ttl);
      auto secs = std::clamp<std::chrono::seconds>(std::chrono::seconds(ttl), o.min_ttl, o.max_ttl);
      const auto open_for = secs + o.grace;
      held.erase(std::remove_if(held.begin(), held.end(), [&](const Held& h) { return h.addr == addr; }),
                 held.end());
      held.push_back({addr, now + open_for});
      for (const auto& t : targets_for(name, addr)) {
        if (!adding.insert(key_text(t)).second) continue;  // two rules, one target
        remove_element(t);  // a refresh: the kernel keeps an element's first timeout otherwise
        add.push_back({t, static_cast<uint64_t>(std::chrono::milliseconds(open_for).count())});
        elements[key_text(t)] = {t, now + open_for};
        ++summary.addresses_granted;
      }
    }
    while (held.size() > o.max_addresses_per_name) {
      Held old = held.front();
      held.pop_front();
      ++summary.addresses_evicted;
      bool other = false;
      for (const auto& [n, list] : by_name)
        for (const auto& h : list) other |= h.addr == old.addr;
      if (!other)
        for (const auto& t : targets_for(name, old.addr)) remove_element(t);
    }
    // Names whose addresses have all expired are forgotten.
    for (auto it = by_name.begin(); it != by_name.end();) {
      auto& list = it->second;
      list.erase(std::remove_if(list.begin(), list.end(), [&](const Held& h) { return h.until <= now; }),
                 list.end());
      it = list.empty() && it->first != name ? by_name.erase(it) : std::next(it);
    }
    if (add.empty() && del_bpf.empty()) return base::ok();
    CELLOS_TRY(o.update_sets(add, del));
    if (o.update_bpf) {
      std::vector<netns::EgressTarget> targets;
      for (const auto& e : add) targets.push_back(e.target);
      CELLOS_TRY(o.update_bpf(targets, del_bpf));
      arm_expiry();
    }
    return base::ok();
  }

  void on_query(const netns::DnsQueryReport& q) {
    ++summary.queries;
    sinks::DnsQueryData d;
    d.cell_id = o.cell_id;
    d.query_name = q.name;
    d.query_type = q.dropped ? "" : netns::dns_type_name(q.qtype);
    d.transport = q.transport;
    d.reason_code = q.reason;
    if (q.dropped) {
      ++summary.dropped;
      d.kind = "dns_query";
      d.decision = "dropped";
    } else {
      d.response_code = rcode_name(q.rcode);
      d.answers = q.answers;
      d.upstream_latency_us = q.upstream_latency_us;
      d.upstream = q.upstream;
      if (q.permitted) {
        ++summary.permitted;
        d.kind = "dns_query_permitted";
        d.decision = "permitted";
      } else if (q.reason == "rebind_rejected") {
        ++summary.rebind_rejected;
        ++summary.refused;
        d.kind = "dns_authority_rebind_rejected";
        d.decision = "refused";
      } else if (q.rcode == netns::kRcodeRefused) {
        ++summary.refused;
        d.kind = "dns_query_refused";
        d.decision = "refused";
      } else {
        ++summary.failed;
        d.kind = "dns_query_refused";  // SERVFAIL: the cell got no answer
        d.decision = "refused";
      }
    }
    Key key{d.query_name, d.query_type, d.decision, d.reason_code};
    auto [it, fresh] = seen.try_emplace(key);
    it->second.last = d;
    if (fresh) {
      o.emit(std::move(d));
    } else {
      ++it->second.repeats;
    }
    arm_window();
  }

  void arm_window() {
    if (window.armed() || finished) return;
    window.start(o.aggregate_window, [this](int res) {
      if (res != -ETIME || finished) return;
      flush(false);
      if (!seen.empty()) arm_window();
    });
  }

  // Reports each kind's repeats; a kind that had none this window is forgotten, so its next
  // query is reported at once again.
  void flush(bool all) {
    for (auto it = seen.begin(); it != seen.end();) {
      if (it->second.repeats > 0) {
        sinks::DnsQueryData d = it->second.last;
        d.count = it->second.repeats;
        it->second.repeats = 0;
        o.emit(std::move(d));
        ++it;
      } else {
        it = seen.erase(it);
      }
    }
    if (all) seen.clear();
  }
};

CellDns::CellDns(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

CellDns::~CellDns() {
  impl_->finished = true;
  impl_->window.cancel();
  impl_->expiry_timer.cancel();
  impl_->proxy.reset();
  // A timer's completion may still be in flight: its Impl must outlive it. It holds nothing
  // else by then; the completion finds `finished` and returns. Leaked deliberately only while
  // armed (one small object per cell, and only at teardown races).
  if (impl_->window.armed() || impl_->expiry_timer.armed()) (void)impl_.release();
}

base::Result<std::unique_ptr<CellDns>> CellDns::open(base::IoPort& io, CellDnsOptions o) {
  auto impl = std::make_unique<Impl>(io);
  impl->o = std::move(o);
  impl->host = host_addresses();
  Impl* self = impl.get();
  netns::DnsProxyOptions po;
  po.netns_fd = self->o.netns_fd;
  po.listen_port = self->o.listen_port;
  po.upstreams = self->o.upstreams;
  po.timeout = self->o.timeout;
  po.tries = self->o.tries;
  po.allowed = [self](std::string_view name) {
    return dns_name_allowed(self->o.authority.hostname_allowlist, name);
  };
  po.on_answer = [self](const netns::DnsAnswer& a) { return self->check(a); };
  po.on_query = [self](const netns::DnsQueryReport& q) { self->on_query(q); };
  auto proxy = netns::DnsProxy::open(io, std::move(po));
  if (!proxy) return std::move(proxy).error().context("dns proxy");
  impl->proxy = std::move(*proxy);
  return std::unique_ptr<CellDns>(new CellDns(std::move(impl)));
}

sinks::DnsSummaryData CellDns::finish() {
  if (!impl_->finished) {
    impl_->flush(true);
    impl_->finished = true;
    impl_->window.cancel();
    impl_->expiry_timer.cancel();
    impl_->proxy.reset();
  }
  return impl_->summary;
}

uint16_t CellDns::port() const { return impl_->proxy ? impl_->proxy->udp_port() : 0; }

}  // namespace cellos::cells
