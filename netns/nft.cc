#include "netns/nft.h"
#include "netns/nft_internal.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <tuple>
#include <unordered_set>

namespace cellos::netns {
namespace {

constexpr uint32_t kReg = NFT_REG_1;
// Inside a fresh network namespace `lo` is always ifindex 1 (LOOPBACK_IFINDEX).
constexpr uint32_t kLoopbackIndex = 1;
// Every cell rule is a few hundred bytes at most; the host ruleset is a handful of rules.
constexpr size_t kPerMessage = 1024;
// A target set's element in a NEWSETELEM message: its nest, the key's nest and the key (at
// most 24 bytes) with their headers, 40 bytes; rounded up.
constexpr size_t kPerElement = 48;
// Elements per NEWSETELEM message: 1,024 x 40 bytes, so that the kernel's error for one
// (which echoes the message) still fits the 64 KiB the acks are read into. One
// message for a ruleset's targets instead of a message per 64 saves the kernel a table and
// set lookup and a policy walk per message.
constexpr size_t kElementsPerMessage = 1024;

// Expressions appended to a rule, in evaluation order.
class RuleBuilder {
 public:
  RuleBuilder(int family, const std::string& table, const std::string& chain,
              const std::string& tag)
      : r_(nftnl_rule_alloc()) {
    nftnl_rule_set_u32(r_.get(), NFTNL_RULE_FAMILY, static_cast<uint32_t>(family));
    nftnl_rule_set_str(r_.get(), NFTNL_RULE_TABLE, table.c_str());
    nftnl_rule_set_str(r_.get(), NFTNL_RULE_CHAIN, chain.c_str());
    // The tag survives in the kernel with the rule: the counter dump finds its rule by it.
    nftnl_rule_set_data(r_.get(), NFTNL_RULE_USERDATA, tag.data(),
                        static_cast<uint32_t>(tag.size()));
  }
  RuleBuilder& meta(uint32_t key, uint32_t reg = kReg) {
    nftnl_expr* e = add("meta");
    nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
    nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, reg);
    return *this;
  }
  RuleBuilder& payload(uint32_t base, uint32_t offset, uint32_t len, uint32_t reg = kReg) {
    nftnl_expr* e = add("payload");
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, reg);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
    return *this;
  }
  RuleBuilder& mask(const void* m, uint32_t len, uint32_t reg = kReg) {
    static const std::array<uint8_t, 16> zero{};
    nftnl_expr* e = add("bitwise");
    nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, reg);
    nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, reg);
    nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, len);
    nftnl_expr_set(e, NFTNL_EXPR_BITWISE_MASK, m, len);
    nftnl_expr_set(e, NFTNL_EXPR_BITWISE_XOR, zero.data(), len);
    return *this;
  }
  RuleBuilder& cmp(uint32_t op, const void* data, uint32_t len, uint32_t reg = kReg) {
    nftnl_expr* e = add("cmp");
    nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, reg);
    nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
    nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
    return *this;
  }
  RuleBuilder& eq_u8(uint8_t v) { return cmp(NFT_CMP_EQ, &v, 1); }
  RuleBuilder& eq_u32(uint32_t v) { return cmp(NFT_CMP_EQ, &v, 4); }
  RuleBuilder& established() {
    nftnl_expr* e = add("ct");
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, NFT_CT_STATE);
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, kReg);
    uint32_t bits = NF_CT_STATE_BIT(IP_CT_ESTABLISHED) | NF_CT_STATE_BIT(IP_CT_RELATED);
    uint32_t zero = 0;
    mask(&bits, 4);
    return cmp(NFT_CMP_NEQ, &zero, 4);
  }
  RuleBuilder& counter() {
    add("counter");
    return *this;
  }
  RuleBuilder& lookup(const char* set, uint32_t set_id, uint32_t sreg) {
    nftnl_expr* e = add("lookup");
    nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, sreg);
    nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, set);
    nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SET_ID, set_id);
    return *this;
  }
  // `add @set { key }`: puts the key in a set of this batch (the kernel makes the element on
  // the first packet, with the set's expressions, then runs them: a counter counts that
  // packet too); when the set cannot take it the rule stops here (NFT_BREAK).
  RuleBuilder& dynset_add(const char* set, uint32_t set_id, uint32_t sreg) {
    nftnl_expr* e = add("dynset");
    nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_SREG_KEY, sreg);
    nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_OP, NFT_DYNSET_OP_ADD);
    nftnl_expr_set_str(e, NFTNL_EXPR_DYNSET_SET_NAME, set);
    nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_SET_ID, set_id);
    return *this;
  }
  RuleBuilder& log(uint16_t group, const char* prefix) {
    nftnl_expr* e = add("log");
    nftnl_expr_set_u16(e, NFTNL_EXPR_LOG_GROUP, group);
    // NFLOG hands the prefix to the listener as NFULA_PREFIX: it names the rule that denied.
    nftnl_expr_set_str(e, NFTNL_EXPR_LOG_PREFIX, prefix);
    return *this;
  }
  RuleBuilder& masquerade() {
    add("masq");
    return *this;
  }
  RuleBuilder& verdict(int v, const char* chain = nullptr) {
    nftnl_expr* e = add("immediate");
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, static_cast<uint32_t>(v));
    if (chain) nftnl_expr_set_str(e, NFTNL_EXPR_IMM_CHAIN, chain);
    return *this;
  }
  nftnl_rule* get() const { return r_.get(); }

 private:
  nftnl_expr* add(const char* name) {
    nftnl_expr* e = nftnl_expr_alloc(name);
    nftnl_rule_add_expr(r_.get(), e);  // the rule owns it from here
    return e;
  }
  RulePtr r_;
};

// The room batches are built in, kept for the thread's next batch. Allocated per batch (tens of
// KiB, from the heap's top, given back to the kernel at the free), it cost page faults and two
// brk calls per install, and the 200-target install was ~10 % slower (A/B, bench/README.md).
// Grown when a batch needs more, never shrunk; a second batch built while one is (none is
// today) gets a room of its own.
class BatchRoom {
 public:
  explicit BatchRoom(size_t size) {
    Shared& s = shared();
    if (s.in_use) {
      own_ = std::make_unique_for_overwrite<char[]>(size);
      data_ = own_.get();
      return;
    }
    if (s.capacity < size) {
      s.room = std::make_unique_for_overwrite<char[]>(size);
      s.capacity = size;
    }
    s.in_use = true;
    data_ = s.room.get();
  }
  ~BatchRoom() {
    if (!own_) shared().in_use = false;
  }
  BatchRoom(const BatchRoom&) = delete;
  BatchRoom& operator=(const BatchRoom&) = delete;
  char* data() const { return data_; }

 private:
  struct Shared {
    std::unique_ptr<char[]> room;
    size_t capacity = 0;
    bool in_use = false;
  };
  static Shared& shared() {
    thread_local Shared s;
    return s;
  }
  std::unique_ptr<char[]> own_;
  char* data_ = nullptr;
};

// One nfnetlink batch: begin, messages (each acked), end.
class Batch {
 public:
  // The room is not zeroed: every byte sent is written first, and zeroing a room sized for
  // the worst case cost a memset and its page faults per install when it was (perf: ~5% of
  // a 200-target install). `messages` of up to kPerMessage bytes, and `extra` bytes of set
  // elements besides.
  Batch(NetlinkSocket& s, size_t messages, size_t extra = 0)
      : s_(s), size_(2 * (4096 + messages * kPerMessage + extra)), room_(size_) {
    b_ = mnl_nlmsg_batch_start(room_.data(), size_ / 2);
    nftnl_batch_begin(cur(), s_.next_seq());
    mnl_nlmsg_batch_next(b_);
  }
  ~Batch() { mnl_nlmsg_batch_stop(b_); }
  void table(int family, const std::string& name, uint16_t type) {
    nftnl_table* t = nftnl_table_alloc();
    nftnl_table_set_u32(t, NFTNL_TABLE_FAMILY, static_cast<uint32_t>(family));
    nftnl_table_set_str(t, NFTNL_TABLE_NAME, name.c_str());
    uint16_t flags = type == NFT_MSG_NEWTABLE ? NLM_F_CREATE | NLM_F_EXCL : 0;
    nlmsghdr* h = nftnl_table_nlmsg_build_hdr(cur(), type, static_cast<uint16_t>(family),
                                              flags, s_.next_seq());
    nftnl_table_nlmsg_build_payload(h, t);
    nftnl_table_free(t);
    next();
  }
  struct ChainSpec {
    const char* name;
    const char* type;
    uint32_t hook;
    int32_t prio;
    uint32_t policy;
  };
  void chain(int family, const std::string& table, const ChainSpec& c) {
    nftnl_chain* ch = nftnl_chain_alloc();
    nftnl_chain_set_u32(ch, NFTNL_CHAIN_FAMILY, static_cast<uint32_t>(family));
    nftnl_chain_set_str(ch, NFTNL_CHAIN_TABLE, table.c_str());
    nftnl_chain_set_str(ch, NFTNL_CHAIN_NAME, c.name);
    if (c.type) {  // a base chain; without a type, a regular chain reached by jumps
      nftnl_chain_set_str(ch, NFTNL_CHAIN_TYPE, c.type);
      nftnl_chain_set_u32(ch, NFTNL_CHAIN_HOOKNUM, c.hook);
      nftnl_chain_set_s32(ch, NFTNL_CHAIN_PRIO, c.prio);
      nftnl_chain_set_u32(ch, NFTNL_CHAIN_POLICY, c.policy);
    }
    nlmsghdr* h = nftnl_chain_nlmsg_build_hdr(cur(), NFT_MSG_NEWCHAIN,
                                              static_cast<uint16_t>(family),
                                              NLM_F_CREATE, s_.next_seq());
    nftnl_chain_nlmsg_build_payload(h, ch);
    nftnl_chain_free(ch);
    next();
  }
  // A set created in this batch; rules of the batch name it by `id`. `counted`: every element
  // carries a counter of its own (nft's `set { ...; counter; }`), so a lookup that matches an
  // element counts on that element. `size` (nft's `size N`): the most elements it holds; a
  // set of known size and no dynamic updates gets the kernel's fixed-size hash instead of
  // the resizable one (which starts at a handful of buckets and regrows while filled).
  void set(int family, const std::string& table, const char* name, uint32_t id, uint32_t key_len,
           uint32_t flags, bool counted = false, uint32_t size = 0) {
    nftnl_set* s = nftnl_set_alloc();
    nftnl_set_set_u32(s, NFTNL_SET_FAMILY, static_cast<uint32_t>(family));
    nftnl_set_set_str(s, NFTNL_SET_TABLE, table.c_str());
    nftnl_set_set_str(s, NFTNL_SET_NAME, name);
    nftnl_set_set_u32(s, NFTNL_SET_ID, id);
    nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, key_len);
    // Every set of a cell table is keyed address . protocol . port: nft's datatype of that
    // concatenation (ipv4_addr / ipv6_addr, inet_proto, inet_service, 6 bits each), so that
    // `nft list ruleset` in a cell's namespace shows its elements as nft would have written them.
    if (key_len == 12 || key_len == 24)
      nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE, ((key_len == 12 ? 7u : 8u) << 12) | (12u << 6) | 13u);
    nftnl_set_set_u32(s, NFTNL_SET_FLAGS, flags);
    if (counted) nftnl_set_add_expr(s, nftnl_expr_alloc("counter"));
    if (size) nftnl_set_set_u32(s, NFTNL_SET_DESC_SIZE, size);
    nlmsghdr* h = nftnl_nlmsg_build_hdr(cur(), NFT_MSG_NEWSET, static_cast<uint16_t>(family),
                                        NLM_F_CREATE, s_.next_seq());
    nftnl_set_nlmsg_build_payload(h, s);
    nftnl_set_free(s);
    next();
  }
  // Keys added to a set created in this batch. Written with libmnl directly: libnftnl would
  // allocate, copy and free an object per element (perf: most of the install's user-space time
  // at 200 targets). The same attributes nftnl_set_elems_nlmsg_build_payload writes.
  void keys(int family, const std::string& table, const char* set, uint32_t id,
            std::span<const SetKey> keys) {
    nlmsghdr* h = nftnl_nlmsg_build_hdr(cur(), NFT_MSG_NEWSETELEM, static_cast<uint16_t>(family),
                                        NLM_F_CREATE, s_.next_seq());
    mnl_attr_put_strz(h, NFTA_SET_ELEM_LIST_SET, set);
    mnl_attr_put_u32(h, NFTA_SET_ELEM_LIST_SET_ID, htonl(id));
    mnl_attr_put_strz(h, NFTA_SET_ELEM_LIST_TABLE, table.c_str());
    nlattr* list = mnl_attr_nest_start(h, NFTA_SET_ELEM_LIST_ELEMENTS);
    uint16_t i = 0;
    for (const SetKey& k : keys) {
      nlattr* elem = mnl_attr_nest_start(h, ++i);
      nlattr* key = mnl_attr_nest_start(h, NFTA_SET_ELEM_KEY);
      mnl_attr_put(h, NFTA_DATA_VALUE, k.len, k.bytes.data());
      mnl_attr_nest_end(h, key);
      mnl_attr_nest_end(h, elem);
    }
    mnl_attr_nest_end(h, list);
    next();
  }
  // Elements (key, timeout in ms; 0: none) added to or deleted from a set.
  void elements(int family, const std::string& table, const char* set, uint16_t type,
                const std::vector<std::pair<std::vector<uint8_t>, uint64_t>>& elems) {
    nftnl_set* s = nftnl_set_alloc();
    nftnl_set_set_u32(s, NFTNL_SET_FAMILY, static_cast<uint32_t>(family));
    nftnl_set_set_str(s, NFTNL_SET_TABLE, table.c_str());
    nftnl_set_set_str(s, NFTNL_SET_NAME, set);
    for (const auto& [key, timeout] : elems) {
      nftnl_set_elem* e = nftnl_set_elem_alloc();
      nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, key.data(), static_cast<uint32_t>(key.size()));
      if (timeout) nftnl_set_elem_set_u64(e, NFTNL_SET_ELEM_TIMEOUT, timeout);
      nftnl_set_elem_add(s, e);
    }
    nlmsghdr* h = nftnl_nlmsg_build_hdr(cur(), type, static_cast<uint16_t>(family),
                                        type == NFT_MSG_NEWSETELEM ? NLM_F_CREATE : 0, s_.next_seq());
    nftnl_set_elems_nlmsg_build_payload(h, s);
    nftnl_set_free(s);
    next();
  }
  void rule(int family, const RuleBuilder& rb) {
    nlmsghdr* h = nftnl_rule_nlmsg_build_hdr(cur(), NFT_MSG_NEWRULE, static_cast<uint16_t>(family),
                                             NLM_F_APPEND | NLM_F_CREATE, s_.next_seq());
    nftnl_rule_nlmsg_build_payload(h, rb.get());
    next();
  }
  // Only the last message asks for an ack. The kernel runs a batch inside our sendmsg and
  // reports every failing message whether or not it asked, in message order, so one ack (or
  // the first error) settles the whole batch; 200 acks cost more than the rules (measured).
  base::Result<void> commit(const std::string& what) {
    if (last_) last_->nlmsg_flags |= NLM_F_ACK;
    nftnl_batch_end(cur(), s_.next_seq());
    mnl_nlmsg_batch_next(b_);
    if (overflow_) return base::value_error("nft batch", what + ": batch buffer too small");
    auto* head = static_cast<const std::byte*>(mnl_nlmsg_batch_head(b_));
    return s_.send_and_ack({head, mnl_nlmsg_batch_size(b_)}, last_ ? 1 : 0, what);
  }

 private:
  char* cur() { return static_cast<char*>(mnl_nlmsg_batch_current(b_)); }
  void next() {
    last_ = static_cast<nlmsghdr*>(mnl_nlmsg_batch_current(b_));
    if (!mnl_nlmsg_batch_next(b_)) overflow_ = true;
  }
  NetlinkSocket& s_;
  size_t size_;
  BatchRoom room_;
  mnl_nlmsg_batch* b_ = nullptr;
  nlmsghdr* last_ = nullptr;
  bool overflow_ = false;
};

// Address, protocol and port land side by side in 32-bit registers (the kernel zero-pads a
// 1- or 2-byte load to its register), so one compare checks them together where they fit in
// 16 bytes. The family check is not here: the target rules live in a chain per family
// (egress4, egress6) that the output chain jumps to once. The kernel's cost is per expression
// (each is looked up by name and allocated; perf: most of a 200-rule install), so 6
// expressions per IPv4 rule instead of 8 (or 10, unfused) is that much less install time.
constexpr const char* kEgress4 = "egress4";
constexpr const char* kEgress6 = "egress6";

void match_target(RuleBuilder& rb, const EgressTarget& t) {
  const bool v4 = t.family == AF_INET;
  const uint32_t alen = v4 ? 4 : 16;
  rb.payload(NFT_PAYLOAD_NETWORK_HEADER, v4 ? 16 : 24, alen, NFT_REG32_00);
  if (t.prefix_len < static_cast<int>(alen * 8)) {
    std::array<uint8_t, 16> m{};
    for (int bit = 0; bit < t.prefix_len; ++bit) m[bit / 8] |= static_cast<uint8_t>(0x80 >> (bit % 8));
    rb.mask(m.data(), alen, NFT_REG32_00);
  }
  const uint32_t tail = v4 ? NFT_REG32_01 : NFT_REG32_04;
  rb.meta(NFT_META_L4PROTO, tail);
  rb.payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, tail + 1);  // tcp and udp: dport at 2
  std::array<uint8_t, 8> proto_port{};
  proto_port[0] = t.l4proto;
  const uint16_t port = htons(t.port);
  std::memcpy(&proto_port[4], &port, 2);
  if (v4) {
    std::array<uint8_t, 12> key{};
    std::memcpy(key.data(), t.addr.data(), 4);
    std::memcpy(key.data() + 4, proto_port.data(), 8);
    rb.cmp(NFT_CMP_EQ, key.data(), 12, NFT_REG32_00);
  } else {
    rb.cmp(NFT_CMP_EQ, t.addr.data(), 16, NFT_REG32_00);
    rb.cmp(NFT_CMP_EQ, proto_port.data(), 8, tail);
  }
}

}  // namespace

base::Result<EgressTarget> parse_target(const std::string& text) {
  EgressTarget t;
  std::string addr = text;
  int max = 0;
  auto slash = text.find('/');
  if (slash != std::string::npos) addr = text.substr(0, slash);
  if (inet_pton(AF_INET, addr.c_str(), t.addr.data()) == 1) {
    t.family = AF_INET;
    max = 32;
  } else if (inet_pton(AF_INET6, addr.c_str(), t.addr.data()) == 1) {
    t.family = AF_INET6;
    max = 128;
  } else {
    return base::value_error("egress target", "\"" + text + "\" is not an IP address or CIDR");
  }
  t.prefix_len = max;
  if (slash != std::string::npos) {
    const std::string bits = text.substr(slash + 1);
    char* end = nullptr;
    long n = std::strtol(bits.c_str(), &end, 10);
    if (bits.empty() || *end != '\0' || n < 0 || n > max)
      return base::value_error("egress target", "\"" + text + "\" has a bad prefix length");
    t.prefix_len = static_cast<int>(n);
  }
  // Clear host bits: the kernel compares the masked address with this value.
  for (int bit = t.prefix_len; bit < max; ++bit)
    t.addr[bit / 8] &= static_cast<uint8_t>(~(0x80 >> (bit % 8)));
  return t;
}

namespace {

// The key of a dns set element: a target set's key (nft_internal.h), as match_target loads it.
std::vector<uint8_t> dns_key(const EgressTarget& t) {
  const SetKey k = set_key(t);
  return {k.bytes.begin(), k.bytes.begin() + k.len};
}

void load_dns_key(RuleBuilder& rb, bool v4) {
  rb.payload(NFT_PAYLOAD_NETWORK_HEADER, v4 ? 16 : 24, v4 ? 4 : 16, NFT_REG32_00);
  const uint32_t tail = v4 ? NFT_REG32_01 : NFT_REG32_04;
  rb.meta(NFT_META_L4PROTO, tail);
  rb.payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, tail + 1);
}

constexpr uint32_t kDnsSet4Id = 1, kDnsSet6Id = 2;

// The host targets' sets. A rule per target cost the kernel ~5 us to install (each expression
// looked up by name and allocated, a counter per rule): 200 targets took ~1 ms, most of a
// cell's ruleset. An element of a hashed set is one key, and the lookup is one hash probe per
// packet instead of a walk of every rule.
constexpr uint32_t kTargets4Id = 3, kTargets6Id = 4;  // names: nft_internal.h
// Their counters. A counter per element installed with the element cost two per-CPU
// allocations and a free each (the kernel clones the set's counter into a scratch
// expression, then into the element: perf, most of a 200-target install). These dynamic
// sets start empty: the lookup rule adds a matching packet's key (`add @hits4 { key }`), so
// the kernel makes an element, with its counter, on a target's first packet and counts
// every packet after on it. A target that sends nothing costs no counter and reads back 0.
constexpr uint32_t kHits4Id = 5, kHits6Id = 6;  // names: nft_internal.h

bool covers(const EgressTarget& g, const EgressTarget& t) {
  if (g.family != t.family || g.l4proto != t.l4proto || g.port != t.port) return false;
  int bits = g.prefix_len;
  for (int i = 0; bits > 0; ++i, bits -= 8) {
    const uint8_t m = bits >= 8 ? 0xff : static_cast<uint8_t>(0xff << (8 - bits));
    if ((g.addr[i] & m) != (t.addr[i] & m)) return false;
  }
  return true;
}

}  // namespace

SetKey set_key(const EgressTarget& t) {
  SetKey k;
  const size_t alen = t.family == AF_INET ? 4 : 16;
  std::memcpy(k.bytes.data(), t.addr.data(), alen);
  k.bytes[alen] = t.l4proto;
  const uint16_t port = htons(t.port);
  std::memcpy(k.bytes.data() + alen + 4, &port, 2);
  k.len = static_cast<uint32_t>(alen + 8);
  return k;
}

// A target may live in its family's set without changing which target a packet matches
// first when it is a host (full-length prefix) that no earlier target covers (an earlier
// prefix, or the same host declared twice). Such a host is disjoint from every earlier
// target, so looking it up before the remaining rules (prefixes, shadowed hosts, in declared
// order) gives each packet the target the rules in declared order would; its counter counts
// exactly what its rule would have. One pass: an earlier host covers only its own key (a
// hash lookup), so only the earlier prefixes are walked (the pairwise walk it replaces was
// ~4 % of a 200-target install, perf).
std::vector<bool> target_set_members(const std::vector<EgressTarget>& targets) {
  std::vector<bool> in(targets.size(), false);
  std::vector<SetKey> keys(targets.size());
  std::unordered_set<std::string_view> seen;  // views into `keys`, which never reallocates
  seen.reserve(targets.size());
  std::vector<const EgressTarget*> prefixes;
  for (size_t i = 0; i < targets.size(); ++i) {
    const EgressTarget& t = targets[i];
    if (t.prefix_len != (t.family == AF_INET ? 32 : 128)) {
      prefixes.push_back(&t);
      continue;
    }
    keys[i] = set_key(t);  // the key's length tells the families apart
    if (!seen.insert(keys[i].view()).second) continue;
    in[i] = std::none_of(prefixes.begin(), prefixes.end(),
                         [&](const EgressTarget* p) { return covers(*p, t); });
  }
  return in;
}

base::Result<void> update_dns_sets(NetlinkSocket& nf, const std::vector<DnsSetElement>& add,
                                   const std::vector<EgressTarget>& del) {
  if (add.empty() && del.empty()) return base::ok();
  std::vector<std::pair<std::vector<uint8_t>, uint64_t>> add4, add6, del4, del6;
  for (const auto& e : add)
    (e.target.family == AF_INET ? add4 : add6).emplace_back(dns_key(e.target), e.timeout_ms);
  for (const auto& t : del) (t.family == AF_INET ? del4 : del6).emplace_back(dns_key(t), 0);
  // Each element is ~60 bytes: a message per set and operation holds hundreds.
  Batch b(nf, 4 + (add.size() + del.size()) / 8);
  const int fam = NFPROTO_INET;
  if (!del4.empty()) b.elements(fam, kCellTable, kDnsSet4, NFT_MSG_DELSETELEM, del4);
  if (!del6.empty()) b.elements(fam, kCellTable, kDnsSet6, NFT_MSG_DELSETELEM, del6);
  if (!add4.empty()) b.elements(fam, kCellTable, kDnsSet4, NFT_MSG_NEWSETELEM, add4);
  if (!add6.empty()) b.elements(fam, kCellTable, kDnsSet6, NFT_MSG_NEWSETELEM, add6);
  return b.commit("nft dns set elements");
}

namespace {

// CellRuleset::forward: the chains that filter what the nested namespace behind the link
// sends. Appended to the cell's batch, so the table is never there without them.
constexpr size_t kForwardRules = 7;

void add_forward_chains(Batch& b, const std::string& table, const CellRuleset& r, bool has4,
                        bool has6) {
  const int fam = NFPROTO_INET;
  std::array<char, 16> link{};  // meta iifname loads IFNAMSIZ bytes, zero-padded
  std::strncpy(link.data(), kNestedLinkIfname, link.size() - 1);
  // Named, not by index: the ruleset goes in before the link exists (no window without it).
  auto from_link = [&](RuleBuilder& rb, uint32_t op) -> RuleBuilder& {
    rb.meta(NFT_META_IIFNAME);
    return rb.cmp(op, link.data(), static_cast<uint32_t>(link.size()));
  };
  b.chain(fam, table, {"forward", "filter", NF_INET_FORWARD, 0, NF_DROP});
  auto rule = [&](const std::string& tag) { return RuleBuilder(fam, table, "forward", tag); };
  {
    auto rb = rule("forward-established");
    rb.established().counter().verdict(NF_ACCEPT);
    b.rule(fam, rb);
  }
  {
    // A new flow from the uplink side into the nested namespace: never (as the host table
    // keeps anyone from opening a flow into a cell).
    auto rb = rule("forward-inbound");
    from_link(rb, NFT_CMP_NEQ).counter().verdict(NF_DROP);
    b.rule(fam, rb);
  }
  for (auto [present, proto, chain] : {std::tuple{has4, NFPROTO_IPV4, kEgress4},
                                       std::tuple{has6, NFPROTO_IPV6, kEgress6}}) {
    if (!present) continue;
    auto rb = rule("");
    rb.meta(NFT_META_NFPROTO).eq_u8(static_cast<uint8_t>(proto)).verdict(NFT_JUMP, chain);
    b.rule(fam, rb);
  }
  {
    auto rb = rule("forward-nflog");
    rb.counter().log(r.nflog_group, kDenyPrefix);
    b.rule(fam, rb);
    auto drop = rule("forward-drop");
    drop.counter().verdict(NF_DROP);
    b.rule(fam, drop);
  }
  // The outer namespace's own addresses and services are not on anyone's allow-list: what
  // the link delivers locally is a denied flow. (ARP, which routing over the link needs, is
  // not seen by an inet table.)
  b.chain(fam, table, {"input", "filter", NF_INET_LOCAL_IN, 0, NF_ACCEPT});
  {
    RuleBuilder rb(fam, table, "input", "input-nflog");
    from_link(rb, NFT_CMP_EQ).counter().log(r.nflog_group, kDenyPrefix);
    b.rule(fam, rb);
    RuleBuilder drop(fam, table, "input", "input-drop");
    from_link(drop, NFT_CMP_EQ).counter().verdict(NF_DROP);
    b.rule(fam, drop);
  }
  // What the host is to this namespace, this namespace is to the one behind the link: its
  // traffic leaves with this namespace's uplink address (which the host masquerades again).
  // By source: a postrouting hook has no input interface. Only the link's addresses can
  // arrive from it (NestedLink turns on strict reverse-path filtering there).
  b.chain(fam, table, {"postrouting", "nat", NF_INET_POST_ROUTING, 100, NF_ACCEPT});
  {
    RuleBuilder rb(fam, table, "postrouting", "forward-masquerade");
    rb.meta(NFT_META_NFPROTO).eq_u8(NFPROTO_IPV4);
    in_addr net{};
    inet_pton(AF_INET, kNestedLinkNetwork, &net);
    const uint32_t m = htonl(~0u << (32 - kNestedLinkPrefixLen));
    rb.payload(NFT_PAYLOAD_NETWORK_HEADER, 12, 4).mask(&m, 4).cmp(NFT_CMP_EQ, &net, 4);
    rb.meta(NFT_META_OIFNAME).cmp(NFT_CMP_NEQ, link.data(), static_cast<uint32_t>(link.size()));
    rb.counter().masquerade();
    b.rule(fam, rb);
  }
}

}  // namespace

size_t cell_rule_count(const CellRuleset& r) {
  return 4 + r.targets.size() + (r.append_invalid_rule ? 1 : 0) + (r.dns_sets ? 2 : 0) +
         (r.forward ? kForwardRules : 0);
}

base::Result<void> install_cell_ruleset(NetlinkSocket& nf, const CellRuleset& r) {
  const int fam = NFPROTO_INET;
  const std::string table = kCellTable;
  bool has4 = false, has6 = false;
  for (const EgressTarget& t : r.targets) (t.family == AF_INET ? has4 : has6) = true;
  if (r.dns_sets) has4 = has6 = true;
  // Host targets go into a set per family (keys only: read_counters names an element by the
  // target of its key, from the ruleset, so no tag is stored per element; storing one was ~5 %
  // of a 200-target install), their counters into the family's hits set; prefixes (and hosts
  // an earlier rule shadows) stay rules, after the set's lookup.
  std::vector<SetKey> elems4, elems6;
  std::vector<const EgressTarget*> as_rules;
  const std::vector<bool> members = target_set_members(r.targets);
  for (size_t i = 0; i < r.targets.size(); ++i) {
    const EgressTarget& t = r.targets[i];
    if (!members[i]) {
      as_rules.push_back(&t);
      continue;
    }
    (t.family == AF_INET ? elems4 : elems6).push_back(set_key(t));
  }
  // Table, three chains, two jumps, six sets, four lookup rules, the rules and the element
  // messages; the elements' bytes besides.
  const size_t elements = elems4.size() + elems6.size();
  Batch b(nf, cell_rule_count(r) - elements + 14 + 2 + elements / kElementsPerMessage,
          elements * kPerElement);
  b.table(fam, table, NFT_MSG_NEWTABLE);
  if (r.dns_sets) {
    b.set(fam, table, kDnsSet4, kDnsSet4Id, 12, NFT_SET_TIMEOUT);
    b.set(fam, table, kDnsSet6, kDnsSet6Id, 24, NFT_SET_TIMEOUT);
  }
  for (auto [elems, name, id, hits, hits_id, klen] :
       {std::tuple{&elems4, kTargets4, kTargets4Id, kHits4, kHits4Id, 12u},
        std::tuple{&elems6, kTargets6, kTargets6Id, kHits6, kHits6Id, 24u}}) {
    if (elems->empty()) continue;
    const auto n = static_cast<uint32_t>(elems->size());
    b.set(fam, table, name, id, klen, 0, /*counted=*/false, n);
    // Sized like the targets: only a key of the targets set is ever added, so it never fills.
    b.set(fam, table, hits, hits_id, klen, NFT_SET_EVAL, /*counted=*/true, n);
    for (size_t at = 0; at < elems->size(); at += kElementsPerMessage) {
      const size_t count = std::min(elems->size() - at, kElementsPerMessage);
      b.keys(fam, table, name, id, std::span<const SetKey>(elems->data() + at, count));
    }
  }
  if (has4) b.chain(fam, table, {kEgress4, nullptr, 0, 0, 0});
  if (has6) b.chain(fam, table, {kEgress6, nullptr, 0, 0, 0});
  b.chain(fam, table, {"output", "filter", NF_INET_LOCAL_OUT, 0, NF_DROP});
  auto rule = [&](const std::string& tag) { return RuleBuilder(fam, table, "output", tag); };
  {
    auto rb = rule("loopback");
    rb.meta(NFT_META_OIF).eq_u32(kLoopbackIndex).counter().verdict(NF_ACCEPT);
    b.rule(fam, rb);
  }
  {
    auto rb = rule("established");
    rb.established().counter().verdict(NF_ACCEPT);
    b.rule(fam, rb);
  }
  // A destination that matches nothing in its family's chain returns here, to the log and drop.
  for (auto [present, proto, chain] : {std::tuple{has4, NFPROTO_IPV4, kEgress4},
                                       std::tuple{has6, NFPROTO_IPV6, kEgress6}}) {
    if (!present) continue;
    auto rb = rule("");  // no counter: the target rules count, the jump is plumbing
    rb.meta(NFT_META_NFPROTO).eq_u8(static_cast<uint8_t>(proto)).verdict(NFT_JUMP, chain);
    b.rule(fam, rb);
  }
  for (auto [elems, v4, name, id, hits, hits_id] :
       {std::tuple{&elems4, true, kTargets4, kTargets4Id, kHits4, kHits4Id},
        std::tuple{&elems6, false, kTargets6, kTargets6Id, kHits6, kHits6Id}}) {
    if (elems->empty()) continue;
    // No counter here: the hits set's elements count (read_counters puts them, in declared
    // order, in this rule's place). A lookup leaves the key's registers as they were.
    RuleBuilder rb(fam, table, v4 ? kEgress4 : kEgress6, "");
    load_dns_key(rb, v4);
    rb.lookup(name, id, NFT_REG32_00).dynset_add(hits, hits_id, NFT_REG32_00).verdict(NF_ACCEPT);
    b.rule(fam, rb);
    // Should the kernel fail to make a first packet's hits element (an atomic allocation on
    // the packet path), that rule stops short of its accept; this one still accepts the
    // packet (uncounted), so the verdict never depends on the counter.
    RuleBuilder fallback(fam, table, v4 ? kEgress4 : kEgress6, "");
    load_dns_key(fallback, v4);
    fallback.lookup(name, id, NFT_REG32_00).verdict(NF_ACCEPT);
    b.rule(fam, fallback);
  }
  for (const EgressTarget* t : as_rules) {
    RuleBuilder rb(fam, table, t->family == AF_INET ? kEgress4 : kEgress6, t->tag);
    match_target(rb, *t);
    rb.counter().verdict(NF_ACCEPT);
    b.rule(fam, rb);
  }
  if (r.dns_sets) {
    for (bool v4 : {true, false}) {
      RuleBuilder rb(fam, table, v4 ? kEgress4 : kEgress6, "dns");
      load_dns_key(rb, v4);
      rb.lookup(v4 ? kDnsSet4 : kDnsSet6, v4 ? kDnsSet4Id : kDnsSet6Id, NFT_REG32_00);
      rb.counter().verdict(NF_ACCEPT);
      b.rule(fam, rb);
    }
  }
  if (r.append_invalid_rule) {
    auto rb = rule("invalid");
    rb.verdict(NFT_JUMP, "no-such-chain");
    b.rule(fam, rb);
  }
  {
    // Denies are logged (the flows work reads them from this group) and then dropped; the
    // chain's drop policy is the backstop should a rule above ever be removed.
    auto rb = rule("nflog");
    rb.counter().log(r.nflog_group, kDenyPrefix);
    b.rule(fam, rb);
    auto drop = rule("drop");
    drop.counter().verdict(NF_DROP);
    b.rule(fam, drop);
  }
  if (r.forward) add_forward_chains(b, table, r, has4, has6);
  return b.commit("nft table inet " + table);
}

base::Result<void> install_host_ruleset(NetlinkSocket& nf, const HostRuleset& r) {
  // inet: the input and forward rules must hold for IPv6 too (a cell's eth0 has a link-local
  // address, and the bridge one), not only for the IPv4 the uplink routes.
  const int fam = NFPROTO_INET;
  Batch b(nf, 8);
  b.table(fam, r.table, NFT_MSG_NEWTABLE);
  b.chain(fam, r.table, {"postrouting", "nat", NF_INET_POST_ROUTING, 100, NF_ACCEPT});
  b.chain(fam, r.table, {"input", "filter", NF_INET_LOCAL_IN, 0, NF_ACCEPT});
  b.chain(fam, r.table, {"forward", "filter", NF_INET_FORWARD, 0, NF_ACCEPT});
  const uint32_t bridge = static_cast<uint32_t>(r.bridge_index);
  {
    // ip saddr SUBNET oif != bridge masquerade
    RuleBuilder rb(fam, r.table, "postrouting", "masquerade");
    rb.meta(NFT_META_NFPROTO).eq_u8(NFPROTO_IPV4);
    uint32_t m = r.prefix_len == 0 ? 0 : htonl(~0u << (32 - r.prefix_len));
    rb.payload(NFT_PAYLOAD_NETWORK_HEADER, 12, 4).mask(&m, 4);
    rb.cmp(NFT_CMP_EQ, &r.subnet, 4);
    rb.meta(NFT_META_OIF).cmp(NFT_CMP_NEQ, &bridge, 4).counter().masquerade();
    b.rule(fam, rb);
  }
  {
    // Nothing from a cell is delivered to the host itself: not its addresses, not the gateway.
    RuleBuilder rb(fam, r.table, "input", "cells-to-host");
    rb.meta(NFT_META_IIF).eq_u32(bridge).counter().verdict(NF_DROP);
    b.rule(fam, rb);
  }
  {
    // Into the bridge only replies: nobody outside, and no cell through the host, opens a
    // connection to a cell.
    RuleBuilder est(fam, r.table, "forward", "to-cells-established");
    est.meta(NFT_META_OIF).eq_u32(bridge).established().counter().verdict(NF_ACCEPT);
    b.rule(fam, est);
    RuleBuilder drop(fam, r.table, "forward", "to-cells");
    drop.meta(NFT_META_OIF).eq_u32(bridge).counter().verdict(NF_DROP);
    b.rule(fam, drop);
  }
  return b.commit("nft table ip " + r.table);
}

base::Result<void> delete_table(NetlinkSocket& nf, int family, const std::string& table) {
  Batch b(nf, 1);
  b.table(family, table, NFT_MSG_DELTABLE);
  return b.commit("nft delete table " + table);
}

}  // namespace cellos::netns
