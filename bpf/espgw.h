/* Shared definitions of the espgw tc and XDP programs. The Go loader mirrors every struct here
 * through the types bpf2go generates, so a field added here must be handled in loader/. */
#ifndef ESPGW_H
#define ESPGW_H

#include <stdbool.h>
#include <stddef.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* MAX_POLICIES is the number of policy slots, a power of two. */
#define MAX_POLICIES 4096

/* TCP option kinds and the MSS option length (RFC 9293 section 3.2). */
#define TCPOPT_EOL 0
#define TCPOPT_NOP 1
#define TCPOPT_MSS 2
#define TCPOLEN_MSS 4

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

/* struct counter is a packet and byte count (per CPU in every map that holds one). */
struct counter {
	__u64 packets;
	__u64 bytes;
};

/* struct ipv4 is a parsed IPv4 header: addresses in network order, lengths in bytes. */
struct ipv4 {
	struct iphdr *ip;
	__u32 l4off;     /* offset of the transport header from the start of the packet */
	__u32 len;       /* bytes of the IP packet present in the buffer */
	__u32 end;       /* offset of the end of the IP packet (total length) */
	bool first_frag; /* carries the transport header (fragment offset 0) */
	bool fragment;   /* MF set or non-zero fragment offset */
};

/* parse_ipv4 reads the IPv4 header at off. It returns false for anything that is not a
 * well-formed IPv4 header fully inside the buffer. */
static __always_inline bool parse_ipv4(void *data, void *end, __u32 off, struct ipv4 *out)
{
	struct iphdr *ip = data + off;

	if ((void *)(ip + 1) > end)
		return false;
	if (ip->version != 4 || ip->ihl < 5)
		return false;
	if ((void *)ip + ip->ihl * 4 > end)
		return false;
	out->ip = ip;
	out->l4off = off + ip->ihl * 4;
	out->len = end - (void *)ip;
	out->end = off + bpf_ntohs(ip->tot_len);
	out->first_frag = !(ip->frag_off & bpf_htons(IP_OFFSET));
	out->fragment = ip->frag_off & bpf_htons(IP_MF | IP_OFFSET);
	return true;
}

/* add_counter adds packets packets of len bytes in all to a per-CPU counter; no atomics are
 * needed. */
static __always_inline void add_counter(struct counter *c, __u32 packets, __u64 len)
{
	c->packets += packets;
	c->bytes += len;
}

#endif
