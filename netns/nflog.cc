#include "netns/nflog.h"

#include <arpa/inet.h>
#include <endian.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_log.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <bit>
#include <cstring>
#include <vector>

namespace cellos::netns {
namespace {

constexpr uint16_t kPacketType = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET;
constexpr uint16_t kConfigType = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG;

uint16_t be16_at(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }

bool has_ports(uint8_t proto) {
  return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_UDPLITE ||
         proto == IPPROTO_SCTP || proto == IPPROTO_DCCP;
}

void read_ports(DenyRecord& r, const uint8_t* l4, size_t avail) {
  if (!has_ports(r.l4proto) || avail < 4) return;
  r.src_port = be16_at(l4);
  r.dst_port = be16_at(l4 + 2);
}

// IP header (+ extension headers) + the first bytes of L4, as copy_range left them.
base::Result<void> parse_ip(DenyRecord& r, const uint8_t* p, size_t n) {
  if (r.family == AF_INET) {
    if (n < 20 || (p[0] >> 4) != 4) return base::value_error("nflog payload", "not IPv4");
    const size_t ihl = (p[0] & 0x0f) * 4u;
    if (ihl < 20) return base::value_error("nflog payload", "IPv4 header length");
    r.length = be16_at(p + 2);
    r.l4proto = p[9];
    std::memcpy(r.src.data(), p + 12, 4);
    std::memcpy(r.dst.data(), p + 16, 4);
    // Only the first fragment carries the L4 header.
    if ((be16_at(p + 6) & 0x1fff) == 0 && n > ihl) read_ports(r, p + ihl, n - ihl);
    return base::ok();
  }
  if (r.family == AF_INET6) {
    if (n < 40 || (p[0] >> 4) != 6) return base::value_error("nflog payload", "not IPv6");
    r.length = be16_at(p + 4) + 40u;
    std::memcpy(r.src.data(), p + 8, 16);
    std::memcpy(r.dst.data(), p + 24, 16);
    uint8_t next = p[6];
    size_t off = 40;
    // Walk the extension headers that may precede L4, as far as the copy reaches.
    for (;;) {
      if (next == IPPROTO_HOPOPTS || next == IPPROTO_ROUTING || next == IPPROTO_DSTOPTS) {
        if (off + 2 > n) break;
        const size_t len = (p[off + 1] + 1u) * 8;
        next = p[off];
        off += len;
      } else if (next == IPPROTO_AH) {
        if (off + 2 > n) break;
        const size_t len = (p[off + 1] + 2u) * 4;
        next = p[off];
        off += len;
      } else if (next == IPPROTO_FRAGMENT) {
        if (off + 8 > n) break;
        const bool first = (be16_at(p + off + 2) & 0xfff8) == 0;
        next = p[off];
        off += 8;
        if (!first) {
          r.l4proto = next;
          return base::ok();
        }
      } else {
        break;
      }
    }
    r.l4proto = next;
    if (off < n) read_ports(r, p + off, n - off);
    return base::ok();
  }
  return base::value_error("nflog packet", "family " + std::to_string(r.family));
}

struct Attrs {
  const nlattr* a[NFULA_MAX + 1] = {};
};

int collect(const nlattr* a, void* data) {
  const uint16_t type = mnl_attr_get_type(a);
  if (type <= NFULA_MAX) static_cast<Attrs*>(data)->a[type] = a;
  return MNL_CB_OK;
}

}  // namespace

base::Result<DenyRecord> parse_nflog_packet(const nlmsghdr* nlh,
                                            std::chrono::system_clock::time_point received) {
  if (nlh->nlmsg_type != kPacketType) return base::value_error("nflog message", "not a packet");
  if (nlh->nlmsg_len < MNL_NLMSG_HDRLEN + sizeof(nfgenmsg))
    return base::value_error("nflog packet", "short message");
  const auto* g = static_cast<const nfgenmsg*>(mnl_nlmsg_get_payload(nlh));
  Attrs at;
  mnl_attr_parse(nlh, sizeof(nfgenmsg), collect, &at);
  DenyRecord r;
  r.family = g->nfgen_family;
  r.time = received;

  const nlattr* hdr = at.a[NFULA_PACKET_HDR];
  if (hdr == nullptr || mnl_attr_get_payload_len(hdr) < sizeof(nfulnl_msg_packet_hdr))
    return base::value_error("nflog packet", "no packet header");
  r.hook = static_cast<const nfulnl_msg_packet_hdr*>(mnl_attr_get_payload(hdr))->hook;

  if (const nlattr* a = at.a[NFULA_PREFIX]) {
    const char* s = static_cast<const char*>(mnl_attr_get_payload(a));
    r.prefix.assign(s, strnlen(s, mnl_attr_get_payload_len(a)));
  }
  if (const nlattr* a = at.a[NFULA_SEQ]; a && mnl_attr_get_payload_len(a) >= 4)
    r.seq = ntohl(mnl_attr_get_u32(a));
  else
    return base::value_error("nflog packet", "no sequence number (NFULNL_CFG_F_SEQ off)");
  if (const nlattr* a = at.a[NFULA_TIMESTAMP];
      a && mnl_attr_get_payload_len(a) >= sizeof(nfulnl_msg_packet_timestamp)) {
    uint64_t ts[2];
    std::memcpy(ts, mnl_attr_get_payload(a), sizeof ts);  // attributes are only 4-byte aligned
    const uint64_t sec = be64toh(ts[0]), usec = be64toh(ts[1]);
    // A time the clock's nanoseconds cannot hold (past the year 2262) would overflow the
    // conversion (nflog_fuzz): such a record keeps the receive time, like one without a stamp.
    if (sec < (1ull << 33) && usec < 1000000) {
      r.time = std::chrono::system_clock::time_point(std::chrono::seconds(sec) +
                                                     std::chrono::microseconds(usec));
      r.kernel_time = true;
    }
  }
  const nlattr* payload = at.a[NFULA_PAYLOAD];
  if (payload == nullptr) return base::value_error("nflog packet", "no payload (copy mode)");
  CELLOS_TRY(parse_ip(r, static_cast<const uint8_t*>(mnl_attr_get_payload(payload)),
                      mnl_attr_get_payload_len(payload)));
  return r;
}

DatagramScan scan_nflog_datagram(std::span<const std::byte> bytes,
                                 std::chrono::system_clock::time_point received,
                                 const std::function<void(const DenyRecord&)>& each) {
  DatagramScan scan;
  int len = static_cast<int>(bytes.size());
  const auto* nlh = reinterpret_cast<const nlmsghdr*>(bytes.data());
  for (; mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
    if (nlh->nlmsg_type != kPacketType) continue;  // acks, errors: nothing to record
    auto r = parse_nflog_packet(nlh, received);
    if (!r) {
      ++scan.parse_errors;
      continue;
    }
    ++scan.records;
    each(*r);
  }
  // The last message did not fit the buffer: the kernel cut the datagram (MSG_TRUNC).
  scan.truncated = len > 0;
  return scan;
}

namespace {
// Whether `bytes` holds the ack (or error) of request `seq`.
bool acks(std::span<const std::byte> bytes, uint32_t seq) {
  int len = static_cast<int>(bytes.size());
  const auto* nlh = reinterpret_cast<const nlmsghdr*>(bytes.data());
  for (; mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len))
    if (nlh->nlmsg_type == NLMSG_ERROR && nlh->nlmsg_seq == seq) return true;
  return false;
}
}  // namespace

uint32_t SeqTracker::observe(uint32_t seq) {
  const uint32_t skipped = seq - next_;  // modulo 2^32: a wrap is a step
  if (skipped >= (1u << 31)) {
    // Behind what was already seen: not a loss. Never happens with one instance per socket.
    ++out_of_order_;
    return 0;
  }
  gaps_ += skipped;
  next_ = seq + 1;
  return skipped;
}

class NflogListener::Receiver final : public base::MultishotCompletion {
 public:
  Receiver(base::IoPort& io, NflogOptions o, Stats* stats)
      : io_(io), o_(std::move(o)), stats_(stats) {}
  void arm() {
    armed_ = true;
    io_.recv_multishot(sock_.fd(), *ring_, *this);
  }
  void stop() {
    if (stopped_) return;
    stopped_ = true;
    if (armed_) io_.cancel(*this);
  }
  // The listener is going: from now on this receive owns itself.
  void orphan() {
    stats_ = nullptr;
    flushed_ = nullptr;
    stop();
    if (!armed_) delete this;
  }
  bool armed() const { return armed_; }

  bool flush(std::function<void()> done) {
    if (!armed_ || stopped_ || flushed_) return false;
    alignas(nlmsghdr) std::array<char, 128> buf{};
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
    nlh->nlmsg_type = kConfigType;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    nlh->nlmsg_seq = flush_seq_ = sock_.next_seq();
    auto* g = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
    g->nfgen_family = AF_UNSPEC;
    g->version = NFNETLINK_V0;
    g->res_id = htons(o_.group);
    nfulnl_msg_config_cmd cmd{NFULNL_CFG_CMD_UNBIND};
    mnl_attr_put(nlh, NFULA_CFG_CMD, sizeof cmd, &cmd);
    // A request to the kernel is handled inside the send (the flush and the ack are queued on
    // this socket before it returns): no wait on the reactor's thread.
    if (::send(sock_.fd(), buf.data(), nlh->nlmsg_len, MSG_DONTWAIT) !=
        static_cast<ssize_t>(nlh->nlmsg_len))
      return false;
    flushed_ = std::move(done);
    return true;
  }

  void shot(const base::Shot& s) override {
    if (s.buffer >= 0) {
      if (s.res > 0 && stats_ != nullptr && !stopped_) {
        const auto bytes = ring_->data(s.buffer, s.res);
        deliver(bytes);
        if (flushed_ && acks(bytes, flush_seq_)) flush_done();
      }
      ring_->recycle(s.buffer);
    }
    if (s.more) return;
    armed_ = false;
    if (stats_ == nullptr) {
      delete this;
      return;
    }
    if (stopped_) {
      if (flushed_) flush_done();
      return;
    }
    if (s.res == -ENOBUFS) {
      // Every buffer was out when a message arrived: the messages stay queued on the socket,
      // and the buffers are all back by now (each is recycled as soon as it is parsed).
      ++stats_->ring_exhausted;
      ++stats_->rearms;
      return arm();
    }
    if (s.res > 0) {
      // The kernel may end a multishot receive that still succeeds (a full completion queue).
      ++stats_->rearms;
      return arm();
    }
    stats_->error = s.res < 0 ? s.res : -EPIPE;
    stopped_ = true;
    if (flushed_) flush_done();
  }

  NetlinkSocket sock_;
  std::unique_ptr<base::BufferRing> ring_;

 private:
  void deliver(std::span<const std::byte> bytes) {
    Stats& st = *stats_;
    auto scan = scan_nflog_datagram(bytes, std::chrono::system_clock::now(),
                                    [&](const DenyRecord& r) {
                                      st.seq.observe(r.seq);
                                      ++st.records;
                                      if (o_.on_record && !stopped_) o_.on_record(r);
                                    });
    st.parse_errors += scan.parse_errors;
    // nlbufsiz is below the buffer size: a full buffer means the kernel cut the datagram.
    if (scan.truncated || bytes.size() >= ring_->buffer_size()) ++st.truncated;
  }

  void flush_done() {
    auto done = std::move(flushed_);
    flushed_ = nullptr;
    done();
  }

  base::IoPort& io_;
  NflogOptions o_;
  Stats* stats_;
  bool armed_ = false, stopped_ = false;
  std::function<void()> flushed_;  // set while a flush() waits for its ack
  uint32_t flush_seq_ = 0;
};

base::Result<std::unique_ptr<NflogListener>> NflogListener::open(base::IoPort& io, int netns_fd,
                                                                 NflogOptions o) {
  const size_t bsize = o.buffers.buffer_size;
  if (bsize < 2048 || !std::has_single_bit(bsize))
    return base::value_error("nflog buffers", "buffer_size must be a power of two >= 2048");
  const std::string what = "nflog group " + std::to_string(o.group);
  const uint16_t group = o.group;
  const NflogOptions copy = o;
  std::unique_ptr<NflogListener> l(new NflogListener);
  auto rx = std::make_unique<Receiver>(io, std::move(o), &l->stats_);

  auto s = NetlinkSocket::open_in(netns_fd, NETLINK_NETFILTER);
  if (!s) return std::move(s).error().context(what);
  rx->sock_ = std::move(*s);
  const int fd = rx->sock_.fd();
  // No ENOBUFS reports: a -ENOBUFS receive then always means "buffer ring empty", never "the
  // kernel dropped messages" (both end a multishot recv the same way). Losses are still
  // counted, exactly: as sequence gaps, and in the socket's drop counter (kernel_drops()).
  // It also keeps netlink from entering its congested state, in which it drops every message
  // until the queue is fully drained.
  int one = 1;
  if (::setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one) != 0)
    return base::sys_error("setsockopt(NETLINK_NO_ENOBUFS)", what);
  // FORCE: past net.core.rmem_max, which is a limit for unprivileged sockets (we hold
  // CAP_NET_ADMIN in the cell's namespace).
  int rcv = copy.rcvbuf;
  if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof rcv) != 0 &&
      ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv) != 0)
    return base::sys_error("setsockopt(SO_RCVBUF)", what);

  // One config message: bind the group (creating this namespace's instance for our port id),
  // then its mode, batching and flags, applied by the kernel in that order. No PF_BIND: the
  // nft log expression names its logger type (NFLOG) itself, so the per-family default logger
  // binding that iptables' NFLOG needed on old kernels plays no part.
  alignas(nlmsghdr) std::array<char, 256> buf{};
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
  nlh->nlmsg_type = kConfigType;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  nlh->nlmsg_seq = rx->sock_.next_seq();
  auto* g = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
  g->nfgen_family = AF_UNSPEC;
  g->version = NFNETLINK_V0;
  g->res_id = htons(group);
  nfulnl_msg_config_cmd cmd{NFULNL_CFG_CMD_BIND};
  mnl_attr_put(nlh, NFULA_CFG_CMD, sizeof cmd, &cmd);
  nfulnl_msg_config_mode mode{};
  mode.copy_range = htonl(copy.copy_range);
  mode.copy_mode = NFULNL_COPY_PACKET;
  mnl_attr_put(nlh, NFULA_CFG_MODE, sizeof mode, &mode);
  // The kernel sizes each batch's skb at nlbufsiz rounded up to its allocator's size (a power
  // of two here) less ~320 bytes of skb_shared_info; 512 below the buffer size keeps the
  // rounded batch within one buffer.
  mnl_attr_put_u32(nlh, NFULA_CFG_NLBUFSIZ, htonl(static_cast<uint32_t>(bsize - 512)));
  mnl_attr_put_u32(nlh, NFULA_CFG_TIMEOUT, htonl(copy.flush_timeout_cs));
  mnl_attr_put_u32(nlh, NFULA_CFG_QTHRESH, htonl(copy.queue_threshold));
  mnl_attr_put_u16(nlh, NFULA_CFG_FLAGS, htons(NFULNL_CFG_F_SEQ));
  CELLOS_TRY(rx->sock_.send_and_ack(
      std::as_bytes(std::span(buf.data(), nlh->nlmsg_len)), 1, what));

  auto ring = io.buffer_ring(copy.buffers);
  if (!ring) return std::move(ring).error().context(what);
  rx->ring_ = std::move(*ring);
  rx->arm();
  l->rx_ = rx.release();
  return l;
}

NflogListener::~NflogListener() {
  if (rx_ != nullptr) rx_->orphan();
}

void NflogListener::stop() { rx_->stop(); }
bool NflogListener::flush(std::function<void()> done) { return rx_->flush(std::move(done)); }
bool NflogListener::in_flight() const { return rx_->armed(); }

base::Result<uint64_t> NflogListener::kernel_drops() const {
  uint32_t mem[SK_MEMINFO_VARS] = {};
  socklen_t len = sizeof mem;
  if (::getsockopt(rx_->sock_.fd(), SOL_SOCKET, SO_MEMINFO, mem, &len) != 0)
    return base::sys_error("getsockopt(SO_MEMINFO)", "nflog socket");
  return uint64_t{mem[SK_MEMINFO_DROPS]};
}

}  // namespace cellos::netns
