// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
//
// The probe's XDP steering program.
//
// Every frame on the capture interface runs through here once. The program keeps this path
// short and its decisions countable:
//   1. count the frame as seen, per RX queue and per CPU (no atomics needed);
//   2. frames whose source or destination is in the ignore-list (LPM tries) go to the kernel
//      stack untouched: the probe's own export traffic, management hosts; inside one layer of
//      the tunnels --decap enables (VXLAN/GPE, Geneve, GRE, NVGRE, ERSPAN I-III, GTP-U) the
//      inner packet's addresses are looked up too;
//   3. optional 1-in-N sampling: frames sampled out go to the kernel stack. By frame (every
//      Nth, or random), or by address pair: every frame of 1 in N pairs of the innermost
//      packet's addresses (one tunnel layer deep), by a keyed hash that user space computes
//      alike (probe/core/src/sample.rs) for the frames this program passes up undecided;
//   4. a kernel timestamp goes with the frame, so userspace stamps it with the time it arrived,
//      not the time its batch was read: in the frame's metadata area where the kernel allows
//      bpf_xdp_adjust_meta, else in a prefix pushed in front of the Ethernet header with
//      bpf_xdp_adjust_head (the RX thread strips it; it is undone before any XDP_PASS), else
//      not at all (userspace stamps at batch read). The loader picks the first that loads;
//   5. the frame is redirected to the AF_XDP socket registered for its RX queue; with no socket
//      registered it goes to the kernel stack, so attaching the program never blackholes a
//      queue.
// The layout of `struct queue_counters` and `struct probe_meta` is mirrored in
// `bpf/src/lib.rs`; keep them in step.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define MAX_QUEUES 64
#define STAMP_NONE 0
#define STAMP_META 1
#define STAMP_PREFIX 2
#define VLAN_8021Q 0x8100
#define VLAN_8021AD 0x88a8
#define VLAN_QINQ_OLD 0x9100

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by the loader before the program is loaded. */
const volatile __u8 stamp_mode = STAMP_META; /* where the arrival time goes (STAMP_*) */
const volatile __u32 stamp_cookie = 0;       /* random per load: marks a stamp as ours */

/* Set by the loader and changed while the program runs (a reload): plain globals in .bss,
 * which userspace maps and writes; each frame reads them once. */
volatile __u32 sample_every;   /* keep 1 in N frames; 0 or 1: keep all */
volatile __u8 sample_random;   /* 1: random 1-in-N; 0: every Nth frame */
volatile __u8 ignore_enabled;  /* 1: consult the ignore tries */
volatile __u8 sample_by_pair;  /* 1: sample address pairs, not frames */
volatile __u32 sample_key;     /* the pair hash's key, drawn at start */

struct queue_counters {
	__u64 seen;
	__u64 redirected;
	__u64 redirect_errors;
	__u64 no_socket;
	__u64 sampled_out;
	__u64 ignored;
	__u64 meta_failed;
	__u64 sample_countdown; /* deterministic sampling state, not a counter */
	__u64 inner_unparsed;   /* ignore-list: a tunnel deeper than one layer, left to user space */
	__u64 sample_deferred;  /* pair sampling: innermost packet out of reach, user space decides */
};

struct probe_meta {
	__u64 ktime_ns;
	__u32 magic;
	__u32 queue;
};

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

/* One slot per RX queue, plus one for queue ids beyond MAX_QUEUES. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_QUEUES + 1);
	__type(key, __u32);
	__type(value, struct queue_counters);
} counters SEC(".maps");

struct lpm_v4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct lpm_v6 {
	__u32 prefixlen;
	__u8 addr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v4);
	__type(value, __u8);
} ignore_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v6);
	__type(value, __u8);
} ignore_v6 SEC(".maps");

/* Tunnels whose inner headers the ignore-list also looks at (bits of the probe's TunnelKind
 * codes), and the UDP ports that carry VXLAN (and VXLAN-GPE) and Geneve. Set by the loader
 * from --decap, --vxlan-port and --geneve-port. */
#define KIND_GRE 1
#define KIND_ERSPAN_I 2
#define KIND_ERSPAN_II 3
#define KIND_ERSPAN_III 4
#define KIND_VXLAN 5
#define KIND_GENEVE 6
#define KIND_GTPU 7
#define KIND_NVGRE 9
volatile __u32 decap_kinds;
volatile __u16 vxlan_ports[4];
volatile __u16 geneve_ports[4];

#define IP_PROTO_UDP 17
#define IP_PROTO_GRE 47
#define GTPU_PORT 2152

/* Outcomes of looking inside a tunnel. */
#define INNER_NONE 0     /* not a tunnel the probe decodes: the outer headers are all */
#define INNER_ETH 1      /* an Ethernet frame starts at *inner */
#define INNER_IP 2       /* an IP packet (version from its first nibble) starts at *inner */
#define INNER_DEEPER 3   /* a tunnel the program does not follow this deep: user space decides */

static __always_inline int kind_on(__u32 kind)
{
	return (decap_kinds >> kind) & 1;
}

static __always_inline int port_in(volatile __u16 *ports, __u16 port)
{
	return port && (ports[0] == port || ports[1] == port || ports[2] == port || ports[3] == port);
}

/* Skips up to two VLAN tags after an Ethernet header at `eth`; sets the ethertype (network
 * order) and where its payload starts. 0 when the frame is too short. */
static __always_inline int eth_payload(void *eth, void *end, __u16 *proto, void **l3)
{
	void *p = eth + 14;

	if (p > end)
		return 0;
	*proto = *(__u16 *)(eth + 12);
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (*proto != bpf_htons(VLAN_8021Q) && *proto != bpf_htons(VLAN_8021AD) &&
		    *proto != bpf_htons(VLAN_QINQ_OLD))
			break;
		if (p + 4 > end)
			return 0;
		*proto = *(__u16 *)(p + 2);
		p += 4;
	}
	*l3 = p;
	return 1;
}

/* Whether the source or destination of the IP packet at `l3` (ethertype `proto`) is in the
 * ignore-list. */
static __always_inline int addrs_ignored(__u16 proto, void *l3, void *end)
{
	if (proto == bpf_htons(ETH_P_IP)) {
		struct lpm_v4 key = { .prefixlen = 32 };
		if (l3 + 20 > end)
			return 0;
		__builtin_memcpy(key.addr, l3 + 12, 4);
		if (bpf_map_lookup_elem(&ignore_v4, &key))
			return 1;
		__builtin_memcpy(key.addr, l3 + 16, 4);
		return bpf_map_lookup_elem(&ignore_v4, &key) != NULL;
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct lpm_v6 key = { .prefixlen = 128 };
		if (l3 + 40 > end)
			return 0;
		__builtin_memcpy(key.addr, l3 + 8, 16);
		if (bpf_map_lookup_elem(&ignore_v6, &key))
			return 1;
		__builtin_memcpy(key.addr, l3 + 24, 16);
		return bpf_map_lookup_elem(&ignore_v6, &key) != NULL;
	}
	return 0;
}

/* One tunnel layer under the IP packet at `l3`, as user space's decoder finds it (the same
 * ports, the same header checks): INNER_* and where the inner frame or packet starts. */
static __always_inline int tunnel_inner(__u16 proto, void *l3, void *end, void **inner)
{
	__u8 ip_proto;
	void *l4;

	if (proto == bpf_htons(ETH_P_IP)) {
		__u8 *ip = l3;
		if (l3 + 20 > end)
			return INNER_NONE;
		/* A fragment's tunnel header is incomplete or absent. */
		if (*(__u16 *)(l3 + 6) & bpf_htons(0x3fff))
			return INNER_NONE;
		ip_proto = ip[9];
		l4 = l3 + ((ip[0] & 0x0f) << 2);
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		if (l3 + 40 > end)
			return INNER_NONE;
		/* Extension headers before the tunnel: left to user space. */
		ip_proto = *(__u8 *)(l3 + 6);
		l4 = l3 + 40;
	} else {
		return INNER_NONE;
	}

	if (ip_proto == IP_PROTO_UDP) {
		__u8 *h = l4 + 8;
		__u16 dport;
		if (l4 + 8 + 8 > end)
			return INNER_NONE;
		dport = bpf_ntohs(*(__u16 *)(l4 + 2));
		if (kind_on(KIND_VXLAN) && port_in(vxlan_ports, dport)) {
			if (!(h[0] & 0x08))
				return INNER_NONE;
			*inner = l4 + 16;
			if (!(h[0] & 0x04))
				return INNER_ETH;
			switch (h[3]) { /* VXLAN-GPE Next Protocol */
			case 1:
			case 2:
				return INNER_IP;
			case 3:
				return INNER_ETH;
			default:
				return INNER_NONE;
			}
		}
		if (kind_on(KIND_GENEVE) && port_in(geneve_ports, dport)) {
			__u32 optlen = (h[0] & 0x3f) << 2;
			__u16 gproto;
			if ((h[0] >> 6) != 0)
				return INNER_NONE;
			gproto = *(__u16 *)(h + 2);
			*inner = l4 + 16 + optlen;
			if (gproto == bpf_htons(0x6558))
				return INNER_ETH;
			if (gproto == bpf_htons(ETH_P_IP) || gproto == bpf_htons(ETH_P_IPV6))
				return INNER_IP;
			return INNER_NONE;
		}
		if (kind_on(KIND_GTPU) && dport == GTPU_PORT) {
			/* Version 1, protocol type GTP, a G-PDU. */
			if ((h[0] >> 5) != 1 || !(h[0] & 0x10) || h[1] != 0xff)
				return INNER_NONE;
			if (h[0] & 0x04) /* extension headers: user space follows them */
				return INNER_DEEPER;
			*inner = l4 + 8 + ((h[0] & 0x03) ? 12 : 8);
			return INNER_IP;
		}
		return INNER_NONE;
	}

	if (ip_proto == IP_PROTO_GRE) {
		__u8 *g = l4;
		__u16 gproto;
		__u32 hlen = 4;
		if (l4 + 4 > end)
			return INNER_NONE;
		if ((g[1] & 0x07) != 0) /* version 0 only (1 is PPTP) */
			return INNER_NONE;
		if (g[0] & 0x80)
			hlen += 4; /* checksum */
		if (g[0] & 0x20)
			hlen += 4; /* key */
		if (g[0] & 0x10)
			hlen += 4; /* sequence number */
		gproto = *(__u16 *)(g + 2);
		*inner = l4 + hlen;
		if (gproto == bpf_htons(0x6558))
			return (kind_on(KIND_GRE) || kind_on(KIND_NVGRE)) ? INNER_ETH : INNER_NONE;
		if (gproto == bpf_htons(ETH_P_IP) || gproto == bpf_htons(ETH_P_IPV6))
			return kind_on(KIND_GRE) ? INNER_IP : INNER_NONE;
		if (gproto == bpf_htons(0x88be)) {
			if (!(g[0] & 0x10)) /* type I: no sequence number, no ERSPAN header */
				return kind_on(KIND_ERSPAN_I) ? INNER_ETH : INNER_NONE;
			*inner = l4 + hlen + 8;
			return kind_on(KIND_ERSPAN_II) ? INNER_ETH : INNER_NONE;
		}
		if (gproto == bpf_htons(0x22eb)) {
			__u8 *e = l4 + hlen;
			if ((void *)(e + 12) > end || !kind_on(KIND_ERSPAN_III))
				return INNER_NONE;
			/* Frame type (bits 1-5 of octet 11): 0 Ethernet, 2 IP; O flag: a platform
			 * sub-header of 8 bytes follows. */
			*inner = (void *)e + 12 + ((e[11] & 0x01) ? 8 : 0);
			switch ((e[11] >> 1) & 0x1f) {
			case 0:
				return INNER_ETH;
			case 2:
				return INNER_IP;
			default:
				return INNER_NONE;
			}
		}
		return INNER_NONE;
	}
	return INNER_NONE;
}

/* The IP packet a tunnel of `kind` (INNER_ETH or INNER_IP) carries at `inner`: its
 * ethertype and start. 0 when the frame is too short for it. */
static __always_inline int inner_packet(int kind, void *inner, void *end, __u16 *proto,
					void **l3)
{
	__u8 *v = inner;

	if (kind == INNER_ETH)
		return eth_payload(inner, end, proto, l3);
	if ((void *)(v + 1) > end)
		return 0;
	*proto = (*v >> 4) == 6 ? bpf_htons(ETH_P_IPV6) : bpf_htons(ETH_P_IP);
	*l3 = inner;
	return 1;
}

/* Is the frame's source or destination address, or those of the packet inside one tunnel
 * layer the probe decodes, in the ignore-list? Frames it cannot parse are not ignored: user
 * space meters or counts them. A second tunnel inside the first is not followed: such frames
 * go to user space and are counted (`inner_unparsed`). */
static __always_inline int ignored(struct xdp_md *ctx, struct queue_counters *c)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	void *l3, *inner = 0, *l3i;
	__u16 proto, iproto;
	int kind;

	if (!eth_payload(data, end, &proto, &l3))
		return 0;
	if (addrs_ignored(proto, l3, end))
		return 1;
	if (!decap_kinds)
		return 0;
	kind = tunnel_inner(proto, l3, end, &inner);
	if (kind == INNER_NONE)
		return 0;
	if (kind == INNER_DEEPER) {
		c->inner_unparsed++;
		return 0;
	}
	if (!inner_packet(kind, inner, end, &iproto, &l3i))
		return 0;
	if (addrs_ignored(iproto, l3i, end))
		return 1;
	/* A tunnel inside the tunnel: this program goes one layer deep. */
	if (tunnel_inner(iproto, l3i, end, &inner) != INNER_NONE)
		c->inner_unparsed++;
	return 0;
}

#define PAIR_FOUND 1
#define PAIR_DEFERRED 2 /* the innermost packet is beyond this program: user space decides */

/* The two addresses of the IP packet at `l3`, each as one 32-bit word (IPv6: its four words
 * XORed), smaller first in the high half: both directions give the same pair. */
static __always_inline int ip_pair(__u16 proto, void *l3, void *end, __u64 *pair)
{
	__u32 a, b;

	if (proto == bpf_htons(ETH_P_IP)) {
		if (l3 + 20 > end)
			return PAIR_DEFERRED;
		__builtin_memcpy(&a, l3 + 12, 4);
		__builtin_memcpy(&b, l3 + 16, 4);
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		__u32 w[8];
		__u8 next;
		if (l3 + 40 > end)
			return PAIR_DEFERRED;
		/* Extension headers may hide a tunnel user space follows: let it decide. */
		next = *(__u8 *)(l3 + 6);
		if (decap_kinds && (next == 0 || next == 43 || next == 44 || next == 60 ||
				    next == 51 || next == 135 || next == 139 || next == 140))
			return PAIR_DEFERRED;
		__builtin_memcpy(w, l3 + 8, 32);
		a = w[0] ^ w[1] ^ w[2] ^ w[3];
		b = w[4] ^ w[5] ^ w[6] ^ w[7];
	} else {
		return PAIR_DEFERRED; /* MPLS, PPPoE...: user space finds the IP inside */
	}
	*pair = a < b ? ((__u64)a << 32 | b) : ((__u64)b << 32 | a);
	return PAIR_FOUND;
}

/* The address pair of the frame's innermost packet, looking one tunnel layer deep inside the
 * tunnels --decap enables, as the decoder would find it; PAIR_DEFERRED when that packet is
 * out of this program's reach. */
static __always_inline int frame_pair(struct xdp_md *ctx, __u64 *pair)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	void *l3, *inner = 0, *l3i;
	__u16 proto, iproto;
	int kind;

	if (!eth_payload(data, end, &proto, &l3))
		return PAIR_DEFERRED;
	if (!decap_kinds)
		return ip_pair(proto, l3, end, pair);
	kind = tunnel_inner(proto, l3, end, &inner);
	if (kind == INNER_NONE)
		return ip_pair(proto, l3, end, pair);
	if (kind == INNER_DEEPER || !inner_packet(kind, inner, end, &iproto, &l3i))
		return PAIR_DEFERRED;
	/* A tunnel inside the tunnel: its packet is the innermost, and it is out of reach. */
	if (tunnel_inner(iproto, l3i, end, &inner) != INNER_NONE)
		return PAIR_DEFERRED;
	return ip_pair(iproto, l3i, end, pair);
}

/* The finaliser of MurmurHash3, as probe/core/src/sample.rs computes it. */
static __always_inline __u64 mix64(__u64 h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	return h ^ (h >> 33);
}

/* Keep this frame under 1-in-N sampling? */
static __always_inline int sampled_in(struct xdp_md *ctx, struct queue_counters *c)
{
	__u32 every = sample_every;

	if (every <= 1)
		return 1;
	if (sample_by_pair) {
		__u64 pair;
		if (frame_pair(ctx, &pair) != PAIR_FOUND) {
			c->sample_deferred++;
			return 1;
		}
		return mix64(pair ^ ((__u64)sample_key * 0x9e3779b97f4a7c15ULL)) % every == 0;
	}
	if (sample_random)
		return bpf_get_prandom_u32() % every == 0;
	if (c->sample_countdown == 0 || c->sample_countdown >= every) {
		c->sample_countdown = every - 1;
		return 1;
	}
	c->sample_countdown--;
	return 0;
}

SEC("xdp")
int steer(struct xdp_md *ctx)
{
	__u32 queue = ctx->rx_queue_index;
	__u32 slot = queue < MAX_QUEUES ? queue : MAX_QUEUES;
	struct queue_counters *c = bpf_map_lookup_elem(&counters, &slot);

	if (!c)
		return XDP_PASS;
	c->seen++;

	if (ignore_enabled && ignored(ctx, c)) {
		c->ignored++;
		return XDP_PASS;
	}
	if (!sampled_in(ctx, c)) {
		c->sampled_out++;
		return XDP_PASS;
	}
	if (!bpf_map_lookup_elem(&xsks, &queue)) {
		c->no_socket++;
		return XDP_PASS;
	}
	int prefixed = 0;
	if (stamp_mode == STAMP_META) {
		if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(struct probe_meta)) == 0) {
			struct probe_meta *meta = (void *)(long)ctx->data_meta;
			if ((void *)(meta + 1) <= (void *)(long)ctx->data) {
				meta->ktime_ns = bpf_ktime_get_ns();
				meta->magic = stamp_cookie;
				meta->queue = queue;
			}
		} else {
			c->meta_failed++;
		}
	} else if (stamp_mode == STAMP_PREFIX) {
		/* The headroom XDP guarantees (256 bytes, native and generic) always has room; a
		 * frame that gets no prefix goes on without one and is stamped in userspace. */
		if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct probe_meta)) == 0) {
			struct probe_meta *meta = (void *)(long)ctx->data;
			prefixed = 1;
			if ((void *)(meta + 1) <= (void *)(long)ctx->data_end) {
				meta->ktime_ns = bpf_ktime_get_ns();
				meta->magic = stamp_cookie;
				meta->queue = queue;
			}
		} else {
			c->meta_failed++;
		}
	}
	if (bpf_redirect_map(&xsks, queue, 0) == XDP_REDIRECT) {
		c->redirected++;
		return XDP_REDIRECT;
	}
	c->redirect_errors++;
	/* The kernel stack must get the frame as it came. */
	if (prefixed)
		bpf_xdp_adjust_head(ctx, (int)sizeof(struct probe_meta));
	return XDP_PASS;
}
