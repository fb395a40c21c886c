/* tc programs for the protected side: classify IPv4 packets against the IPsec policy selectors,
 * count them per policy, per outbound SA and per flow, drop (fail closed) and report traffic of
 * policies whose SA is down, and clamp the TCP MSS of SYN and SYN-ACK segments. */
#include "espgw.h"

char __license[] SEC("license") = "Dual BSD/GPL";

/* Policy flags. */
#define POLICY_VALID 0x1 /* the slot holds a policy */
#define POLICY_SA_UP 0x2 /* its outbound SA is installed */
#define POLICY_PASS 0x4  /* while the SA is down, pass instead of drop */

/* MAX_CANDIDATES bounds the policies one remote and local prefix pair leaves to the protocol
 * and port checks. */
#define MAX_CANDIDATES 16

/* MAX_LOCAL_PREFIXES bounds the entries of local_prefixes: one per remote prefix and local
 * prefix of a policy whose remote prefix contains it. */
#define MAX_LOCAL_PREFIXES (8 * MAX_POLICIES)

/* PREFIX_LENS is the number of IPv4 prefix lengths, 0 to 32. */
#define PREFIX_LENS 33

/* struct prefix_lens lists distinct prefix lengths, longest first. */
struct prefix_lens {
	__u32 n;
	__u8 len[PREFIX_LENS];
};

struct remote_key {
	__u32 addr; /* network order, masked to len */
	__u32 len;
};

/* struct remote is a remote selector prefix: its id in local_key and the lengths of the local
 * prefixes of the policies whose remote prefix contains it. */
struct remote {
	__u32 id;
	struct prefix_lens locals;
};

struct local_key {
	__u32 remote_id;
	__u32 addr; /* network order, masked to len */
	__u32 len;
};

struct policy {
	__u32 id;       /* the control plane's policy id, reported in events and flows */
	__u32 priority; /* lower wins among overlapping selectors */
	__u32 sa_out;   /* index of the outbound SA in sa_out_stats; 0 = none */
	__u16 lport;    /* host order; 0 = any */
	__u16 rport;    /* host order; 0 = any */
	__u16 mss;      /* clamp TCP MSS to this; 0 = no clamp */
	__u8 proto;     /* 0 = any */
	__u8 flags;
};

struct policy_counters {
	struct counter out;  /* egress, SA up */
	struct counter in;   /* ingress (decrypted side) */
	__u64 sa_down_drops; /* egress packets dropped because the SA is down */
	__u64 sa_down_passes;
	__u64 mss_rewrites;
	__u64 events;
};

/* struct flow is a 5-tuple as it appears in the packet; ports are zero when absent. Aligned to
 * 8 so that it can be hashed and compared as two 64-bit words. */
struct flow {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 pad[3];
} __attribute__((aligned(8)));

struct flow_stats {
	struct counter c;
	__u32 policy_id;
	__u32 pad;
};

/* struct flow_cache_entry holds the traffic of one flow not yet added to flows, and what the
 * flow's policy decides, copied from its slot of policies while policy_gen was gen: the loader
 * changes the generation with every write to policies, so a hit needs no policies lookup. */
struct flow_cache_entry {
	struct flow key;
	struct flow_stats s; /* s.policy_id: the policy's id */
	__u32 gen;
	__u32 sa_out;        /* the policy's sa_out */
	__u16 mss;           /* the policy's mss */
	__u16 slot;          /* policy slot, or NO_POLICY */
	__u8 flags;          /* the policy's flags */
	__u8 egress;
	__u8 pad[2];
};

/* struct candidates lists the slots of the policies whose selectors contain a remote and a
 * local prefix, in order of ascending priority, so that the first one whose protocol and ports
 * match the packet wins. The list ends at the first policy without protocol and ports. */
struct candidates {
	__u16 slot[MAX_CANDIDATES];
	__u32 n;
};

/* struct event asks the control plane to negotiate the SA of policy_id (start: on-demand). */
struct event {
	__u32 policy_id;
	struct flow flow;
};

/* Emits struct event into BTF so bpf2go generates its Go twin. */
const struct event *unused_event __attribute__((unused));

/* Classification finds two longest prefixes with hash lookups, one per prefix length present
 * (longest first, usually one or two), so its cost does not grow with the number of policies.
 * The prefixes of the policies' remote selectors that contain one address form a chain, and so
 * do the local ones. remote_prefixes holds each remote selector prefix; the longest that
 * contains the packet's remote address stands for every policy whose remote prefix contains
 * the address. Under that prefix's id, local_prefixes holds each local prefix of those
 * policies; the longest that contains the packet's local address lists the policies whose
 * local prefix contains the address, best first. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_POLICIES);
	__type(key, struct remote_key);
	__type(value, struct remote);
} remote_prefixes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, MAX_LOCAL_PREFIXES);
	__type(key, struct local_key);
	__type(value, struct candidates);
} local_prefixes SEC(".maps");

/* remote_lens holds the lengths of the keys of remote_prefixes in the entry remote_lens_cur
 * names; the loader writes the other entry and then switches, so no packet reads a list
 * half-written. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct prefix_lens);
} remote_lens SEC(".maps");

volatile __u32 remote_lens_cur;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_POLICIES);
	__type(key, __u32); /* policy slot */
	__type(value, struct policy);
} policies SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_POLICIES);
	__type(key, __u32); /* policy slot */
	__type(value, struct policy_counters);
} policy_stats SEC(".maps");

/* sa_out_stats is indexed rather than keyed by SPI: an array lookup is inlined, a hash lookup
 * costs a third of the program's time. The loader maps SPIs to indexes. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2 * MAX_POLICIES); /* an old and a new SA per policy during a rekey */
	__type(key, __u32); /* SA index */
	__type(value, struct counter);
} sa_out_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, 16384); /* the loader may resize it */
	__type(key, struct flow);
	__type(value, struct flow_stats);
} flows SEC(".maps");

/* FLOW_CACHE_SLOTS is the size of flow_cache, a power of two. */
#define FLOW_CACHE_SLOTS 256

/* flow_cache is a per-CPU direct-mapped cache of flows: a packet of the flow in its slot reuses
 * the slot's classification (no trie lookup) and only adds to the slot's counts; a packet of
 * another flow is classified and first moves the slot's counts into flows (a hash lookup, the
 * cost every packet paid without the cache). The loader adds what the cache holds when it
 * reads flows. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FLOW_CACHE_SLOTS);
	__type(key, __u32); /* flow_slot() */
	__type(value, struct flow_cache_entry);
} flow_cache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} events SEC(".maps");

/* policy_gen changes whenever the loader changes the policies; a flow_cache entry classified
 * under another generation is classified again. */
volatile __u32 policy_gen;

/* event_interval_ns is the minimum time between two events of one policy; set at load. */
volatile const __u64 event_interval_ns = 1000000000;

/* last_event is the time of the last event per slot; races between CPUs only cost an event. */
__u64 last_event[MAX_POLICIES];

/* flow_cache_off makes every packet miss the flow cache; set at load, for benchmarks of the
 * classification. The verifier removes the test. */
volatile const bool flow_cache_off = false;

/* classify returns the policy that matches the packet with the lowest priority value and its
 * slot, or NULL. Ports are only compared when known; a policy with a port never matches a
 * packet without ports. */
static __always_inline struct policy *classify(__u32 local, __u32 remote, __u8 proto, __u16 lport,
					       __u16 rport, bool ports_known, __u32 *slotp)
{
	__u32 cur = remote_lens_cur;
	struct prefix_lens *lens = bpf_map_lookup_elem(&remote_lens, &cur);
	struct remote_key rkey;
	struct local_key lkey;
	struct remote *r = NULL;
	struct candidates *c = NULL;

	if (!lens)
		return NULL;
	for (__u32 i = 0; i < PREFIX_LENS && i < lens->n; i++) {
		rkey.len = lens->len[i];
		rkey.addr = remote & bpf_htonl(0xffffffff00000000ULL >> rkey.len);
		r = bpf_map_lookup_elem(&remote_prefixes, &rkey);
		if (r)
			break;
	}
	if (!r)
		return NULL;
	lkey.remote_id = r->id;
	for (__u32 i = 0; i < PREFIX_LENS && i < r->locals.n; i++) {
		lkey.len = r->locals.len[i];
		lkey.addr = local & bpf_htonl(0xffffffff00000000ULL >> lkey.len);
		c = bpf_map_lookup_elem(&local_prefixes, &lkey);
		if (c)
			break;
	}
	if (!c)
		return NULL;
	for (__u32 i = 0; i < MAX_CANDIDATES; i++) {
		__u32 slot;
		struct policy *p;

		if (i >= c->n)
			break;
		slot = c->slot[i];
		p = bpf_map_lookup_elem(&policies, &slot);
		if (!p || !(p->flags & POLICY_VALID))
			continue;
		if (p->proto && p->proto != proto)
			continue;
		if (p->lport || p->rport) {
			if (!ports_known || (p->lport && p->lport != lport) ||
			    (p->rport && p->rport != rport))
				continue;
		}
		*slotp = slot;
		return p;
	}
	return NULL;
}

/* struct syn describes a TCP SYN or SYN-ACK whose MSS clamp_mss may lower: one with options
 * that lie within the IP packet. */
struct syn {
	__u32 l4off;     /* offset of the TCP header; 0: not such a segment */
	__u32 first_mss; /* the MSS when the first option is an MSS option, as Linux and most
			  * stacks send it; 0: walk the options */
};

/* parse_syn fills s for the TCP segment at l4off; the IP packet ends at ip_end. It runs while
 * parsing, so that other segments leave the MSS path with one test. */
static __always_inline void parse_syn(struct tcphdr *tcp, void *end, __u32 l4off, __u32 ip_end,
				      struct syn *s)
{
	__u8 *opt = (__u8 *)(tcp + 1);

	if ((void *)(tcp + 1) > end || !tcp->syn)
		return;
	if (tcp->doff * 4 <= sizeof(*tcp) || l4off + tcp->doff * 4 > ip_end)
		return; /* no options, or they overrun the IP packet */
	s->l4off = l4off;
	if ((void *)(opt + TCPOLEN_MSS) <= end && opt[0] == TCPOPT_MSS && opt[1] == TCPOLEN_MSS)
		s->first_mss = (__u16)opt[2] << 8 | opt[3];
}

/* rewrite_mss replaces the MSS value old (host order) of the option at off in the TCP header
 * at l4off with mss and fixes the checksum. */
static __always_inline bool rewrite_mss(struct __sk_buff *skb, __u32 l4off, __u32 off, __u16 old,
					__u16 mss)
{
	/* Both values as they lie in memory (network order). */
	__u16 new = bpf_htons(mss);

	old = bpf_htons(old);
	if (bpf_skb_store_bytes(skb, l4off + off + 2, &new, sizeof(new), 0))
		return false;
	/* At an odd offset the two bytes straddle two checksum words: swap them. */
	if (off & 1) {
		old = __builtin_bswap16(old);
		new = __builtin_bswap16(new);
	}
	bpf_l4_csum_replace(skb, l4off + offsetof(struct tcphdr, check), old, new, sizeof(new));
	return true;
}

/* walk_mss lowers the MSS option of the segment at l4off, wherever it is among the options,
 * to at most mss. The options are walked with a masked offset because the verifier cannot
 * bound a pointer that grows inside a loop, and the option length is computed without a
 * branch on NOP so that each iteration leaves one state to verify, not two. */
static __always_inline bool walk_mss(struct __sk_buff *skb, __u32 l4off, __u16 mss)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct tcphdr *tcp;
	__u32 optend, off = sizeof(*tcp);

	l4off &= 0xff; /* at most 14 + 60; bounds the pointer for the verifier */
	tcp = data + l4off;
	if ((void *)(tcp + 1) > end)
		return false;
	optend = tcp->doff * 4;

	for (int i = 0; i < 40; i++) {
		__u64 nop, len;
		__u16 old;
		__u8 *opt;

		if (off >= optend)
			break;
		opt = (void *)tcp + (off & 0x3f);
		/* An option needs two bytes, except a NOP; none can follow one ending the packet. */
		if ((void *)(opt + 2) > end || opt[0] == TCPOPT_EOL)
			break;
		nop = ((__u64)(opt[0] ^ TCPOPT_NOP) - 1) >> 63; /* 1 for NOP, else 0 */
		len = (opt[1] & (nop - 1)) | nop;
		if (len < 2 - nop)
			break;
		if (opt[0] == TCPOPT_MSS) {
			if (len != TCPOLEN_MSS || off + TCPOLEN_MSS > optend ||
			    (void *)(opt + 4) > end)
				break;
			old = (__u16)opt[2] << 8 | opt[3];
			return old > mss && rewrite_mss(skb, l4off, off, old, mss);
		}
		off += len;
	}
	return false;
}

/* clamp_mss lowers the MSS option of the segment s describes to at most mss. It never raises
 * an MSS. */
static __always_inline bool clamp_mss(struct __sk_buff *skb, const struct syn *s, __u16 mss)
{
	if (!s->first_mss)
		return walk_mss(skb, s->l4off, mss);
	return s->first_mss > mss &&
	       rewrite_mss(skb, s->l4off, sizeof(struct tcphdr), s->first_mss, mss);
}

static __always_inline void send_event(__u32 slot, __u32 policy_id, struct flow *f,
				       struct policy_counters *st)
{
	__u64 now = bpf_ktime_get_ns();
	__u32 i = slot & (MAX_POLICIES - 1);
	struct event ev;

	if (last_event[i] && now - last_event[i] < event_interval_ns)
		return;
	last_event[i] = now;
	ev.policy_id = policy_id;
	ev.flow = *f;
	if (!bpf_ringbuf_output(&events, &ev, sizeof(ev), 0) && st)
		st->events++;
}

/* union flow_words is a flow as two words, built and compared as such: stored field by field
 * and loaded as words, it would stall the CPU's store-to-load forwarding for a few ns. */
union flow_words {
	struct flow f;
	__u64 w[2];
};

/* flow_slot returns the flow_cache slot of a flow (a multiplicative hash of its two words). */
static __always_inline __u32 flow_slot(const union flow_words *fw)
{
	return ((fw->w[0] ^ fw->w[1]) * 0x9e3779b97f4a7c15ULL) >> 56; /* 1 << (64 - 56) slots */
}

/* flush_flow adds the counts of a cache entry to flows. */
static __always_inline void flush_flow(struct flow_cache_entry *e)
{
	struct flow_stats *fs = bpf_map_lookup_elem(&flows, &e->key);

	if (!fs) {
		bpf_map_update_elem(&flows, &e->key, &e->s, BPF_ANY);
		return;
	}
	/* Other CPUs' values start zeroed: each CPU records the policy itself. */
	fs->c.packets += e->s.c.packets;
	fs->c.bytes += e->s.c.bytes;
	fs->policy_id = e->s.policy_id;
}

/* NO_POLICY is the slot of a cached flow that matches no policy. */
#define NO_POLICY 0xffff

/* cache_hit tells whether e holds f classified in this direction under policy generation gen. */
static __always_inline bool cache_hit(struct flow_cache_entry *e, const union flow_words *fw,
				      bool egress, __u32 gen)
{
	const __u64 *ek = (const __u64 *)&e->key;

	return !flow_cache_off && ek[0] == fw->w[0] && ek[1] == fw->w[1] && e->gen == gen &&
	       e->egress == egress;
}

/* cache_flow makes e hold f, classified under gen into policy p in slot (p NULL: no policy),
 * moving the counts of the flow e held before into flows. */
static __always_inline void cache_flow(struct flow_cache_entry *e, struct flow *f, bool egress,
				       __u32 gen, struct policy *p, __u32 slot)
{
	if (e->s.c.packets)
		flush_flow(e);
	e->key = *f;
	e->s.c.packets = 0;
	e->s.c.bytes = 0;
	e->gen = gen;
	e->egress = egress;
	if (!p) {
		e->slot = NO_POLICY;
		return;
	}
	e->slot = slot;
	e->s.policy_id = p->id;
	e->sa_out = p->sa_out;
	e->mss = p->mss;
	e->flags = p->flags;
}

/* handle runs the policy checks on one packet. egress: the packet goes into the tunnel (local
 * side = source); otherwise it came out of it (local side = destination). l2len is 14 on
 * Ethernet devices and 0 on L3 devices such as TUN. */
static __always_inline int handle(struct __sk_buff *skb, const bool egress, const __u32 l2len)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	union flow_words fw;
	struct ipv4 h;
	bool ports_known = false;
	struct syn syn = {};
	__u32 ports = 0; /* destination port << 16 | source port, host order */
	__u32 slot, gen, segs;
	__u8 proto;
	struct flow_cache_entry *e;
	struct policy_counters *st;
	__u64 len;

	if (skb->protocol != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	if (!parse_ipv4(data, end, l2len, &h))
		return TC_ACT_OK;
	proto = h.ip->protocol;
	if (h.first_frag && (proto == IPPROTO_TCP || proto == IPPROTO_UDP)) {
		struct tcphdr *l4 = data + h.l4off; /* UDP's ports lie where TCP's do */

		if ((void *)l4 + 4 <= end) {
			ports = (__u32)bpf_ntohs(l4->dest) << 16 | bpf_ntohs(l4->source);
			ports_known = true;
		}
		if (proto == IPPROTO_TCP && !h.fragment)
			parse_syn(l4, end, h.l4off, h.end, &syn);
	}
	/* struct flow as two words on a little-endian CPU */
	fw.w[0] = (__u64)h.ip->daddr << 32 | h.ip->saddr;
	fw.w[1] = (__u64)proto << 32 | ports;

	slot = flow_slot(&fw);
	e = bpf_map_lookup_elem(&flow_cache, &slot);
	if (!e)
		return TC_ACT_OK;
	gen = policy_gen; /* before classifying: a change after this makes the entry stale */
	if (!cache_hit(e, &fw, egress, gen)) {
		struct flow *f = &fw.f;
		struct policy *p;

		if (egress)
			p = classify(f->saddr, f->daddr, proto, f->sport, f->dport, ports_known, &slot);
		else
			p = classify(f->daddr, f->saddr, proto, f->dport, f->sport, ports_known, &slot);
		cache_flow(e, f, egress, gen, p, slot);
		if (!p)
			return TC_ACT_OK;
	}
	if (e->slot == NO_POLICY)
		return TC_ACT_OK;

	slot = e->slot;
	st = bpf_map_lookup_elem(&policy_stats, &slot);
	if (!st)
		return TC_ACT_OK;
	len = skb->len - l2len;
	/* A TSO/GRO super-packet (the TUN's in both directions) stands for gso_segs packets. */
	segs = skb->gso_segs ?: 1;

	if (egress && !(e->flags & POLICY_SA_UP)) {
		send_event(slot, e->s.policy_id, &e->key, st);
		if (e->flags & POLICY_PASS) {
			st->sa_down_passes++;
			return TC_ACT_OK;
		}
		st->sa_down_drops++;
		return TC_ACT_SHOT;
	}

	if (egress) {
		__u32 sa_out = e->sa_out;
		struct counter *sa = sa_out ? bpf_map_lookup_elem(&sa_out_stats, &sa_out) : NULL;

		add_counter(&st->out, segs, len);
		if (sa)
			add_counter(sa, segs, len);
	} else {
		add_counter(&st->in, segs, len);
	}
	add_counter(&e->s.c, segs, len);

	if (syn.l4off && e->mss && clamp_mss(skb, &syn, e->mss))
		st->mss_rewrites++;
	return TC_ACT_OK;
}

SEC("tc")
int espgw_egress_eth(struct __sk_buff *skb) { return handle(skb, true, ETH_HLEN); }

SEC("tc")
int espgw_ingress_eth(struct __sk_buff *skb) { return handle(skb, false, ETH_HLEN); }

SEC("tc")
int espgw_egress_l3(struct __sk_buff *skb) { return handle(skb, true, 0); }

SEC("tc")
int espgw_ingress_l3(struct __sk_buff *skb) { return handle(skb, false, 0); }
