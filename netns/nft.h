// nftables through libnftnl: a cell's egress allow-list, the uplink's host table, and reading
// rule counters back. Each ruleset is one netlink batch (one sendmsg, acks read in bulk);
// `nft` is never executed.
#pragma once

#include <netinet/in.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "netns/netlink.h"

namespace cellos::netns {

// One destination an egress rule allows: an address or prefix, a port, one protocol.
struct EgressTarget {
  int family = AF_INET;              // AF_INET | AF_INET6
  std::array<uint8_t, 16> addr{};    // network byte order
  int prefix_len = 32;
  uint16_t port = 0;
  uint8_t l4proto = IPPROTO_TCP;     // IPPROTO_TCP | IPPROTO_UDP
  std::string tag;                   // names the rule in counters: "egress[2]"
};

// "10.0.0.1", "10.0.0.0/8", "::1" or "fd00::/8" -> family, address, prefix (host bits cleared).
base::Result<EgressTarget> parse_target(const std::string& text);

// A cell's table: inet "cellos", chain output (hook output, policy drop) with, in order:
// oif lo accept · ct state established,related accept · one accept per target (in chain
// egress4 or egress6, jumped to once per family) · log to `nflog_group` with prefix
// kDenyPrefix · drop. Every rule but
// the two jumps has a counter and a tag in its userdata.
struct CellRuleset {
  std::vector<EgressTarget> targets;
  uint16_t nflog_group = 1;
  // Adds a rule that jumps to a chain that does not exist: the kernel refuses the whole batch.
  // Only for proving that a ruleset that fails to apply runs nothing.
  bool append_invalid_rule = false;
  // DNS authority: sets dns4 / dns6 (flags timeout; key address . l4proto . port, each field
  // in a 32-bit register as the target rules load them) and one counted rule per family,
  // tag "dns", accepting what they hold. The cell's DNS proxy fills them (update_dns_sets).
  bool dns_sets = false;
  // A nested cell (docs/nested.md, "The network of a nested cell"): this namespace is the
  // outer one, and the nested reactor's namespace behind it reaches the uplink through it,
  // arriving on kNestedLinkIfname. Adds chain forward (hook forward, policy drop):
  // established accept · not from the link: drop (tag forward-inbound) · the same jumps to
  // egress4/egress6 (one allow-list, one set of counters and of dns sets for both hooks) ·
  // log to `nflog_group` with kDenyPrefix · drop; and chain input (hook input, policy accept):
  // from the link, log · drop (nothing behind the link talks to this namespace itself); and
  // chain postrouting (nat): the link subnet masqueraded out of every other interface.
  // Off: the batch is exactly what it was before this field existed.
  bool forward = false;
};
constexpr const char* kCellTable = "cellos";
// The outer end of a nested cell's link (netns/nested_link.h), in the outer namespace, and
// the link's subnet (nested_link.h says why this one).
constexpr const char* kNestedLinkIfname = "nest0";
constexpr const char* kNestedLinkNetwork = "169.254.77.0";
constexpr int kNestedLinkPrefixLen = 30;
// The NFLOG prefix of the final log-and-drop: every deny record of a cell carries it. The
// kernel keeps prefixes under 128 bytes; short, because it is copied into every record.
constexpr const char* kDenyPrefix = "egress_default_deny";

// One element of a cell's dns4/dns6 set: an address, protocol and port its DNS proxy handed
// out, alive for `timeout_ms` (the kernel removes it then).
struct DnsSetElement {
  EgressTarget target;  // a host address (prefix_len 32 / 128), port, l4proto
  uint64_t timeout_ms = 0;
};
// One batch: deletes `del` (elements still present), then adds `add`.
base::Result<void> update_dns_sets(NetlinkSocket& nf, const std::vector<DnsSetElement>& add,
                                   const std::vector<EgressTarget>& del);
constexpr const char* kDnsSet4 = "dns4";
constexpr const char* kDnsSet6 = "dns6";

// Number of counted rules install_cell_ruleset installs (the per-family jumps not included).
size_t cell_rule_count(const CellRuleset& r);
base::Result<void> install_cell_ruleset(NetlinkSocket& nf, const CellRuleset& r);

// The reactor's host table (family inet): masquerade of the cell subnet leaving by any interface
// but the bridge; input from the bridge dropped (cells never reach the host's own addresses);
// forwarding into the bridge only for established flows.
struct HostRuleset {
  std::string table;   // "cellos-<host id>"
  in_addr subnet{};
  int prefix_len = 16;
  int bridge_index = 0;
};
base::Result<void> install_host_ruleset(NetlinkSocket& nf, const HostRuleset& r);

// Deletes a table and everything in it; ENOENT when absent.
base::Result<void> delete_table(NetlinkSocket& nf, int family, const std::string& table);

struct RuleCounter {
  std::string tag;
  uint64_t packets = 0, bytes = 0;
};
// One dump of every rule in a table, with each counted rule's tag and counter, in evaluation
// order (a jump's target chain in place of the jump). A cell table's host targets are set
// elements that carry no tag: `targets`, the installed ruleset's, names each by the target of
// its key (without them, the elements are left out).
base::Result<std::vector<RuleCounter>> read_counters(NetlinkSocket& nf, int family,
                                                     const std::string& table,
                                                     const std::vector<EgressTarget>& targets = {});

}  // namespace cellos::netns
