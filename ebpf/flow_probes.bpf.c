// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Flow probes and BPF enforcement for cells.
 *
 * cgroup_skb ingress/egress accumulate per-flow counters in an LRU hash (one entry per
 * connection, keyed from the cell's side so both directions land in one entry) and write ring
 * buffer records only at births, ends and denials. cgroup/connect4 and connect6 record every
 * connect() and, when the cell enforces, refuse destinations missing from its allow-list.
 * Layouts live in flow_abi.h. */
#include "vmlinux.h"

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "ebpf/flow_abi.h"

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

/* Sizes are defaults: the loader resizes maps from FlowProbeOptions before load. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 65536);
  __type(key, struct cellos_flow_key);
  __type(value, struct cellos_flow_value);
} flows SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 4096);
  __type(key, __u64);
  __type(value, struct cellos_cell_config);
} cell_config SEC(".maps");

/* The same config again, as cgroup storage of the cell's cgroup (shared by the ingress and
 * egress attachments: key = cgroup id). The packet hooks reach it through the attachment
 * itself, with no hash lookup: at egress, the first BPF code a packet meets after the syscall,
 * each cold cache line of a hash lookup cost ~25 ns on our VMs. Zero until the loader writes
 * it, just after attaching, before the cell runs. */
struct {
  __uint(type, BPF_MAP_TYPE_CGROUP_STORAGE);
  __type(key, __u64);
  __type(value, struct cellos_cell_config);
} cell_storage SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(max_entries, 16384);
  __type(key, struct cellos_allow_key);
  __type(value, __u8);
  __uint(map_flags, BPF_F_NO_PREALLOC); /* the kernel requires it for LPM tries */
} allow SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 256 * 1024);
} events SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct cellos_stats);
} stats SEC(".maps");

/* Atomic even per CPU: an ingress program in softirq can interrupt an egress one on the same
 * CPU between its load and store. */
#define STAT_ADD(field)                                     \
  do {                                                      \
    __u32 zero_ = 0;                                        \
    struct cellos_stats *s_ = bpf_map_lookup_elem(&stats, &zero_); \
    if (s_) __sync_fetch_and_add(&s_->field, 1);            \
  } while (0)

/* A packet reduced to what the flow key and the verdict need. */
struct pkt {
  __u8 family, l4proto, tcp_flags, pad;
  __u16 sport, dport;
  __u8 saddr[16], daddr[16];
};

/* Headers are read straight from the packet when they are in its linear part (always, for
 * locally built packets), else copied by the helper: a helper call per header cost more than
 * the rest of the parse. `off` must be bounded (it is: at most 60). */
#define LOAD(skb, off, dst)                                                     \
  ({                                                                            \
    void *data_ = (void *)(long)(skb)->data;                                    \
    void *end_ = (void *)(long)(skb)->data_end;                                 \
    void *at_ = data_ + (off);                                                  \
    int r_ = 0;                                                                 \
    if (at_ + sizeof(*(dst)) <= end_)                                           \
      __builtin_memcpy((dst), at_, sizeof(*(dst)));                             \
    else                                                                        \
      r_ = bpf_skb_load_bytes((skb), (off), (dst), sizeof(*(dst)));             \
    r_;                                                                         \
  })

static __always_inline int parse(struct __sk_buff *skb, struct pkt *p) {
  __u32 l4off;
  /* cgroup_skb sees the packet from the network header on, in both directions. */
  if (skb->protocol == bpf_htons(ETH_P_IP)) {
    struct iphdr ip;
    if (LOAD(skb, 0, &ip)) return -1;
    p->family = CELLOS_AF_INET;
    p->l4proto = ip.protocol;
    __builtin_memcpy(p->saddr, &ip.saddr, 4);
    __builtin_memcpy(p->daddr, &ip.daddr, 4);
    /* Non-first fragments carry no L4 header: they count under ports 0. */
    if (ip.frag_off & bpf_htons(0x1fff)) return 0;
    l4off = ip.ihl * 4;
  } else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
    struct ipv6hdr ip6;
    if (LOAD(skb, 0, &ip6)) return -1;
    p->family = CELLOS_AF_INET6;
    /* Extension headers are not walked: such packets count under their next header, ports 0. */
    p->l4proto = ip6.nexthdr;
    __builtin_memcpy(p->saddr, &ip6.saddr, 16);
    __builtin_memcpy(p->daddr, &ip6.daddr, 16);
    l4off = sizeof(ip6);
  } else {
    return -1;
  }
  if (p->l4proto == IPPROTO_TCP) {
    __u8 th[14]; /* ports, seq, ack, offset byte, flags byte */
    if (LOAD(skb, l4off, &th)) return 0;
    p->sport = (__u16)th[0] << 8 | th[1];
    p->dport = (__u16)th[2] << 8 | th[3];
    p->tcp_flags = th[13];
  } else if (p->l4proto == IPPROTO_UDP) {
    __u8 uh[4];
    if (LOAD(skb, l4off, &uh)) return 0;
    p->sport = (__u16)uh[0] << 8 | uh[1];
    p->dport = (__u16)uh[2] << 8 | uh[3];
  }
  return 0;
}

/* The config of the cell whose cgroup the program is attached to: packets of sockets in
 * sub-cgroups the cell made run the same attachment, so they count under the cell too. */
static __always_inline struct cellos_cell_config *skb_config(struct __sk_buff *skb, __u64 *cgid) {
  (void)skb;
  struct cellos_cell_config *c = bpf_get_local_storage(&cell_storage, 0);
  if (!c->cgroup_id) return 0; /* attached, not configured yet: the cell has not started */
  *cgid = c->cgroup_id;
  return c;
}

static __always_inline struct cellos_cell_config *current_config(__u64 *cgid) {
  __u64 id = bpf_get_current_cgroup_id();
  struct cellos_cell_config *c = bpf_map_lookup_elem(&cell_config, &id);
  if (c) {
    *cgid = id;
    return c;
  }
  for (int level = 1; level < CELLOS_MAX_CGROUP_LEVEL; level++) {
    __u64 a = bpf_get_current_ancestor_cgroup_id(level);
    if (!a || a == id) break;
    c = bpf_map_lookup_elem(&cell_config, &a);
    if (c) {
      *cgid = a;
      return c;
    }
  }
  return 0;
}

static __always_inline int allowed(__u64 cgid, __u8 family, __u8 l4proto, const __u8 *addr,
                                   __u16 port) {
  struct cellos_allow_key k = {};
  k.prefixlen = CELLOS_ALLOW_FIXED_BITS + (family == CELLOS_AF_INET ? 32 : 128);
  k.cgroup_id = cgid;
  k.l4proto = l4proto;
  k.family = family;
  k.port = port;
  __builtin_memcpy(k.addr, addr, 16);
  return bpf_map_lookup_elem(&allow, &k) != 0;
}

static __always_inline void emit(__u32 kind, const struct cellos_flow_key *key,
                                 const struct cellos_flow_value *v, __u32 pid, __u64 now) {
  struct cellos_flow_record *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
  if (!r) {
    STAT_ADD(records_lost);
    return;
  }
  r->kind = kind;
  r->pid = pid;
  r->time_ns = now;
  r->key = *key;
  r->value = *v;
  /* Wake the reactor only when it matters: a denial (reported at once) or a ring a quarter
   * full. Births, ends and connects otherwise wait for the reactor's drain tick, which reads
   * the ring anyway (ends are reported at that tick): a wake-up per record cost the reactor
   * more than the rest of its work on the flow. A poll armed later still sees them. */
  __u64 wake = BPF_RB_NO_WAKEUP;
  if (kind == CELLOS_REC_DENY ||
      bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= bpf_ringbuf_query(&events, BPF_RB_RING_SIZE) / 4)
    wake = BPF_RB_FORCE_WAKEUP;
  bpf_ringbuf_submit(r, wake);
}

static __always_inline int flow_ended(__u32 f) {
  return (f & CELLOS_FLOW_F_RST) || ((f & CELLOS_FLOW_F_FIN_TX) && (f & CELLOS_FLOW_F_FIN_RX));
}

static __always_inline int on_packet(struct __sk_buff *skb, int egress) {
  __u64 cgid = 0;
  struct cellos_cell_config *cfg = skb_config(skb, &cgid);
  if (!cfg) return 1;
  __u32 cflags = cfg->flags;
  struct pkt p = {};
  if (parse(skb, &p)) return 1;
  int account = cflags & CELLOS_CELL_ACCOUNT;
  /* TCP needs no packet verdict: every TCP socket passed connect4/6 or was accepted (a reply).
   * UDP keeps flow state even unaccounted, so replies to inbound datagrams stay allowed. */
  int enforce_l4 = (cflags & CELLOS_CELL_ENFORCE) && p.l4proto != IPPROTO_TCP;
  if (!account && !enforce_l4) return 1;

  struct cellos_flow_key key = {};
  key.cgroup_id = cgid;
  key.family = p.family;
  key.l4proto = p.l4proto;
  if (egress) {
    key.local_port = p.sport;
    key.remote_port = p.dport;
    __builtin_memcpy(key.local_addr, p.saddr, 16);
    __builtin_memcpy(key.remote_addr, p.daddr, 16);
  } else {
    key.local_port = p.dport;
    key.remote_port = p.sport;
    __builtin_memcpy(key.local_addr, p.daddr, 16);
    __builtin_memcpy(key.remote_addr, p.saddr, 16);
  }

  /* The tick clock (4 ms at HZ=250): a flow's first/last seen need no finer grain, and the
   * precise clock cost ~30 ns per packet per hook here (272 -> 240 ns at egress). */
  __u64 now = bpf_ktime_get_coarse_ns();
  int born = 0;
  struct cellos_flow_value *v = bpf_map_lookup_elem(&flows, &key);
  if (v && (p.tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN && (v->flags & CELLOS_FLOW_F_ENDED)) {
    /* A new connection on the 4-tuple of an ended one (not drained away yet): a new flow. */
    bpf_map_delete_elem(&flows, &key);
    STAT_ADD(flows_restarted);
    v = 0;
  }
  if (!v) {
    struct cellos_flow_value nv = {};
    nv.first_seen_ns = now;
    nv.last_seen_ns = now;
    if (!egress) {
      nv.flags = CELLOS_FLOW_F_ORIGIN_INGRESS;
    } else if (enforce_l4 &&
               !((cflags & CELLOS_CELL_ALLOW_LOOPBACK) &&
                 skb->ifindex == CELLOS_LOOPBACK_IFINDEX) &&
               !allowed(cgid, key.family, key.l4proto, key.remote_addr, key.remote_port)) {
      /* The verdict is taken once, at birth, and kept in the entry. */
      nv.flags = CELLOS_FLOW_F_DENIED;
      nv.reason = CELLOS_REASON_EGRESS_DEFAULT_DENY;
    }
    /* NOEXIST: of two CPUs racing on a new flow, exactly one inserts and sends the birth. */
    if (bpf_map_update_elem(&flows, &key, &nv, BPF_NOEXIST) == 0) {
      born = 1;
      STAT_ADD(flows_created);
    }
    v = bpf_map_lookup_elem(&flows, &key);
    if (!v) {
      STAT_ADD(flow_create_failed);
      return (nv.flags & CELLOS_FLOW_F_DENIED) ? 0 : 1;
    }
  }

  if (egress) {
    __sync_fetch_and_add(&v->tx_packets, 1);
    __sync_fetch_and_add(&v->tx_bytes, skb->len);
  } else {
    __sync_fetch_and_add(&v->rx_packets, 1);
    __sync_fetch_and_add(&v->rx_bytes, skb->len);
  }
  v->last_seen_ns = now; /* a plain store: racing writers both hold a recent time */

  if (egress && (v->flags & CELLOS_FLOW_F_DENIED)) {
    STAT_ADD(packets_dropped);
    __u32 old = __sync_fetch_and_or(&v->flags, CELLOS_FLOW_F_DENY_SENT);
    if (!(old & CELLOS_FLOW_F_DENY_SENT)) emit(CELLOS_REC_DENY, &key, v, 0, now);
    return 0;
  }
  if (born && account) {
    __sync_fetch_and_or(&v->flags, CELLOS_FLOW_F_BIRTH_SENT);
    emit(CELLOS_REC_BIRTH, &key, v, 0, now);
  }
  if (p.l4proto == IPPROTO_TCP) {
    /* A locked OR only when it adds a bit: most packets of a flow repeat its flags. */
    if ((v->tcp_flags | p.tcp_flags) != v->tcp_flags)
      __sync_fetch_and_or(&v->tcp_flags, (__u32)p.tcp_flags);
    __u32 bits = 0;
    if (p.tcp_flags & TCP_FIN) bits |= egress ? CELLOS_FLOW_F_FIN_TX : CELLOS_FLOW_F_FIN_RX;
    if (p.tcp_flags & TCP_RST) bits |= CELLOS_FLOW_F_RST;
    if (bits) {
      __u32 old = __sync_fetch_and_or(&v->flags, bits);
      /* The CPU that completes the end condition sends the end, once. */
      if (!flow_ended(old) && flow_ended(old | bits)) {
        __sync_fetch_and_or(&v->flags, CELLOS_FLOW_F_ENDED);
        if (account) emit(CELLOS_REC_END, &key, v, 0, now);
      }
    }
  }
  return 1;
}

SEC("cgroup_skb/egress")
int cellos_egress(struct __sk_buff *skb) { return on_packet(skb, 1); }

SEC("cgroup_skb/ingress")
int cellos_ingress(struct __sk_buff *skb) { return on_packet(skb, 0); }

/* ::1, compared bytewise: the verifier rejects misaligned wide loads from the stack. */
static __always_inline int is_loopback6(const __u8 *a) {
  __u8 any = 0;
#pragma unroll
  for (int i = 0; i < 15; i++) any |= a[i];
  return any == 0 && a[15] == 1;
}

/* connect(): family and destination as the caller gave them. v4-mapped IPv6 destinations are
 * judged (and recorded) as the IPv4 they are. */
static __always_inline int on_connect(struct bpf_sock_addr *ctx, __u8 family, const __u8 *addr,
                                      __u16 port) {
  __u64 cgid = 0;
  struct cellos_cell_config *cfg = current_config(&cgid);
  if (!cfg) return 1;
  __u32 cflags = cfg->flags;
  if (!(cflags & (CELLOS_CELL_ACCOUNT | CELLOS_CELL_ENFORCE))) return 1;

  struct cellos_flow_key key = {};
  key.cgroup_id = cgid;
  key.family = family;
  key.l4proto = (__u8)ctx->protocol;
  key.remote_port = port;
  __builtin_memcpy(key.remote_addr, addr, 16);

  int ok = 1;
  if (cflags & CELLOS_CELL_ENFORCE) {
    int loopback = family == CELLOS_AF_INET ? addr[0] == 127 : is_loopback6(addr);
    ok = ((cflags & CELLOS_CELL_ALLOW_LOOPBACK) && loopback) ||
         allowed(cgid, family, key.l4proto, addr, port);
  }
  __u64 now = bpf_ktime_get_ns();
  __u32 pid = bpf_get_current_pid_tgid() >> 32;
  if (ok) {
    if (cflags & CELLOS_CELL_ACCOUNT) {
      struct cellos_flow_value v = {};
      v.first_seen_ns = now;
      v.last_seen_ns = now;
      emit(CELLOS_REC_CONNECT, &key, &v, pid, now);
    }
    return 1;
  }

  /* Refused: one entry per destination (local side zero) folds retries into one deny record. */
  STAT_ADD(connects_refused);
  struct cellos_flow_value *v = bpf_map_lookup_elem(&flows, &key);
  if (!v) {
    struct cellos_flow_value nv = {};
    nv.first_seen_ns = now;
    nv.last_seen_ns = now;
    nv.flags = CELLOS_FLOW_F_DENIED | CELLOS_FLOW_F_CONNECT;
    nv.reason = CELLOS_REASON_CONNECT_DEFAULT_DENY;
    if (bpf_map_update_elem(&flows, &key, &nv, BPF_NOEXIST) == 0) STAT_ADD(flows_created);
    v = bpf_map_lookup_elem(&flows, &key);
  }
  if (v) {
    __sync_fetch_and_add(&v->connects, 1);
    v->last_seen_ns = now;
    __u32 old = __sync_fetch_and_or(&v->flags, CELLOS_FLOW_F_DENY_SENT);
    if (!(old & CELLOS_FLOW_F_DENY_SENT)) emit(CELLOS_REC_DENY, &key, v, pid, now);
  } else {
    STAT_ADD(flow_create_failed);
  }
  return 0; /* the caller's connect() fails with EPERM */
}

SEC("cgroup/connect4")
int cellos_connect4(struct bpf_sock_addr *ctx) {
  __u8 addr[16] = {};
  __u32 ip = ctx->user_ip4;
  __builtin_memcpy(addr, &ip, 4);
  return on_connect(ctx, CELLOS_AF_INET, addr, bpf_ntohs((__u16)ctx->user_port));
}

SEC("cgroup/connect6")
int cellos_connect6(struct bpf_sock_addr *ctx) {
  __u32 a[4];
  a[0] = ctx->user_ip6[0];
  a[1] = ctx->user_ip6[1];
  a[2] = ctx->user_ip6[2];
  a[3] = ctx->user_ip6[3];
  __u16 port = bpf_ntohs((__u16)ctx->user_port);
  __u8 addr[16] = {};
  if (a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0xffff)) {
    __builtin_memcpy(addr, &a[3], 4); /* ::ffff:a.b.c.d leaves as IPv4 */
    return on_connect(ctx, CELLOS_AF_INET, addr, port);
  }
  __builtin_memcpy(addr, a, 16);
  return on_connect(ctx, CELLOS_AF_INET6, addr, port);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
