// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
//
// The probe's XDP steering program.
//
// Every frame on the capture interface runs through here once. The program keeps this path
// short and its decisions countable:
//   1. count the frame as seen, per RX queue and per CPU (no atomics needed);
//   2. frames whose source or destination is in the ignore-list (LPM tries) go to the kernel
//      stack untouched: the probe's own export traffic, management hosts;
//   3. optional 1-in-N sampling: frames sampled out go to the kernel stack;
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

struct queue_counters {
	__u64 seen;
	__u64 redirected;
	__u64 redirect_errors;
	__u64 no_socket;
	__u64 sampled_out;
	__u64 ignored;
	__u64 meta_failed;
	__u64 sample_countdown; /* deterministic sampling state, not a counter */
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

/* Is the frame's source or destination address in the ignore-list? Frames it cannot parse
 * are not ignored: userspace meters or counts them. */
static __always_inline int ignored(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u16 proto;
	void *l3;

	if ((void *)(eth + 1) > end)
		return 0;
	proto = eth->h_proto;
	l3 = eth + 1;
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != bpf_htons(VLAN_8021Q) && proto != bpf_htons(VLAN_8021AD) &&
		    proto != bpf_htons(VLAN_QINQ_OLD))
			break;
		if (l3 + 4 > end)
			return 0;
		proto = *(__u16 *)(l3 + 2);
		l3 += 4;
	}
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

/* Keep this frame under 1-in-N sampling? */
static __always_inline int sampled_in(struct queue_counters *c)
{
	__u32 every = sample_every;

	if (every <= 1)
		return 1;
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

	if (ignore_enabled && ignored(ctx)) {
		c->ignored++;
		return XDP_PASS;
	}
	if (!sampled_in(c)) {
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
