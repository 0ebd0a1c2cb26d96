/* The ABI shared by flow_probes.bpf.c and the loader: map keys, values, ring buffer records.
 *
 * C, not C++: clang compiles it into the BPF object (after vmlinux.h) and the loader includes
 * it after <linux/types.h>. Every struct is laid out with explicit padding, because the kernel
 * hashes and compares keys byte by byte: a padding byte left uninitialised on either side would
 * make one flow two. Changing a layout changes both sides at once (one header), so there is no
 * versioning. */
#ifndef CELLOS_EBPF_FLOW_ABI_H
#define CELLOS_EBPF_FLOW_ABI_H

/* Addresses are 16 bytes for both families; IPv4 uses the first 4 (network byte order) and
 * leaves the rest zero. Ports are host byte order. */
struct cellos_flow_key {
  __u64 cgroup_id;   /* the cell's cgroup2 id (the directory's inode number) */
  __u8 family;       /* CELLOS_AF_INET | CELLOS_AF_INET6 */
  __u8 l4proto;      /* IPPROTO_TCP, IPPROTO_UDP, or any other IP protocol (ports 0) */
  __u16 local_port;  /* the cell's side */
  __u16 remote_port;
  __u16 pad;
  __u8 local_addr[16];
  __u8 remote_addr[16];
};

/* Flag bits of cellos_flow_value.flags. */
#define CELLOS_FLOW_F_ORIGIN_INGRESS (1u << 0) /* first packet arrived (the remote side opened it) */
#define CELLOS_FLOW_F_BIRTH_SENT (1u << 1)     /* the birth record reached the ring buffer */
#define CELLOS_FLOW_F_END_SENT (1u << 2)       /* the end record reached the ring buffer */
#define CELLOS_FLOW_F_ENDED (1u << 3)          /* RST seen, or FIN seen in both directions */
#define CELLOS_FLOW_F_DENIED (1u << 4)         /* enforcement refused it: tx counters were dropped */
#define CELLOS_FLOW_F_DENY_SENT (1u << 5)      /* the deny record reached the ring buffer */
#define CELLOS_FLOW_F_FIN_TX (1u << 6)
#define CELLOS_FLOW_F_FIN_RX (1u << 7)
#define CELLOS_FLOW_F_RST (1u << 8)
#define CELLOS_FLOW_F_CONNECT (1u << 9) /* a refused connect(): remote = its destination, local 0 */

/* Counters accumulate in the kernel. Bytes are skb->len at the cgroup_skb hooks, which is the
 * IP packet: IP header + L4 header + payload (no link-layer header). */
struct cellos_flow_value {
  __u64 tx_packets, tx_bytes; /* from the cell (egress) */
  __u64 rx_packets, rx_bytes; /* to the cell (ingress) */
  __u64 first_seen_ns;        /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
  __u64 last_seen_ns;
  __u32 tcp_flags; /* OR of every TCP header's flags byte seen, both directions */
  __u32 flags;     /* CELLOS_FLOW_F_* */
  __u32 connects;  /* refused connect() calls folded into this entry */
  __u8 reason;     /* CELLOS_REASON_* when DENIED */
  __u8 pad[3];
};

/* Ring buffer record kinds: never one per packet. */
#define CELLOS_REC_BIRTH 1   /* first packet of a new flow; counters include it */
#define CELLOS_REC_END 2     /* the packet that ended a TCP flow; counters up to it */
#define CELLOS_REC_CONNECT 3 /* an allowed connect(): key.remote = destination, local zero */
#define CELLOS_REC_DENY 4    /* first refusal of a flow (connect or dropped packet) */

#define CELLOS_REASON_NONE 0
#define CELLOS_REASON_EGRESS_DEFAULT_DENY 1  /* cgroup_skb egress dropped a packet */
#define CELLOS_REASON_CONNECT_DEFAULT_DENY 2 /* connect() refused with EPERM */

struct cellos_flow_record {
  __u32 kind;  /* CELLOS_REC_* */
  __u32 pid;   /* tgid of the caller for connect records; 0 for packet records */
  __u64 time_ns;
  struct cellos_flow_key key;
  struct cellos_flow_value value; /* the flow's counters when the record was written */
};

/* Per-cell configuration, keyed by cgroup id (__u64). */
#define CELLOS_CELL_ACCOUNT (1u << 0)        /* count flows, send births/ends/connects */
#define CELLOS_CELL_ENFORCE (1u << 1)        /* refuse connects and drop packets not allowed */
#define CELLOS_CELL_ALLOW_LOOPBACK (1u << 2) /* with ENFORCE: anything via lo is allowed */
struct cellos_cell_config {
  __u32 flags;
  __u32 pad;
  __u64 cgroup_id; /* the cell's: flow keys carry it whichever descendant sent the packet */
};

/* Allow-list: one LPM trie for every cell. The trie matches bit prefixes of the data after
 * prefixlen, so the exact parts (cell, protocol, family, port) come first and the address
 * last: an entry's prefixlen is CELLOS_ALLOW_FIXED_BITS + the target's prefix length, a
 * lookup's is CELLOS_ALLOW_FIXED_BITS + 32 or 128. Packed: the trie requires the data to
 * follow prefixlen directly. */
struct cellos_allow_key {
  __u32 prefixlen;
  __u64 cgroup_id;
  __u8 l4proto;
  __u8 family;
  __u16 port; /* host byte order */
  __u8 addr[16];
} __attribute__((packed));
#define CELLOS_ALLOW_FIXED_BITS (64 + 8 + 8 + 16)

/* Per-CPU counters (one array slot); the loader sums them. */
struct cellos_stats {
  __u64 records_lost;        /* ring buffer full: bpf_ringbuf_reserve failed */
  __u64 flows_created;       /* flow entries the programs inserted */
  __u64 flow_create_failed;  /* insert failed (the packet went uncounted) */
  __u64 packets_dropped;     /* egress packets enforcement dropped */
  __u64 connects_refused;    /* connect() calls refused */
  __u64 flows_restarted;     /* ended TCP entries replaced by a new SYN on the same 4-tuple */
};

#define CELLOS_AF_INET 2
#define CELLOS_AF_INET6 10
#define CELLOS_LOOPBACK_IFINDEX 1 /* lo is ifindex 1 in every network namespace */
#define CELLOS_MAX_CGROUP_LEVEL 16 /* how deep a cell's nested cgroups are searched for its config */

#endif /* CELLOS_EBPF_FLOW_ABI_H */
