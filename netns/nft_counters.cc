// Reading a cell table's counters back from the kernel: per rule, and per host target from its
// set's elements (nft.h read_counters).
#include "netns/nft.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <tuple>

#include "netns/nft_internal.h"

namespace cellos::netns {
namespace {

// One element of a dumped set: its key and counter (zero when it has none).
struct SetElement {
  std::string key;
  uint64_t packets = 0, bytes = 0;
};

base::Result<std::vector<SetElement>> read_elements(NetlinkSocket& nf, int family,
                                                    const std::string& table,
                                                    const std::string& set) {
  std::array<char, 1024> req{};
  nlmsghdr* h = nftnl_nlmsg_build_hdr(req.data(), NFT_MSG_GETSETELEM,
                                      static_cast<uint16_t>(family), NLM_F_DUMP, nf.next_seq());
  std::unique_ptr<nftnl_set, void (*)(const nftnl_set*)> filter(nftnl_set_alloc(), nftnl_set_free);
  nftnl_set_set_str(filter.get(), NFTNL_SET_TABLE, table.c_str());
  nftnl_set_set_str(filter.get(), NFTNL_SET_NAME, set.c_str());
  nftnl_set_elems_nlmsg_build_payload(h, filter.get());
  std::vector<SetElement> found;
  auto r = nf.dump(h, [&](const nlmsghdr* msg) {
    std::unique_ptr<nftnl_set, void (*)(const nftnl_set*)> s(nftnl_set_alloc(), nftnl_set_free);
    if (nftnl_set_elems_nlmsg_parse(msg, s.get()) < 0) return;
    nftnl_set_elems_iter* it = nftnl_set_elems_iter_create(s.get());
    for (nftnl_set_elem* e = nftnl_set_elems_iter_next(it); e; e = nftnl_set_elems_iter_next(it)) {
      SetElement el;
      uint32_t len = 0;
      if (const void* k = nftnl_set_elem_get(e, NFTNL_SET_ELEM_KEY, &len))
        el.key.assign(static_cast<const char*>(k), len);
      nftnl_set_elem_expr_foreach(
          e,
          [](nftnl_expr* x, void* data) {
            auto* el = static_cast<SetElement*>(data);
            if (std::strcmp(nftnl_expr_get_str(x, NFTNL_EXPR_NAME), "counter") == 0) {
              el->packets = nftnl_expr_get_u64(x, NFTNL_EXPR_CTR_PACKETS);
              el->bytes = nftnl_expr_get_u64(x, NFTNL_EXPR_CTR_BYTES);
            }
            return 0;
          },
          &el);
      found.push_back(std::move(el));
    }
    nftnl_set_elems_iter_destroy(it);
  }, "nft list set " + set);
  if (!r) return std::move(r).error();
  return found;
}

// A target set's elements, each as its target's tag and counter, in the targets' declared
// order. An element is named by the target whose key it is (`declared`: the installed
// ruleset's targets; an element no target names is left out). The counters are the `hits`
// set's elements of the same key (a target without one has sent nothing); without a hits set,
// the target elements' own counters.
base::Result<std::vector<RuleCounter>> read_element_counters(
    NetlinkSocket& nf, int family, const std::string& table, const std::string& set,
    const std::string& hits, const std::vector<EgressTarget>& declared) {
  auto targets = read_elements(nf, family, table, set);
  if (!targets) return std::move(targets).error();
  // The install put exactly the members in the sets, one element per key.
  std::map<std::string, uint32_t, std::less<>> index_of;
  const std::vector<bool> members = target_set_members(declared);
  for (size_t i = 0; i < declared.size(); ++i)
    if (members[i]) index_of.emplace(set_key(declared[i]).view(), static_cast<uint32_t>(i));
  std::map<std::string, const SetElement*> by_key;
  std::vector<SetElement> hit;
  if (!hits.empty()) {
    auto h = read_elements(nf, family, table, hits);
    if (!h) return std::move(h).error();
    hit = std::move(*h);
    for (const SetElement& e : hit) by_key[e.key] = &e;
  }
  std::vector<std::pair<uint32_t, RuleCounter>> found;
  for (const SetElement& e : *targets) {
    const auto named = index_of.find(e.key);
    if (named == index_of.end()) continue;
    std::pair<uint32_t, RuleCounter> c;
    c.first = named->second;
    c.second.tag = declared[named->second].tag;
    const SetElement* counted = &e;
    if (!hits.empty()) {
      auto it = by_key.find(e.key);
      counted = it == by_key.end() ? nullptr : it->second;
    }
    if (counted) {
      c.second.packets = counted->packets;
      c.second.bytes = counted->bytes;
    }
    found.push_back(std::move(c));
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<RuleCounter> out;
  for (auto& [i, c] : found) out.push_back(std::move(c));
  return out;
}

}  // namespace

base::Result<std::vector<RuleCounter>> read_counters(NetlinkSocket& nf, int family,
                                                     const std::string& table,
                                                     const std::vector<EgressTarget>& declared) {
  std::array<char, 1024> req{};
  nlmsghdr* h = nftnl_rule_nlmsg_build_hdr(req.data(), NFT_MSG_GETRULE,
                                           static_cast<uint16_t>(family), NLM_F_DUMP,
                                           nf.next_seq());
  RulePtr filter(nftnl_rule_alloc());
  nftnl_rule_set_str(filter.get(), NFTNL_RULE_TABLE, table.c_str());
  nftnl_rule_nlmsg_build_payload(h, filter.get());
  // Rules per chain in dump order; a jump rule is replaced by its target chain's rules, so the
  // result is in evaluation order whatever order the kernel dumps chains in.
  struct Entry {
    RuleCounter c;
    bool counted = false;
    std::string jump;
    std::string targets;  // a lookup in a target set: its elements' counters stand here
    std::string hits;     // the set the rule adds matching keys to (their counters)
  };
  std::vector<std::string> chains;
  std::map<std::string, std::vector<Entry>> rules;
  auto r = nf.dump(h, [&](const nlmsghdr* msg) {
    RulePtr rule(nftnl_rule_alloc());
    if (nftnl_rule_nlmsg_parse(msg, rule.get()) < 0) return;
    Entry e;
    uint32_t len = 0;
    if (const void* tag = nftnl_rule_get_data(rule.get(), NFTNL_RULE_USERDATA, &len))
      e.c.tag.assign(static_cast<const char*>(tag), len);
    nftnl_expr_iter* it = nftnl_expr_iter_create(rule.get());
    for (nftnl_expr* x = nftnl_expr_iter_next(it); x; x = nftnl_expr_iter_next(it)) {
      const char* name = nftnl_expr_get_str(x, NFTNL_EXPR_NAME);
      if (std::strcmp(name, "counter") == 0) {
        e.counted = true;
        e.c.packets = nftnl_expr_get_u64(x, NFTNL_EXPR_CTR_PACKETS);
        e.c.bytes = nftnl_expr_get_u64(x, NFTNL_EXPR_CTR_BYTES);
      } else if (std::strcmp(name, "immediate") == 0 && nftnl_expr_is_set(x, NFTNL_EXPR_IMM_CHAIN)) {
        e.jump = nftnl_expr_get_str(x, NFTNL_EXPR_IMM_CHAIN);
      } else if (std::strcmp(name, "lookup") == 0) {
        const char* set = nftnl_expr_get_str(x, NFTNL_EXPR_LOOKUP_SET);
        if (set && (std::strcmp(set, kTargets4) == 0 || std::strcmp(set, kTargets6) == 0))
          e.targets = set;
      } else if (std::strcmp(name, "dynset") == 0) {
        const char* set = nftnl_expr_get_str(x, NFTNL_EXPR_DYNSET_SET_NAME);
        if (set) e.hits = set;
      }
    }
    nftnl_expr_iter_destroy(it);
    const char* chain = nftnl_rule_get_str(rule.get(), NFTNL_RULE_CHAIN);
    std::string c = chain ? chain : "";
    if (!rules.count(c)) chains.push_back(c);
    rules[c].push_back(std::move(e));
  }, "nft list table " + table);
  if (!r) return std::move(r).error();
  std::set<std::string> targets;
  // By target set, from the first rule that looks it up (the counting one: the uncounted
  // fallback after it stands for nothing).
  std::map<std::string, std::vector<RuleCounter>> elements;
  for (const auto& [chain, list] : rules)
    for (const Entry& e : list) {
      if (!e.jump.empty()) targets.insert(e.jump);
      if (!e.targets.empty() && !elements.count(e.targets)) {
        auto el = read_element_counters(nf, family, table, e.targets, e.hits, declared);
        if (!el) return std::move(el).error();
        elements[e.targets] = std::move(*el);
      }
    }
  std::vector<RuleCounter> out;
  std::set<std::string> emitted;  // a chain two base chains jump to (forward) counts once
  // A target set two rules look up (the counting one and its uncounted fallback) counts once.
  std::set<std::string> emitted_targets;
  auto emit = [&](const std::vector<Entry>& list, auto&& self) -> void {
    for (const Entry& e : list) {
      if (!e.jump.empty() && rules.count(e.jump) && emitted.insert(e.jump).second)
        self(rules[e.jump], self);
      if (!e.targets.empty() && emitted_targets.insert(e.targets).second)
        for (const RuleCounter& c : elements[e.targets]) out.push_back(c);
      if (e.counted) out.push_back(e.c);
    }
  };
  for (const std::string& c : chains)
    if (!targets.count(c)) emit(rules[c], emit);
  return out;
}

}  // namespace cellos::netns
