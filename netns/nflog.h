// NflogListener: the deny records of one cell, read from its NFLOG group.
//
// The cell ruleset logs every packet it drops to an NFLOG group (netns/nft.h, prefix
// kDenyPrefix). NFLOG groups are per network namespace, so the listener's NETLINK_NETFILTER
// socket is opened inside the cell's namespace (setns there and back) and stays bound there.
// The kernel batches records into netlink messages (queue threshold + flush timeout, see
// NflogOptions); the reactor receives them with one multishot recv into a provided-buffer ring,
// parses each, and hands every record to a callback. Nothing is hidden: each record carries the
// instance's sequence number (NFULNL_CFG_F_SEQ), so records the kernel lost (receive buffer
// full) show up as gaps, and the kernel's own drop count is readable too.
#pragma once

#include <linux/netlink.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "base/io.h"
#include "base/result.h"
#include "netns/netlink.h"

namespace cellos::netns {

struct DenyRecord {
  uint32_t seq = 0;             // NFULA_SEQ: per-group instance, from 0
  std::string prefix;           // NFULA_PREFIX: the rule that denied ("egress_default_deny")
  int family = 0;               // AF_INET | AF_INET6
  uint8_t l4proto = 0;          // IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP, ...
  std::array<uint8_t, 16> src{}, dst{};  // network byte order; IPv4 in the first 4 bytes
  uint16_t src_port = 0, dst_port = 0;   // host byte order; 0 without ports (ICMP, fragments)
  uint32_t length = 0;          // IP total length of the packet (IPv6: payload length + 40)
  uint8_t hook = 0;             // NF_INET_LOCAL_OUT for a cell's egress
  std::chrono::system_clock::time_point time;
  // NFULA_TIMESTAMP was present. The kernel sends none for output hooks (the skb's timestamp
  // there may be a pacing time, not a wall clock), so egress denies carry the receive time.
  bool kernel_time = false;
};

// One NFULNL_MSG_PACKET message -> a record. Pure; `received` is the time used when the message
// carries no timestamp. Fails on a message of another type or without packet header or payload.
base::Result<DenyRecord> parse_nflog_packet(const nlmsghdr* nlh,
                                            std::chrono::system_clock::time_point received);

// What walking one received datagram (several NFLOG messages) found besides records.
struct DatagramScan {
  unsigned records = 0, parse_errors = 0;
  bool truncated = false;  // bytes left over that do not make a whole message
};
// Every NFULNL_MSG_PACKET in `bytes`, in order, to `each`; other message types are skipped.
DatagramScan scan_nflog_datagram(std::span<const std::byte> bytes,
                                 std::chrono::system_clock::time_point received,
                                 const std::function<void(const DenyRecord&)>& each);

// Sequence numbers in, numbers never seen out. The first record expected is seq 0 (a fresh
// instance); u32 wrap-around is a step, not a gap.
class SeqTracker {
 public:
  // How many numbers were skipped before `seq` (0 when it is the next one).
  uint32_t observe(uint32_t seq);
  uint64_t gaps() const { return gaps_; }
  uint64_t out_of_order() const { return out_of_order_; }

 private:
  uint32_t next_ = 0;
  uint64_t gaps_ = 0, out_of_order_ = 0;
};

struct NflogOptions {
  uint16_t group = 1;
  // Bytes of each packet copied: IPv4/IPv6 header + options/extension headers + L4 ports.
  uint32_t copy_range = 128;
  // Flush after this many packets or this many 1/100 s, whichever comes first. A burst becomes
  // one message per 32 records (~5-8 KiB: fits one 8 KiB buffer); a lone deny waits <= 50 ms.
  uint32_t queue_threshold = 32;
  uint32_t flush_timeout_cs = 5;
  // Each buffer holds one netlink message batch: the kernel is told to build batches that fit
  // (NFULA_CFG_NLBUFSIZ derived from buffer_size, a power of two >= 2048).
  base::BufferRingOptions buffers{16, 8192};
  // Receive queue between kernel and reactor: what a burst may queue while the reactor is busy.
  int rcvbuf = 1 << 20;
  std::function<void(const DenyRecord&)> on_record;
};

class NflogListener {
 public:
  // Opens the socket inside `netns_fd`, binds options.group there and starts receiving on `io`.
  static base::Result<std::unique_ptr<NflogListener>> open(base::IoPort& io, int netns_fd,
                                                           NflogOptions options);
  // Safe while the receive is armed: it is cancelled, and the socket and buffers are freed by
  // its final completion (so `io` must keep running, or be destroyed, afterwards).
  ~NflogListener();
  NflogListener(const NflogListener&) = delete;
  NflogListener& operator=(const NflogListener&) = delete;

  // Stops delivering records and cancels the receive; in_flight() is false once it has ended.
  void stop();
  // Asks the kernel for every record it still holds (the instance batches up to its flush
  // timeout) instead of waiting that timeout out: unbinding the group's instance makes the
  // kernel send its pending batch to this socket, then the request's ack, in that order, on the
  // same receive queue. `done` runs (once, from the receive's completion) when the ack has
  // arrived, i.e. after every record logged before the call was delivered, or when the receive
  // ends. No record is logged afterwards (the instance is gone): call it at the cell's end.
  // False (and `done` dropped) when it cannot be asked: the caller then waits the timeout.
  bool flush(std::function<void()> done);
  bool in_flight() const;

  uint64_t records() const { return stats_.records; }
  // Sequence numbers never seen below the highest seen: records the kernel lost.
  uint64_t gaps() const { return stats_.seq.gaps(); }
  // Times the multishot receive ended because every buffer was out (-ENOBUFS) and was re-armed.
  uint64_t ring_exhausted() const { return stats_.ring_exhausted; }
  uint64_t rearms() const { return stats_.rearms; }
  uint64_t parse_errors() const { return stats_.parse_errors; }
  uint64_t truncated() const { return stats_.truncated; }
  // Netlink messages the kernel dropped because the socket's receive queue was full (the
  // socket's drop counter, SO_MEMINFO). Each held up to queue_threshold records; gaps() says
  // exactly how many. Reads the kernel's counter: a syscall.
  base::Result<uint64_t> kernel_drops() const;
  // The error that ended receiving for good (-errno), 0 while healthy.
  int error() const { return stats_.error; }

  struct Stats {
    SeqTracker seq;
    uint64_t records = 0, ring_exhausted = 0, rearms = 0, parse_errors = 0, truncated = 0;
    int error = 0;
  };
  class Receiver;

 private:
  NflogListener() = default;
  Stats stats_;
  // The receive and what it writes into (socket, buffer ring). Owned by this listener until
  // its destructor hands it over to the receive itself, which frees it on its final completion:
  // the kernel may still be writing into its buffers until then.
  Receiver* rx_ = nullptr;
};

}  // namespace cellos::netns
