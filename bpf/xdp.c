/* XDP program for the WAN interface: count inbound ESP per SPI (raw ESP, IP protocol 50, and
 * ESP in UDP on port 4500, RFC 3948) and drop ESP with an unknown SPI and IKE from addresses
 * that are not configured peers. It never rewrites a packet. */
#include "espgw.h"

char __license[] SEC("license") = "Dual BSD/GPL";

#define IKE_PORT 500
#define NATT_PORT 4500

/* Indexes of xdp_stats. */
enum {
	STAT_UNKNOWN_SPI_DROP,
	STAT_UNKNOWN_SPI_PASS,
	STAT_NON_PEER_DROP,
	STAT_NON_PEER_PASS,
	STAT_MAX,
};

/* Filter switches, set by the loader at any time. */
#define FILTER_UNKNOWN_SPI 0x1
#define FILTER_NON_PEER 0x2

/* SA_IN_SLOTS is the size of sa_in_slots, a power of two. */
#define SA_IN_SLOTS 1024

/* struct sa_slot is an inbound SA in its slot of sa_in_slots. */
struct sa_slot {
	__u32 spi;  /* host order */
	__u32 used; /* 1 when the slot holds an SA */
	struct counter c;
};

/* sa_in_slots holds an inbound SA in slot spi % SA_IN_SLOTS when that slot is free: an array
 * lookup is inlined and costs a fifth of a hash lookup. SAs whose slot is taken go to
 * sa_in_stats. The loader decides which. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SA_IN_SLOTS);
	__type(key, __u32); /* spi % SA_IN_SLOTS */
	__type(value, struct sa_slot);
} sa_in_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 2 * MAX_POLICIES); /* an old and a new SA per policy during a rekey */
	__type(key, __u32); /* inbound SPI, host order */
	__type(value, struct counter);
} sa_in_stats SEC(".maps");

/* PEER_SLOTS is the size of peer_slots: one per value of an address's last byte. */
#define PEER_SLOTS 256

/* struct peer_slot is an IKE peer in its slot of peer_slots. */
struct peer_slot {
	__u32 addr; /* network order */
	__u32 used; /* 1 when the slot holds a peer */
};

/* peer_slots holds a peer in the slot of its address's last byte when that slot is free, for
 * the same reason as sa_in_slots; peers whose slot is taken go to peers. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PEER_SLOTS);
	__type(key, __u32); /* last byte of the address */
	__type(value, struct peer_slot);
} peer_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32); /* peer IPv4 address, network order */
	__type(value, __u8);
} peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} xdp_stats SEC(".maps");

/* filters holds FILTER_* bits; volatile because the loader changes it while we run. */
volatile __u32 filters = FILTER_UNKNOWN_SPI | FILTER_NON_PEER;

static __always_inline int verdict(__u32 filter, __u32 drop_stat)
{
	bool drop = filters & filter;
	__u32 key = drop ? drop_stat : drop_stat + 1;
	__u64 *n = bpf_map_lookup_elem(&xdp_stats, &key);

	if (n)
		(*n)++;
	return drop ? XDP_DROP : XDP_PASS;
}

static __always_inline int esp(__u32 spi, __u32 len)
{
	__u32 i = spi & (SA_IN_SLOTS - 1);
	struct sa_slot *s = bpf_map_lookup_elem(&sa_in_slots, &i);
	struct counter *c;

	if (s && s->used && s->spi == spi) {
		add_counter(&s->c, 1, len);
		return XDP_PASS;
	}
	c = bpf_map_lookup_elem(&sa_in_stats, &spi);
	if (c) {
		add_counter(c, 1, len);
		return XDP_PASS;
	}
	return verdict(FILTER_UNKNOWN_SPI, STAT_UNKNOWN_SPI_DROP);
}

static __always_inline int ike(__u32 saddr)
{
	__u32 i = ((__u8 *)&saddr)[3];
	struct peer_slot *p = bpf_map_lookup_elem(&peer_slots, &i);

	if (p && p->used && p->addr == saddr)
		return XDP_PASS;
	if (bpf_map_lookup_elem(&peers, &saddr))
		return XDP_PASS;
	return verdict(FILTER_NON_PEER, STAT_NON_PEER_DROP);
}

SEC("xdp")
int espgw_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct ipv4 h;

	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	if (!parse_ipv4(data, end, ETH_HLEN, &h) || !h.first_frag)
		return XDP_PASS;

	if (h.ip->protocol == IPPROTO_ESP) {
		__be32 *spi = data + h.l4off;

		if ((void *)(spi + 1) > end)
			return XDP_PASS;
		return esp(bpf_ntohl(*spi), h.len);
	}
	if (h.ip->protocol != IPPROTO_UDP)
		return XDP_PASS;

	struct udphdr *udp = data + h.l4off;
	if ((void *)(udp + 1) > end)
		return XDP_PASS;
	if (udp->dest == bpf_htons(IKE_PORT))
		return ike(h.ip->saddr);
	if (udp->dest != bpf_htons(NATT_PORT))
		return XDP_PASS;

	__u8 *payload = (void *)(udp + 1);
	/* A one-byte 0xff payload is a NAT-keepalive (RFC 3948 section 2.3). */
	if ((void *)(payload + 1) > end)
		return XDP_PASS;
	if (udp->len == bpf_htons(sizeof(*udp) + 1) && payload[0] == 0xff)
		return ike(h.ip->saddr);
	if ((void *)(payload + 4) > end)
		return XDP_PASS;
	__u32 marker = *(__be32 *)payload;
	if (marker == 0) /* non-ESP marker: IKE */
		return ike(h.ip->saddr);
	return esp(bpf_ntohl(marker), h.len);
}
