/*
 * veil-c-edge: a veil edge written in plain C99 around libveil.
 *
 * One non-blocking UDP socket carries QUIC; every accepted tunnel is one non-blocking TCP
 * connection to its target. One poll(2) loop drives everything:
 *
 *   - the UDP socket's datagrams go to veil_endpoint_handle_datagram;
 *   - a tunnel request is resolved (getaddrinfo, numeric or blocking: a real proxy would
 *     use an asynchronous resolver), every address is checked against the egress policy,
 *     and the first allowed one is dialled with a non-blocking connect(2); success accepts
 *     the tunnel, failure refuses it with the matching status (ECONNREFUSED -> 502
 *     connection_refused, timeout -> 504, no route -> 502 unroutable);
 *   - bytes move both ways through one fixed buffer per direction, with backpressure:
 *     the target socket is read only when its buffer is empty (the tunnel took every byte
 *     so far), the tunnel is read only when the target took every byte so far; a short
 *     veil_endpoint_tunnel_send waits for VEIL_EVENT_TUNNEL_WRITABLE, a short write(2)
 *     for POLLOUT;
 *   - how each relay ends is its veil_relay's to say: the pumps report what happened
 *     (the target's EOF or error, the tunnel's FIN, a failed tunnel call,
 *     VEIL_EVENT_TUNNEL_CLOSED, the relay's deadline) and do its actions in order
 *     (veil_endpoint_tunnel_finish, shutdown(SHUT_WR), tunnel abort, close with or
 *     without RST, discarding what the target sends while lingering);
 *   - with --listen-tcp, a TCP listener beside it (the TCP on-ramp for clients whose
 *     network blocks UDP): each accepted connection goes to veil_endpoint_accept_tcp,
 *     its reads to veil_endpoint_tcp_input, and what veil_endpoint_poll_tcp_ready and
 *     veil_endpoint_tcp_transmit give is written back (one buffer per connection, read
 *     from the engine only when the last write finished: the socket is the
 *     backpressure); the engine does TLS and HTTP/2, and its tunnels are the same
 *     tunnels; VEIL_EVENT_CONNECTION_LOST for it closes the socket;
 *   - after every wake-up: drain events and transmits, re-arm the timer.
 *
 * Usage: veil-c-edge [--listen IP:PORT] [--listen-tcp IP:PORT] [--token T]... [--allow CIDR]...
 *                    [--connect-timeout-ms N] [--request-timeout-ms N]
 *                    [--drain-timeout-ms N] [--deny-suffix SUFFIX]...
 * --deny-suffix: a hook of this host's own (veil_endpoint_set_hooks): requests for a
 * name that ends with SUFFIX are refused (403 http_request_denied) before they reach
 * on_request, and tagged requests say which hook saw them.
 * --request-timeout-ms: how long a request may wait for this host's answer before the
 * engine refuses it (504); --drain-timeout-ms: on SIGTERM, how long open tunnels may go
 * on (10000 by default).
 * Prints "veil-c-edge: fingerprint sha256:HEX", "veil-c-edge: listening on IP:PORT" and,
 * with --listen-tcp, "veil-c-edge: listening on tcp IP:PORT",
 * then serves until SIGTERM or SIGINT, when it drains and closes (veil_endpoint_shutdown).
 */
#define _POSIX_C_SOURCE 200809L
/* SO_RCVBUFFORCE and SO_SNDBUFFORCE (Linux): glibc declares them with its defaults. */
#define _DEFAULT_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "veil.h"

#define MAX_TUNNELS 256
#define RELAY_BUF (64 * 1024)
#define UDP_BUF 65536
#define MAX_CANDIDATES 16 /* resolved addresses offered to veil_endpoint_egress_for */

enum tunnel_state { FREE = 0, DIALING, OPEN };

struct tunnel {
    enum tunnel_state state;
    uint64_t id;
    int fd;
    uint64_t dial_deadline_ns;
    veil_relay *relay; /* OPEN: decides how the relay ends */
    /* target -> tunnel: bytes read from the target, not yet taken by the tunnel */
    uint8_t up[RELAY_BUF];
    size_t up_off, up_len;
    bool target_eof;     /* read 0 from the target: nothing more to read */
    bool tunnel_blocked; /* last send was short: wait for WRITABLE */
    /* tunnel -> target: bytes received from the tunnel, not yet written to the target */
    uint8_t down[RELAY_BUF];
    size_t down_off, down_len;
    bool tunnel_readable; /* READABLE seen and not drained yet */
    bool tunnel_eof;      /* FIN received from the tunnel: nothing more to receive */
};

static struct tunnel tunnels[MAX_TUNNELS];

/* ---- the TCP on-ramp: connections whose TLS and HTTP/2 the engine does ------------ */

#define MAX_ONRAMP 64

struct onramp {
    bool used;
    uint64_t id; /* the engine's connection */
    int fd;
    /* engine -> socket: bytes taken from veil_endpoint_tcp_transmit, not yet written */
    uint8_t out[RELAY_BUF];
    size_t out_off, out_len;
};

static struct onramp onramps[MAX_ONRAMP];

static int set_nonblocking(int fd);

static struct onramp *find_onramp(uint64_t id) {
    for (int i = 0; i < MAX_ONRAMP; i++)
        if (onramps[i].used && onramps[i].id == id) return &onramps[i];
    return NULL;
}

static void close_onramp(struct onramp *o) {
    close(o->fd);
    o->used = false;
    o->fd = -1;
}

/* Writes what the connection holds, then takes more from the engine while the socket
 * takes it all. A short write leaves the rest for POLLOUT. */
static void pump_onramp_out(veil_endpoint *ep, struct onramp *o, uint64_t now) {
    for (;;) {
        while (o->out_len > 0) {
            ssize_t w = write(o->fd, o->out + o->out_off, o->out_len);
            if (w < 0) {
                if (errno != EAGAIN && errno != EWOULDBLOCK)
                    veil_endpoint_tcp_closed(ep, now, o->id);
                return;
            }
            o->out_off += (size_t)w;
            o->out_len -= (size_t)w;
        }
        size_t got = 0;
        if (veil_endpoint_tcp_transmit(ep, now, o->id, o->out, sizeof o->out, &got) != VEIL_OK)
            return;
        o->out_off = 0;
        o->out_len = got;
    }
}

/* Whether the engine wants more of the connection's bytes now (an HTTP/1.1 tunnel whose
 * application is behind says no: the socket stays unread, and TCP pushes back). */
static bool onramp_wants_input(veil_endpoint *ep, const struct onramp *o) {
    bool wants = true;
    veil_endpoint_tcp_wants_input(ep, o->id, &wants);
    return wants;
}

/* Reads what arrived (EOF or an error: the socket's end) and hands it to the engine,
 * while the engine wants it. */
static void on_onramp_readable(veil_endpoint *ep, struct onramp *o, uint64_t now) {
    static uint8_t buf[RELAY_BUF];
    for (;;) {
        ssize_t got = read(o->fd, buf, sizeof buf);
        if (got > 0) {
            veil_endpoint_tcp_input(ep, now, o->id, buf, (size_t)got);
            if (!onramp_wants_input(ep, o)) return;
            continue;
        }
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        veil_endpoint_tcp_closed(ep, now, o->id);
        return;
    }
}

/* Accepts every waiting connection; the engine takes it or it is closed at once. */
static void on_accept(veil_endpoint *ep, int listener, const veil_sockaddr *local, uint64_t now) {
    for (;;) {
        veil_sockaddr peer;
        peer.len = sizeof peer.addr;
        int fd = accept(listener, (struct sockaddr *)&peer.addr, &peer.len);
        if (fd < 0) return;
        struct onramp *o = NULL;
        for (int i = 0; i < MAX_ONRAMP && !o; i++)
            if (!onramps[i].used) o = &onramps[i];
        uint64_t id = 0;
        if (!o || set_nonblocking(fd) < 0 ||
            veil_endpoint_accept_tcp(ep, now, &peer, local, &id) != VEIL_OK) {
            close(fd);
            continue;
        }
        *o = (struct onramp){.used = true, .id = id, .fd = fd};
    }
}
static volatile sig_atomic_t stopping;
static uint64_t connect_timeout_ns = 10ull * 1000 * 1000 * 1000;
static uint64_t drain_timeout_ms = 10000;

/* ---- the tunnel hook: this host's own policy, consulted by the engine -------------- */

#define MAX_DENIED 16
static const char *denied_suffixes[MAX_DENIED];
static int denied_count;

/* Refuses names ending in one of the --deny-suffix values; tags what it passes. Runs
 * inside the veil_endpoint_* call that processes the request: it must answer at once. */
static void tunnel_hook(void *user, const veil_tunnel_query *query, veil_tunnel_verdict *verdict) {
    (void)user;
    size_t host_len = strlen(query->host);
    for (int i = 0; i < denied_count; i++) {
        size_t suffix_len = strlen(denied_suffixes[i]);
        if (host_len >= suffix_len &&
            strcmp(query->host + host_len - suffix_len, denied_suffixes[i]) == 0) {
            verdict->action = VEIL_TUNNEL_REFUSE;
            verdict->refusal = VEIL_REFUSAL_DENIED;
            return;
        }
    }
    snprintf(verdict->tags, sizeof verdict->tags, "%s", "hook:c-edge");
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void on_signal(int sig) {
    (void)sig;
    stopping = 1;
}

static void die(const char *what, veil_result r) {
    fprintf(stderr, "veil-c-edge: %s: %s\n", what, veil_result_str(r));
    exit(1);
}

static int set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL, 0);
    return flags < 0 ? -1 : fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

static struct tunnel *find_tunnel(uint64_t id) {
    for (int i = 0; i < MAX_TUNNELS; i++)
        if (tunnels[i].state != FREE && tunnels[i].id == id) return &tunnels[i];
    return NULL;
}

static void release(struct tunnel *t) {
    if (t->fd >= 0) close(t->fd);
    veil_relay_free(t->relay);
    memset(t, 0, sizeof *t);
    t->fd = -1;
    t->state = FREE;
}

/* Parses "IP:PORT" or "[IPv6]:PORT" into a veil_sockaddr. */
static bool parse_addr(const char *text, veil_sockaddr *out) {
    char host[128];
    const char *colon = strrchr(text, ':');
    if (!colon || (size_t)(colon - text) >= sizeof host) return false;
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    char *h = host;
    if (h[0] == '[') {
        h++;
        h[strlen(h) - 1] = '\0';
    }
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    hints.ai_socktype = SOCK_DGRAM;
    if (getaddrinfo(h, colon + 1, &hints, &res) != 0) return false;
    memset(out, 0, sizeof *out);
    memcpy(&out->addr, res->ai_addr, res->ai_addrlen);
    out->len = res->ai_addrlen;
    freeaddrinfo(res);
    return true;
}

static void print_addr(const char *prefix, const veil_sockaddr *a) {
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (a->addr.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->addr;
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host);
        port = ntohs(sin->sin_port);
        printf("%s%s:%u\n", prefix, host, port);
    } else {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->addr;
        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof host);
        port = ntohs(sin6->sin6_port);
        printf("%s[%s]:%u\n", prefix, host, port);
    }
    fflush(stdout);
}

/* ---- tunnel requests: resolve, check egress, dial ---------------------------------- */

static void refuse(veil_endpoint *ep, uint64_t id, veil_refusal why) {
    veil_result r = veil_endpoint_refuse_tunnel(ep, id, (int)why);
    if (r < 0) fprintf(stderr, "veil-c-edge: refuse %llu: %s\n", (unsigned long long)id, veil_result_str(r));
}

static void on_request(veil_endpoint *ep, const veil_event *ev, uint64_t now) {
    struct tunnel *t = NULL;
    for (int i = 0; i < MAX_TUNNELS && !t; i++)
        if (tunnels[i].state == FREE) t = &tunnels[i];
    if (!t) {
        refuse(ep, ev->tunnel, VEIL_REFUSAL_CONNECTION_LIMIT);
        return;
    }
    if (ev->tunnel_kind != VEIL_TUNNEL_STREAM) { /* not served: the engine answered it */
        refuse(ep, ev->tunnel, VEIL_REFUSAL_INTERNAL);
        return;
    }
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)ev->port);
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_flags = AI_NUMERICSERV;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(ev->host, port, &hints, &res) != 0) {
        refuse(ep, ev->tunnel, VEIL_REFUSAL_DNS_ERROR);
        return;
    }
    /* The engine chooses among the resolved addresses (rules, egress policy, the egress
     * hook) and maybe the local address to dial from; that one is dialled, and the name
     * is never resolved again. */
    veil_sockaddr candidates[MAX_CANDIDATES];
    size_t count = 0;
    for (struct addrinfo *ai = res; ai && count < MAX_CANDIDATES; ai = ai->ai_next) {
        memset(&candidates[count], 0, sizeof candidates[count]);
        memcpy(&candidates[count].addr, ai->ai_addr, ai->ai_addrlen);
        candidates[count++].len = ai->ai_addrlen;
    }
    freeaddrinfo(res);
    veil_egress egress = {.refusal = VEIL_REFUSAL_INTERNAL};
    if (veil_endpoint_egress_for(ep, ev->tunnel, candidates, count, &egress) != VEIL_OK) {
        refuse(ep, ev->tunnel, egress.refusal);
        return;
    }
    const veil_sockaddr target = candidates[egress.index];
    int fd = socket(target.addr.ss_family, SOCK_STREAM, 0);
    if (fd < 0 || set_nonblocking(fd) < 0 ||
        (egress.from.len && bind(fd, (struct sockaddr *)&egress.from.addr, egress.from.len) < 0)) {
        if (fd >= 0) close(fd);
        refuse(ep, ev->tunnel, VEIL_REFUSAL_INTERNAL);
        return;
    }
    if (connect(fd, (struct sockaddr *)&target.addr, target.len) < 0 && errno != EINPROGRESS) {
        int err = errno;
        close(fd);
        refuse(ep, ev->tunnel, veil_refusal_of_errno(err));
        return;
    }
    memset(t, 0, sizeof *t);
    t->state = DIALING;
    t->id = ev->tunnel;
    t->fd = fd;
    t->dial_deadline_ns = now + connect_timeout_ns;
}

/* The non-blocking connect finished (POLLOUT) or timed out. */
static void on_dialed(veil_endpoint *ep, struct tunnel *t, bool timed_out) {
    int err = ETIMEDOUT;
    socklen_t len = sizeof err;
    if (!timed_out && getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    if (err != 0) {
        refuse(ep, t->id, veil_refusal_of_errno(err));
        release(t);
        return;
    }
    veil_result r = veil_endpoint_accept_tunnel(ep, t->id);
    if (r < 0) {
        fprintf(stderr, "veil-c-edge: accept: %s\n", veil_result_str(r));
        release(t);
        return;
    }
    r = veil_relay_new(ep, VEIL_RELAY_BOTH_FINISHED, &t->relay);
    if (r < 0) {
        fprintf(stderr, "veil-c-edge: relay: %s\n", veil_result_str(r));
        veil_endpoint_tunnel_abort(ep, t->id);
        release(t);
        return;
    }
    t->state = OPEN;
}

/* ---- relaying ---------------------------------------------------------------------- */

/* Does what the tunnel's relay says, in order; the last action releases the tunnel. */
static void run_relay(veil_endpoint *ep, struct tunnel *t, uint64_t now) {
    veil_relay_action action;
    while (t->state == OPEN && veil_relay_poll_action(t->relay, &action) == VEIL_OK) {
        switch (action) {
        case VEIL_RELAY_FINISH_TUNNEL: {
            veil_result r = veil_endpoint_tunnel_finish(ep, t->id);
            if (r < 0) veil_relay_tunnel_error(t->relay, now, r);
            break;
        }
        case VEIL_RELAY_SHUTDOWN_TCP_WRITE:
            if (shutdown(t->fd, SHUT_WR) < 0) veil_relay_tcp_error(t->relay, now);
            break;
        case VEIL_RELAY_DISCARD_TCP: /* the tunnel takes no more: drop what waits for it */
            t->up_off = t->up_len = 0;
            t->tunnel_blocked = false;
            break;
        case VEIL_RELAY_ABORT_TUNNEL:
            veil_endpoint_tunnel_abort(ep, t->id);
            break;
        case VEIL_RELAY_RESET_TCP: {
            struct linger rst = {.l_onoff = 1, .l_linger = 0};
            setsockopt(t->fd, SOL_SOCKET, SO_LINGER, &rst, sizeof rst);
            close(t->fd);
            t->fd = -1;
            break;
        }
        case VEIL_RELAY_CLOSE_TCP:
            close(t->fd);
            t->fd = -1;
            break;
        case VEIL_RELAY_DONE:
        default:
            release(t);
            break;
        }
    }
}

/* Moves target bytes into the tunnel. */
static void pump_up(veil_endpoint *ep, struct tunnel *t, uint64_t now) {
    while (t->up_len > 0 && !t->tunnel_blocked) {
        size_t taken = 0;
        veil_result r = veil_endpoint_tunnel_send(ep, t->id, t->up + t->up_off, t->up_len, &taken);
        if (r < 0) { /* stopped by the peer, or dead: the relay says which */
            veil_relay_tunnel_error(t->relay, now, r);
            return;
        }
        t->up_off += taken;
        t->up_len -= taken;
        if (taken == 0) t->tunnel_blocked = true; /* until VEIL_EVENT_TUNNEL_WRITABLE */
    }
    if (t->up_len == 0) t->up_off = 0;
}

/* Moves tunnel bytes to the target, reading the tunnel only once the target took every
 * byte so far. */
static void pump_down(veil_endpoint *ep, struct tunnel *t, uint64_t now) {
    for (;;) {
        while (t->down_len > 0) {
            ssize_t n = write(t->fd, t->down + t->down_off, t->down_len);
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return; /* POLLOUT */
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                veil_relay_tcp_error(t->relay, now);
                return;
            }
            t->down_off += (size_t)n;
            t->down_len -= (size_t)n;
        }
        t->down_off = 0;
        veil_relay_tcp_flushed(t->relay, now); /* after the FIN: shut the write side */
        if (t->tunnel_eof || !t->tunnel_readable) break;
        size_t got = 0;
        bool fin = false;
        veil_result r = veil_endpoint_tunnel_recv(ep, t->id, t->down, sizeof t->down, &got, &fin);
        if (r == VEIL_DONE) {
            t->tunnel_readable = false;
            break;
        }
        if (r < 0) { /* reset by the client */
            t->tunnel_readable = false;
            veil_relay_tunnel_error(t->relay, now, r);
            break;
        }
        t->down_len = got;
        if (fin) {
            t->tunnel_eof = true;
            veil_relay_tunnel_fin(t->relay, now);
        }
    }
}

/* The target is readable and the up buffer empty: read into it, then push it (or, once
 * the tunnel takes no more, discard it). */
static void on_target_readable(veil_endpoint *ep, struct tunnel *t, uint64_t now) {
    ssize_t n = read(t->fd, t->up, sizeof t->up);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    if (n < 0) { /* reset by the target */
        veil_relay_tcp_error(t->relay, now);
        return;
    }
    if (n == 0) {
        t->target_eof = true;
        veil_relay_tcp_eof(t->relay, now);
        return;
    }
    bool discards = false;
    veil_relay_discards_tcp(t->relay, &discards);
    if (discards) {
        veil_relay_tcp_discarded_len(t->relay, now, (size_t)n);
        return;
    }
    t->up_off = 0;
    t->up_len = (size_t)n;
    pump_up(ep, t, now);
}

/* ---- the engine's outputs ---------------------------------------------------------- */

static void drain_events(veil_endpoint *ep, uint64_t now) {
    veil_event ev;
    while (veil_endpoint_poll_event(ep, &ev) == VEIL_OK) {
        struct tunnel *t = find_tunnel(ev.tunnel);
        switch (ev.kind) {
        case VEIL_EVENT_TUNNEL_REQUEST:
            on_request(ep, &ev, now);
            break;
        case VEIL_EVENT_TUNNEL_READABLE:
            if (t && t->state == OPEN) {
                t->tunnel_readable = true;
                pump_down(ep, t, now);
                run_relay(ep, t, now);
            }
            break;
        case VEIL_EVENT_TUNNEL_WRITABLE:
            if (t && t->state == OPEN) {
                t->tunnel_blocked = false;
                pump_up(ep, t, now);
                run_relay(ep, t, now);
            }
            break;
        case VEIL_EVENT_TUNNEL_CLOSED:
            if (t && t->state == OPEN) { /* the relay judges the close */
                veil_relay_tunnel_closed(t->relay, now, (int)ev.close, ev.error_code);
                run_relay(ep, t, now);
            } else if (t) {
                release(t);
            }
            break;
        case VEIL_EVENT_CONNECTION_LOST: {
            fprintf(stderr, "veil-c-edge: connection %llu lost: %s\n",
                    (unsigned long long)ev.connection, ev.text);
            /* A TCP connection: everything it had to say was taken; close the socket. */
            struct onramp *o = find_onramp(ev.connection);
            if (o) {
                if (o->out_len > 0) { /* best effort: the rest of the last chunk */
                    ssize_t w = write(o->fd, o->out + o->out_off, o->out_len);
                    (void)w;
                }
                close_onramp(o);
            }
            break;
        }
        default:
            break;
        }
    }
}

static void drain_transmits(veil_endpoint *ep, int udp, uint64_t now) {
    static uint8_t out[UDP_BUF];
    veil_transmit tx;
    while (veil_endpoint_poll_transmit(ep, now, out, sizeof out, &tx) == VEIL_OK) {
        size_t seg = tx.segment_size ? tx.segment_size : tx.len;
        for (size_t off = 0; off < tx.len; off += seg) {
            size_t n = tx.len - off < seg ? tx.len - off : seg;
            /* A full socket buffer drops the datagram: QUIC recovers, as from any loss. */
            sendto(udp, out + off, n, 0, (struct sockaddr *)&tx.to.addr, tx.to.len);
        }
    }
}

/* Resizes the QUIC socket's buffers when the engine says so (veil_endpoint_socket_buffers:
 * larger while a connection is on a long path, as its flights grow, back when none is).
 * Past net.core.rmem_max only the FORCE forms work, with CAP_NET_ADMIN; without it the
 * kernel caps the size, and the edge says so once. */
static void fit_buffers(veil_endpoint *ep, int udp, size_t started) {
    static bool warned;
    size_t resize = 0;
    if (veil_endpoint_socket_buffers(ep, started, &resize) != VEIL_OK || resize == 0) return;
    int size = resize > INT_MAX ? INT_MAX : (int)resize;
    bool forced = false;
#ifdef SO_RCVBUFFORCE
    forced = setsockopt(udp, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) == 0 &&
             setsockopt(udp, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) == 0;
#endif
    if (!forced) {
        setsockopt(udp, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
        setsockopt(udp, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
        if (!warned) {
            warned = true;
            fprintf(stderr, "veil-c-edge: socket buffers asked for %d bytes, capped by "
                            "net.core.rmem_max / wmem_max (no CAP_NET_ADMIN)\n", size);
        }
    }
}

int main(int argc, char **argv) {
    const char *listen_udp = "127.0.0.1:0";
    const char *listen_tcp = NULL;
    veil_config *cfg = NULL;
    veil_result r = veil_config_new(VEIL_ROLE_EDGE, &cfg);
    if (r != VEIL_OK) die("config", r);
    /* TCP tunnels only: the engine answers CONNECT-UDP with 501 and never reports it. */
    r = veil_config_set_tunnel_kinds(cfg, 1u << VEIL_TUNNEL_STREAM);
    if (r != VEIL_OK) die("tunnel kinds", r);
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!val) {
            fprintf(stderr, "veil-c-edge: %s needs a value\n", arg);
            return 2;
        }
        if (strcmp(arg, "--listen") == 0) listen_udp = val;
        else if (strcmp(arg, "--listen-tcp") == 0) listen_tcp = val;
        else if (strcmp(arg, "--token") == 0) r = veil_config_add_token(cfg, val);
        else if (strcmp(arg, "--allow") == 0) r = veil_config_allow_egress(cfg, val);
        else if (strcmp(arg, "--connect-timeout-ms") == 0)
            connect_timeout_ns = strtoull(val, NULL, 10) * 1000000ull;
        else if (strcmp(arg, "--request-timeout-ms") == 0)
            r = veil_config_set_request_timeout(cfg, strtoull(val, NULL, 10));
        else if (strcmp(arg, "--drain-timeout-ms") == 0)
            drain_timeout_ms = strtoull(val, NULL, 10);
        else if (strcmp(arg, "--deny-suffix") == 0 && denied_count < MAX_DENIED)
            denied_suffixes[denied_count++] = val;
        else {
            fprintf(stderr, "veil-c-edge: unknown option %s\n", arg);
            return 2;
        }
        if (r != VEIL_OK) {
            fprintf(stderr, "veil-c-edge: %s %s: %s\n", arg, val, veil_config_last_error(cfg));
            return 2;
        }
        i++;
    }

    veil_sockaddr local;
    if (!parse_addr(listen_udp, &local)) {
        fprintf(stderr, "veil-c-edge: bad --listen %s\n", listen_udp);
        return 2;
    }
    int udp = socket(local.addr.ss_family, SOCK_DGRAM, 0);
    if (udp < 0 || set_nonblocking(udp) < 0 ||
        bind(udp, (struct sockaddr *)&local.addr, local.len) < 0) {
        perror("veil-c-edge: udp socket");
        return 1;
    }
    /* The kernel's buffer sizes to start with; the engine says when to grow them (a
     * connection on a path longer than a LAN) and when to go back (fit_buffers). */
    int started = 0;
    socklen_t started_len = sizeof started;
    if (getsockopt(udp, SOL_SOCKET, SO_RCVBUF, &started, &started_len) < 0) started = 0;
    local.len = sizeof local.addr;
    getsockname(udp, (struct sockaddr *)&local.addr, &local.len);

    veil_endpoint *ep = NULL;
    r = veil_endpoint_new(cfg, now_ns(), &ep);
    if (r != VEIL_OK) {
        fprintf(stderr, "veil-c-edge: endpoint: %s\n", veil_config_last_error(cfg));
        return 1;
    }
    veil_config_free(cfg);
    if (denied_count > 0) {
        r = veil_endpoint_set_hooks(ep, NULL, tunnel_hook, NULL);
        if (r != VEIL_OK) die("hooks", r);
    }

    uint8_t fp[32];
    if (veil_endpoint_certificate_fingerprint(ep, fp, sizeof fp) == VEIL_OK) {
        printf("veil-c-edge: fingerprint sha256:");
        for (int i = 0; i < 32; i++) printf("%02x", fp[i]);
        printf("\n");
    }
    print_addr("veil-c-edge: listening on ", &local);
    int tcp = -1;
    veil_sockaddr tcp_local;
    if (listen_tcp) {
        int one = 1;
        if (!parse_addr(listen_tcp, &tcp_local)) {
            fprintf(stderr, "veil-c-edge: bad --listen-tcp %s\n", listen_tcp);
            return 2;
        }
        tcp = socket(tcp_local.addr.ss_family, SOCK_STREAM, 0);
        if (tcp < 0 || setsockopt(tcp, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
            bind(tcp, (struct sockaddr *)&tcp_local.addr, tcp_local.len) < 0 ||
            listen(tcp, 128) < 0 || set_nonblocking(tcp) < 0) {
            perror("veil-c-edge: tcp listener");
            return 1;
        }
        tcp_local.len = sizeof tcp_local.addr;
        getsockname(tcp, (struct sockaddr *)&tcp_local.addr, &tcp_local.len);
        print_addr("veil-c-edge: listening on tcp ", &tcp_local);
    }
    for (int i = 0; i < MAX_ONRAMP; i++) onramps[i].fd = -1;

    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    for (int i = 0; i < MAX_TUNNELS; i++) tunnels[i].fd = -1;

    static uint8_t in[UDP_BUF];
    struct pollfd pfds[2 + MAX_TUNNELS + MAX_ONRAMP];
    struct tunnel *owner[2 + MAX_TUNNELS + MAX_ONRAMP];
    struct onramp *ramp_of[2 + MAX_TUNNELS + MAX_ONRAMP];
    bool closing = false;
    for (;;) {
        uint64_t now = now_ns();
        if (stopping && !closing) {
            /* The engine runs the whole sequence: GOAWAY, open tunnels finish (within
             * --drain-timeout-ms), CONNECTION_CLOSE with H3_NO_ERROR (2 s to go out); cut
             * tunnels come back as TUNNEL_CLOSED events. Its deadlines come out of veil_endpoint_poll_timeout. */
            closing = true;
            veil_endpoint_shutdown(ep, now, drain_timeout_ms, 0x100, 2000);
        }
        drain_events(ep, now);
        drain_transmits(ep, udp, now);
        uint64_t ready;
        while (veil_endpoint_poll_tcp_ready(ep, &ready) == VEIL_OK) {
            struct onramp *o = find_onramp(ready);
            if (o) pump_onramp_out(ep, o, now);
        }
        drain_events(ep, now); /* a connection that said everything is lost now */
        fit_buffers(ep, udp, (size_t)started);
        bool closed = false;
        if (closing && veil_endpoint_is_closed(ep, &closed) == VEIL_OK && closed) break;

        /* Wait: the UDP socket, every tunnel's target socket, the engine's deadline and
         * the earliest dial deadline. */
        uint64_t deadline = VEIL_NO_TIMEOUT;
        veil_endpoint_poll_timeout(ep, &deadline);
        nfds_t n = 0;
        pfds[n] = (struct pollfd){.fd = udp, .events = POLLIN};
        ramp_of[n] = NULL;
        owner[n++] = NULL;
        nfds_t first_tunnel = 1;
        if (tcp >= 0) {
            pfds[n] = (struct pollfd){.fd = tcp, .events = closing ? 0 : POLLIN};
            ramp_of[n] = NULL;
            owner[n++] = NULL;
            first_tunnel = 2;
        }
        for (int i = 0; i < MAX_ONRAMP; i++) {
            struct onramp *o = &onramps[i];
            if (!o->used) continue;
            short events = onramp_wants_input(ep, o) ? POLLIN : 0; /* backpressure */
            if (o->out_len) events |= POLLOUT;
            pfds[n] = (struct pollfd){.fd = o->fd, .events = events};
            ramp_of[n] = o;
            owner[n++] = NULL;
        }
        for (int i = 0; i < MAX_TUNNELS; i++) {
            struct tunnel *t = &tunnels[i];
            short events = 0;
            if (t->state == DIALING) {
                events = POLLOUT;
                if (t->dial_deadline_ns < deadline) deadline = t->dial_deadline_ns;
            } else if (t->state == OPEN) {
                bool paused = false; /* a linger past its byte bound waits without reading */
                veil_relay_tcp_reads_paused(t->relay, &paused);
                if (t->up_len == 0 && !t->target_eof && !paused) events |= POLLIN; /* backpressure */
                if (t->down_len > 0) events |= POLLOUT;
                uint64_t linger = VEIL_NO_TIMEOUT;
                if (veil_relay_poll_timeout(t->relay, &linger) == VEIL_OK && linger < deadline)
                    deadline = linger;
            }
            if (events) {
                pfds[n] = (struct pollfd){.fd = t->fd, .events = events};
                ramp_of[n] = NULL;
                owner[n++] = t;
            }
        }
        int timeout_ms = -1;
        if (deadline != VEIL_NO_TIMEOUT)
            timeout_ms = deadline <= now ? 0 : (int)((deadline - now + 999999) / 1000000);
        if (closing && (timeout_ms < 0 || timeout_ms > 100)) timeout_ms = 100;
        if (poll(pfds, n, timeout_ms) < 0 && errno != EINTR) {
            perror("veil-c-edge: poll");
            break;
        }
        now = now_ns();

        if (pfds[0].revents & POLLIN) {
            for (;;) {
                veil_sockaddr from;
                from.len = sizeof from.addr;
                ssize_t got = recvfrom(udp, in, sizeof in, 0, (struct sockaddr *)&from.addr, &from.len);
                if (got < 0) break; /* EAGAIN: drained */
                veil_endpoint_handle_datagram(ep, now, &from, &local, in, (size_t)got);
            }
        }
        if (tcp >= 0 && (pfds[1].revents & POLLIN)) on_accept(ep, tcp, &tcp_local, now);
        for (nfds_t i = first_tunnel; i < n; i++) {
            struct onramp *o = ramp_of[i];
            if (!o || !pfds[i].revents || !o->used) continue;
            if (pfds[i].revents & POLLOUT) pump_onramp_out(ep, o, now);
            if (pfds[i].revents & (POLLIN | POLLERR | POLLHUP)) on_onramp_readable(ep, o, now);
        }
        for (nfds_t i = first_tunnel; i < n; i++) {
            struct tunnel *t = owner[i];
            if (!t || !pfds[i].revents || t->state == FREE) continue;
            if (t->state == DIALING) {
                on_dialed(ep, t, false);
                continue;
            }
            if (pfds[i].revents & (POLLOUT | POLLERR | POLLHUP)) pump_down(ep, t, now);
            run_relay(ep, t, now);
            if (t->state == OPEN && t->up_len == 0 && !t->target_eof &&
                (pfds[i].revents & (POLLIN | POLLERR | POLLHUP))) {
                on_target_readable(ep, t, now);
                run_relay(ep, t, now);
            }
        }
        for (int i = 0; i < MAX_TUNNELS; i++) {
            struct tunnel *t = &tunnels[i];
            uint64_t linger = VEIL_NO_TIMEOUT;
            if (t->state == DIALING && t->dial_deadline_ns <= now) on_dialed(ep, t, true);
            if (t->state == OPEN && veil_relay_poll_timeout(t->relay, &linger) == VEIL_OK &&
                linger <= now) {
                veil_relay_handle_timeout(t->relay, now);
                run_relay(ep, t, now);
            }
        }
        veil_endpoint_handle_timeout(ep, now);
    }

    veil_stats stats;
    if (veil_endpoint_stats(ep, &stats) == VEIL_OK)
        fprintf(stderr, "veil-c-edge: %llu tunnels, %llu refused\n",
                (unsigned long long)stats.tunnels_total, (unsigned long long)stats.tunnels_refused);
    for (int i = 0; i < MAX_TUNNELS; i++)
        if (tunnels[i].state != FREE) release(&tunnels[i]);
    for (int i = 0; i < MAX_ONRAMP; i++)
        if (onramps[i].used) close_onramp(&onramps[i]);
    veil_endpoint_free(ep);
    close(udp);
    if (tcp >= 0) close(tcp);
    return 0;
}
