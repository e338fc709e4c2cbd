/*
 * peers.c: open connections per client address, for --max-connections-per-address (an
 * IPv6 client is its --ipv6-prefix, /64 by default).
 *
 * libmicrohttpd has its own per-IP limit, but in 0.9.75 its refusal reports ENFILE, which
 * puts the daemon in its "out of descriptors" state, and in that state it was seen to stop
 * noticing that the address's other connections closed (tests/server/test_hardening.c:
 * after the limit was hit once, the address stayed locked out until --timeout). So the
 * daemon counts connections itself (libmicrohttpd's connection notifications) and refuses
 * in libmicrohttpd's accept-policy callback, whose refusal is an ordinary one. Loop thread
 * only (libmicrohttpd runs there).
 */
#include "server.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    unsigned char key[17]; /* family, then 4 or 16 address bytes */
    unsigned count;
} peer;

static peer *peers;
static size_t n_peers, cap_peers;
static unsigned v6_bits = 64; /* --ipv6-prefix */

/* One client is one IPv4 address, or one IPv6 prefix of v6_bits: a single host is handed a
 * whole /64 (SLAAC, privacy addresses), and could take a fresh quota with each of its 2^64
 * addresses. An IPv4 client of a dual-stack socket (::ffff:a.b.c.d) is its IPv4 address. */
static bool key_of(const struct sockaddr *sa, unsigned char key[17])
{
    memset(key, 0, 17);
    if (!sa)
        return false;
    if (sa->sa_family == AF_INET) {
        key[0] = 4;
        memcpy(key + 1, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            key[0] = 4;
            memcpy(key + 1, a->s6_addr + 12, 4);
            return true;
        }
        key[0] = 6;
        memcpy(key + 1, a->s6_addr, v6_bits / 8);
        if (v6_bits % 8)
            key[1 + v6_bits / 8] = (unsigned char)(a->s6_addr[v6_bits / 8] &
                                                   (0xff00u >> (v6_bits % 8)));
        return true;
    }
    return false;
}

void yls_peer_ipv6_prefix(unsigned bits) { v6_bits = bits > 128 ? 128 : bits; }

static peer *find(const unsigned char key[17])
{
    for (size_t i = 0; i < n_peers; i++)
        if (!memcmp(peers[i].key, key, 17))
            return &peers[i];
    return NULL;
}

bool yls_peer_admit(const struct sockaddr *sa, unsigned limit)
{
    unsigned char key[17];
    if (!limit || !key_of(sa, key))
        return true;
    const peer *p = find(key);
    return !p || p->count < limit;
}

void yls_peer_opened(const struct sockaddr *sa)
{
    unsigned char key[17];
    if (!key_of(sa, key))
        return;
    peer *p = find(key);
    if (!p) {
        if (n_peers == cap_peers) {
            size_t cap = cap_peers ? 2 * cap_peers : 64;
            peer *np = realloc(peers, cap * sizeof *np);
            if (!np)
                return; /* uncounted: admitted, never refused for it */
            peers = np;
            cap_peers = cap;
        }
        p = &peers[n_peers++];
        memcpy(p->key, key, 17);
        p->count = 0;
    }
    p->count++;
}

void yls_peer_closed(const struct sockaddr *sa)
{
    unsigned char key[17];
    if (!key_of(sa, key))
        return;
    peer *p = find(key);
    if (!p)
        return;
    if (--p->count == 0)
        *p = peers[--n_peers];
    if (n_peers == 0) {
        free(peers);
        peers = NULL;
        cap_peers = 0;
    }
}
