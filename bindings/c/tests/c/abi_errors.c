/*
 * The ABI's error paths, from C: NULL everywhere, short buffers, bad configuration,
 * unknown tunnel ids, wrong roles, and one full client <-> edge handshake in memory with
 * a refused and an accepted tunnel. tests/c_abi.rs builds it against libveil.a and runs
 * it under valgrind (leaks and memory errors fail the test).
 */
#define _POSIX_C_SOURCE 200809L
/* SO_REUSEPORT and SO_ATTACH_REUSEPORT_CBPF (Linux). */
#define _DEFAULT_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "veil.h"

static int failures;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                              \
        }                                                                            \
    } while (0)

#define CHECK_RESULT(call, expected)                                                      \
    do {                                                                                  \
        veil_result got_ = (call);                                                        \
        if (got_ != (expected)) {                                                         \
            fprintf(stderr, "%s:%d: %s = %d (%s), expected %s\n", __FILE__, __LINE__,     \
                    #call, (int)got_, veil_result_str(got_), #expected);                  \
            failures++;                                                                   \
        }                                                                                 \
    } while (0)

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static veil_sockaddr v4(const char *ip, uint16_t port) {
    veil_sockaddr a;
    memset(&a, 0, sizeof a);
    struct sockaddr_in *sin = (struct sockaddr_in *)&a.addr;
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    inet_pton(AF_INET, ip, &sin->sin_addr);
    a.len = sizeof *sin;
    return a;
}

static void result_codes(void) {
    CHECK(strcmp(veil_result_str(VEIL_OK), "ok") == 0);
    CHECK(strcmp(veil_result_str(VEIL_ERR_BUFFER_TOO_SMALL), "buffer too small") == 0);
    CHECK(strcmp(veil_result_str(-999), "unknown result code") == 0);
    CHECK(VEIL_ERR_NULL < 0 && VEIL_DONE > 0);
}

static void null_handles(void) {
    veil_config_free(NULL);
    veil_endpoint_free(NULL);
    CHECK_RESULT(veil_config_new(VEIL_ROLE_EDGE, NULL), VEIL_ERR_NULL);
    veil_config *cfg = NULL;
    CHECK_RESULT(veil_config_new(42, &cfg), VEIL_ERR_INVALID_ARGUMENT);
    CHECK(cfg == NULL);
    CHECK_RESULT(veil_config_add_token(NULL, "t"), VEIL_ERR_NULL);
    CHECK(strlen(veil_config_last_error(NULL)) > 0);
    CHECK_RESULT(veil_endpoint_new(NULL, now_ns(), NULL), VEIL_ERR_NULL);

    uint8_t buf[2048];
    veil_transmit tx;
    veil_event ev;
    uint64_t deadline;
    size_t n;
    bool fin;
    veil_sockaddr a = v4("127.0.0.1", 1);
    CHECK_RESULT(veil_endpoint_handle_datagram(NULL, 0, &a, &a, buf, 10), VEIL_ERR_NULL);
    CHECK_RESULT(veil_endpoint_handle_timeout(NULL, 0), VEIL_ERR_NULL);
    CHECK_RESULT(veil_endpoint_poll_transmit(NULL, 0, buf, sizeof buf, &tx), VEIL_ERR_NULL);
    CHECK_RESULT(veil_endpoint_poll_timeout(NULL, &deadline), VEIL_ERR_NULL);
    size_t long_paths = 7;
    CHECK_RESULT(veil_endpoint_long_paths(NULL, &long_paths), VEIL_ERR_NULL);
    CHECK_RESULT(veil_endpoint_received_flight(NULL, &long_paths), VEIL_ERR_NULL);
    CHECK_RESULT(veil_endpoint_socket_buffers(NULL, 0, &long_paths), VEIL_ERR_NULL);
    CHECK_RESULT(veil_endpoint_poll_event(NULL, &ev), VEIL_ERR_NULL);
    CHECK_RESULT(veil_endpoint_accept_tunnel(NULL, 0), VEIL_ERR_NULL);
    CHECK_RESULT(veil_endpoint_tunnel_send(NULL, 0, buf, 1, &n), VEIL_ERR_NULL);
    CHECK_RESULT(veil_endpoint_tunnel_recv(NULL, 0, buf, 1, &n, &fin), VEIL_ERR_NULL);
    CHECK_RESULT(veil_endpoint_close(NULL, 0, 0, NULL, 0), VEIL_ERR_NULL);
    CHECK_RESULT(veil_endpoint_go_away(NULL, 0), VEIL_ERR_NULL);
}

static void bad_config(void) {
    veil_config *cfg = NULL;
    CHECK_RESULT(veil_config_new(VEIL_ROLE_CLIENT, &cfg), VEIL_OK);
    /* Edge settings on a client, malformed values, NULLs. */
    CHECK_RESULT(veil_config_add_token(cfg, "t"), VEIL_ERR_WRONG_ROLE);
    CHECK(strstr(veil_config_last_error(cfg), "edge setting") != NULL);
    CHECK_RESULT(veil_config_allow_egress(cfg, "10.0.0.0/8"), VEIL_ERR_WRONG_ROLE);
    CHECK_RESULT(veil_config_require_client_certificates(cfg, "ca.pem"), VEIL_ERR_WRONG_ROLE);
    CHECK_RESULT(veil_config_set_client_certificate_files(cfg, NULL, "key.pem"), VEIL_ERR_NULL);
    CHECK_RESULT(veil_config_set_token(cfg, NULL), VEIL_ERR_NULL);
    CHECK_RESULT(veil_config_set_token(cfg, ""), VEIL_ERR_INVALID_ARGUMENT);
    CHECK_RESULT(veil_config_set_token(cfg, "\xff\xfe"), VEIL_ERR_INVALID_ARGUMENT);
    uint8_t pin[32] = {0};
    CHECK_RESULT(veil_config_verify_pin(cfg, pin, 31), VEIL_ERR_INVALID_ARGUMENT);
    CHECK_RESULT(veil_config_verify_pin(cfg, NULL, 32), VEIL_ERR_NULL);
    CHECK_RESULT(veil_config_set_congestion_control(cfg, 99), VEIL_ERR_INVALID_ARGUMENT);
    CHECK_RESULT(veil_config_set_reconnect(cfg, 500, 100), VEIL_ERR_INVALID_ARGUMENT);
    veil_sockaddr bad = v4("127.0.0.1", 4433);
    bad.len = 3; /* shorter than a sockaddr_in */
    CHECK_RESULT(veil_config_set_edge(cfg, &bad, "localhost"), VEIL_ERR_INVALID_ARGUMENT);
    bad.len = sizeof bad.addr + 1;
    CHECK_RESULT(veil_config_set_edge(cfg, &bad, "localhost"), VEIL_ERR_INVALID_ARGUMENT);
    /* Incomplete: no edge, no verification. */
    veil_endpoint *ep = NULL;
    CHECK_RESULT(veil_endpoint_new(cfg, now_ns(), &ep), VEIL_ERR_CONFIG);
    CHECK(ep == NULL);
    CHECK(strstr(veil_config_last_error(cfg), "veil_config_set_edge") != NULL);
    veil_sockaddr edge = v4("127.0.0.1", 4433);
    CHECK_RESULT(veil_config_set_edge(cfg, &edge, "localhost"), VEIL_OK);
    CHECK(strcmp(veil_config_last_error(cfg), "") == 0);
    CHECK_RESULT(veil_endpoint_new(cfg, now_ns(), &ep), VEIL_ERR_CONFIG);
    CHECK(strstr(veil_config_last_error(cfg), "verif") != NULL);
    /* A CA file that does not exist: refused by the engine when the endpoint starts. */
    CHECK_RESULT(veil_config_verify_ca_file(cfg, "/nonexistent/veil-ca.pem"), VEIL_OK);
    CHECK_RESULT(veil_endpoint_new(cfg, now_ns(), &ep), VEIL_ERR_CONFIG);
    CHECK(strstr(veil_config_last_error(cfg), "/nonexistent/veil-ca.pem") != NULL);
    /* So is a client certificate file that does not exist. */
    CHECK_RESULT(veil_config_verify_insecure(cfg), VEIL_OK);
    CHECK_RESULT(veil_config_set_client_certificate_files(cfg, "/nonexistent/veil-client.pem",
                                                           "/nonexistent/veil-client.key"),
                 VEIL_OK);
    CHECK_RESULT(veil_endpoint_new(cfg, now_ns(), &ep), VEIL_ERR_CONFIG);
    CHECK(strstr(veil_config_last_error(cfg), "/nonexistent/veil-client.pem") != NULL);
    veil_config_free(cfg);

    /* An edge with a certificate that is not PEM, and one without its key. */
    CHECK_RESULT(veil_config_new(VEIL_ROLE_EDGE, &cfg), VEIL_OK);
    CHECK_RESULT(veil_config_set_token(cfg, "t"), VEIL_ERR_WRONG_ROLE);
    CHECK_RESULT(veil_config_allow_egress(cfg, "300.0.0.0/8"), VEIL_ERR_INVALID_ARGUMENT);
    CHECK_RESULT(veil_config_set_certificate_pem(cfg, (const uint8_t *)"junk", 4, NULL, 4),
                 VEIL_ERR_NULL);
    CHECK_RESULT(veil_config_set_certificate_pem(cfg, (const uint8_t *)"junk", 4,
                                                 (const uint8_t *)"junk", 4),
                 VEIL_OK);
    CHECK_RESULT(veil_endpoint_new(cfg, now_ns(), &ep), VEIL_ERR_CONFIG);
    CHECK(ep == NULL);
    veil_config_free(cfg);
}

/* Moves every pending datagram from one endpoint to the other. */
static int shuttle(veil_endpoint *from, veil_endpoint *to, uint64_t now) {
    static uint8_t buf[65536];
    veil_transmit tx;
    int moved = 0;
    while (veil_endpoint_poll_transmit(from, now, buf, sizeof buf, &tx) == VEIL_OK) {
        size_t seg = tx.segment_size ? tx.segment_size : tx.len;
        for (size_t off = 0; off < tx.len; off += seg) {
            size_t n = tx.len - off < seg ? tx.len - off : seg;
            CHECK_RESULT(veil_endpoint_handle_datagram(to, now, &tx.from, &tx.to, buf + off, n),
                         VEIL_OK);
            moved++;
        }
    }
    return moved;
}

/* Runs both endpoints until an event of `kind` comes out of `watch`. */
static int run_until(veil_endpoint *client, veil_endpoint *edge, veil_endpoint *watch,
                     veil_event_kind kind, veil_event *out) {
    for (int round = 0; round < 200; round++) {
        uint64_t now = now_ns();
        veil_endpoint_handle_timeout(client, now);
        veil_endpoint_handle_timeout(edge, now);
        shuttle(client, edge, now);
        shuttle(edge, client, now);
        while (veil_endpoint_poll_event(watch, out) == VEIL_OK)
            if (out->kind == kind) return 1;
    }
    return 0;
}

/* The hooks: count the calls, refuse one name, send another elsewhere. */
struct hook_calls {
    int ingress, tunnel, egress, http;
    char sni[VEIL_EVENT_TEXT_LEN];
};

static int ingress_hook(void *user, const veil_ingress_query *query, uint64_t *error_code) {
    struct hook_calls *calls = user;
    calls->ingress++;
    snprintf(calls->sni, sizeof calls->sni, "%s", query->server_name);
    (void)error_code;
    return 0; /* accept */
}

static void tunnel_hook(void *user, const veil_tunnel_query *query, veil_tunnel_verdict *verdict) {
    struct hook_calls *calls = user;
    calls->tunnel++;
    if (strcmp(query->host, "blocked.example") == 0) {
        verdict->action = VEIL_TUNNEL_REFUSE;
        verdict->refusal = VEIL_REFUSAL_DENIED;
    } else if (strcmp(query->host, "old.example") == 0) {
        verdict->action = VEIL_TUNNEL_REDIRECT;
        snprintf(verdict->host, sizeof verdict->host, "%s", "example.com");
        verdict->port = 8443;
    } else if (strcmp(query->host, "ask.example") == 0) {
        verdict->action = VEIL_TUNNEL_ASK;
        snprintf(verdict->tags, sizeof verdict->tags, "%s", "c-hook");
    } else if (strcmp(query->host, "inspect.example") == 0) {
        verdict->action = VEIL_TUNNEL_INSPECT;
    } else if (strcmp(query->host, "badtag.example") == 0) {
        snprintf(verdict->tags, sizeof verdict->tags, "%s", "not a tag");
    }
}

/* Denies /admin; lets everything else through. */
static void http_hook(void *user, const veil_http_query *query, veil_http_verdict *verdict) {
    struct hook_calls *calls = user;
    calls->http++;
    if (query->target_len == 6 && memcmp(query->target, "/admin", 6) == 0) {
        verdict->action = VEIL_HTTP_DENY;
        verdict->status = 403;
    }
}

/* Dials the last permitted candidate, from 127.0.0.2. */
static void egress_hook(void *user, const veil_egress_query *query, veil_egress_verdict *verdict) {
    struct hook_calls *calls = user;
    calls->egress++;
    for (size_t i = 0; i < query->candidate_count; i++) {
        if (query->permitted[i]) {
            verdict->action = VEIL_EGRESS_DIAL;
            verdict->index = i;
            verdict->from = v4("127.0.0.2", 0);
        }
    }
}

/* An edge and a client that pins its certificate, created at `t` (nothing sent yet). */
static void pair_in_memory(uint64_t t, veil_endpoint **edge, veil_endpoint **client) {
    veil_config *cfg = NULL;
    CHECK_RESULT(veil_config_new(VEIL_ROLE_EDGE, &cfg), VEIL_OK);
    CHECK_RESULT(veil_endpoint_new(cfg, t, edge), VEIL_OK);
    veil_config_free(cfg);
    uint8_t fp[32];
    CHECK_RESULT(veil_endpoint_certificate_fingerprint(*edge, fp, sizeof fp), VEIL_OK);
    CHECK_RESULT(veil_config_new(VEIL_ROLE_CLIENT, &cfg), VEIL_OK);
    veil_sockaddr edge_addr = v4("192.0.2.1", 4433), client_addr = v4("192.0.2.2", 5555);
    CHECK_RESULT(veil_config_set_edge(cfg, &edge_addr, "localhost"), VEIL_OK);
    CHECK_RESULT(veil_config_set_local_addr(cfg, &client_addr), VEIL_OK);
    CHECK_RESULT(veil_config_verify_pin(cfg, fp, sizeof fp), VEIL_OK);
    CHECK_RESULT(veil_endpoint_new(cfg, t, client), VEIL_OK);
    veil_config_free(cfg);
}

static void tunnels_in_memory(void) {
    veil_endpoint *edge = NULL, *client = NULL;
    uint64_t t0 = now_ns();
    pair_in_memory(t0, &edge, &client);
    uint8_t fp[32];
    CHECK_RESULT(veil_endpoint_certificate_fingerprint(edge, fp, 31), VEIL_ERR_BUFFER_TOO_SMALL);
    CHECK_RESULT(veil_endpoint_certificate_fingerprint(edge, fp, sizeof fp), VEIL_OK);

    veil_role role;
    CHECK_RESULT(veil_endpoint_role(client, &role), VEIL_OK);
    CHECK(role == VEIL_ROLE_CLIENT);
    CHECK_RESULT(veil_endpoint_certificate_fingerprint(client, fp, sizeof fp), VEIL_ERR_WRONG_ROLE);
    uint64_t deadline = 0;
    CHECK_RESULT(veil_endpoint_poll_timeout(client, &deadline), VEIL_DONE);
    CHECK(deadline == VEIL_NO_TIMEOUT);
    size_t long_paths = 7;
    CHECK_RESULT(veil_endpoint_long_paths(client, NULL), VEIL_ERR_NULL);
    CHECK_RESULT(veil_endpoint_long_paths(client, &long_paths), VEIL_OK);
    CHECK(long_paths == 0);
    size_t flight = 7;
    CHECK_RESULT(veil_endpoint_received_flight(client, NULL), VEIL_ERR_NULL);
    CHECK_RESULT(veil_endpoint_received_flight(client, &flight), VEIL_OK);
    CHECK(flight == 0);
    /* No long path: the socket's buffers stay as they are. */
    size_t resize = 7;
    CHECK_RESULT(veil_endpoint_socket_buffers(client, 212992, NULL), VEIL_ERR_NULL);
    CHECK_RESULT(veil_endpoint_socket_buffers(client, 212992, &resize), VEIL_OK);
    CHECK(resize == 0);

    /* Short transmit buffer, unknown tunnels, wrong roles, bad hosts. */
    uint8_t small[100], buf[4096];
    veil_transmit tx;
    uint64_t tunnel = 0;
    size_t n = 0;
    bool fin = false;
    CHECK_RESULT(veil_endpoint_poll_transmit(client, t0, small, sizeof small, &tx),
                 VEIL_ERR_BUFFER_TOO_SMALL);
    CHECK_RESULT(veil_endpoint_poll_transmit(client, t0, buf, sizeof buf, NULL), VEIL_ERR_NULL);
    CHECK_RESULT(veil_endpoint_accept_tunnel(edge, 12345), VEIL_ERR_UNKNOWN_TUNNEL);
    CHECK_RESULT(veil_endpoint_refuse_tunnel(edge, 12345, VEIL_REFUSAL_DENIED),
                 VEIL_ERR_UNKNOWN_TUNNEL);
    CHECK_RESULT(veil_endpoint_refuse_tunnel(edge, 12345, 77), VEIL_ERR_INVALID_ARGUMENT);
    CHECK_RESULT(veil_endpoint_tunnel_send(edge, 12345, buf, 10, &n), VEIL_ERR_UNKNOWN_TUNNEL);
    CHECK_RESULT(veil_endpoint_tunnel_recv(edge, 12345, buf, sizeof buf, &n, &fin),
                 VEIL_ERR_UNKNOWN_TUNNEL);
    CHECK_RESULT(veil_endpoint_tunnel_recv(edge, 12345, buf, 0, &n, &fin),
                 VEIL_ERR_BUFFER_TOO_SMALL);
    CHECK_RESULT(veil_endpoint_tunnel_finish(edge, 12345), VEIL_ERR_UNKNOWN_TUNNEL);
    CHECK_RESULT(veil_endpoint_tunnel_abort(edge, 12345), VEIL_ERR_UNKNOWN_TUNNEL);
    CHECK_RESULT(veil_endpoint_open_tunnel(edge, t0, "example.com", 80, &tunnel),
                 VEIL_ERR_WRONG_ROLE);
    CHECK_RESULT(veil_endpoint_open_tunnel(client, t0, "not a host!", 80, &tunnel),
                 VEIL_ERR_INVALID_ARGUMENT);
    CHECK_RESULT(veil_endpoint_open_tunnel(client, t0, "example.com", 0, &tunnel),
                 VEIL_ERR_INVALID_ARGUMENT);
    CHECK_RESULT(veil_endpoint_open_tunnel(client, t0, NULL, 80, &tunnel), VEIL_ERR_NULL);
    veil_sockaddr loopback = v4("127.0.0.1", 80), public_ip = v4("93.184.216.34", 80);
    CHECK_RESULT(veil_endpoint_check_egress(edge, &loopback), VEIL_ERR_PROHIBITED);
    CHECK_RESULT(veil_endpoint_check_egress(client, &loopback), VEIL_OK);
    CHECK_RESULT(veil_endpoint_check_egress(edge, NULL), VEIL_ERR_NULL);
    CHECK(veil_refusal_of_errno(ECONNREFUSED) == VEIL_REFUSAL_CONNECTION_REFUSED);
    CHECK(veil_refusal_of_errno(ETIMEDOUT) == VEIL_REFUSAL_CONNECTION_TIMEOUT);
    CHECK(veil_refusal_of_errno(EHOSTUNREACH) == VEIL_REFUSAL_UNREACHABLE);
    CHECK(veil_refusal_of_errno(EACCES) == VEIL_REFUSAL_INTERNAL);

    /* Hooks: a refused name never reaches the host, a redirect reaches it elsewhere. */
    struct hook_calls calls = {0};
    CHECK_RESULT(veil_endpoint_set_hooks(NULL, NULL, NULL, NULL), VEIL_ERR_NULL);
    CHECK_RESULT(veil_endpoint_set_hooks(edge, ingress_hook, tunnel_hook, &calls), VEIL_OK);
    veil_event ev;
    CHECK_RESULT(veil_endpoint_open_tunnel(client, t0, "blocked.example", 443, &tunnel), VEIL_OK);
    CHECK(run_until(client, edge, client, VEIL_EVENT_TUNNEL_REFUSED, &ev));
    CHECK(ev.tunnel == tunnel && ev.status == 403 && strstr(ev.text, "http_request_denied"));
    CHECK_RESULT(veil_endpoint_open_tunnel(client, t0, "old.example", 443, &tunnel), VEIL_OK);
    CHECK(run_until(client, edge, edge, VEIL_EVENT_TUNNEL_REQUEST, &ev));
    CHECK(strcmp(ev.host, "example.com") == 0 && ev.port == 8443);
    CHECK_RESULT(veil_endpoint_refuse_tunnel(edge, ev.tunnel, VEIL_REFUSAL_DENIED), VEIL_OK);
    CHECK(run_until(client, edge, client, VEIL_EVENT_TUNNEL_REFUSED, &ev));
    CHECK(calls.ingress == 1 && strcmp(calls.sni, "localhost") == 0);
    CHECK(calls.tunnel == 2);

    /* A tags field the engine cannot read refuses (500). */
    CHECK_RESULT(veil_endpoint_open_tunnel(client, t0, "badtag.example", 443, &tunnel), VEIL_OK);
    CHECK(run_until(client, edge, client, VEIL_EVENT_TUNNEL_REFUSED, &ev));
    CHECK(ev.status == 500);

    /* Asking the host: a decision event, answered later; then the request, with tags. */
    CHECK_RESULT(veil_endpoint_open_tunnel(client, t0, "ask.example", 443, &tunnel), VEIL_OK);
    CHECK(run_until(client, edge, edge, VEIL_EVENT_TUNNEL_DECISION, &ev));
    CHECK(strcmp(ev.host, "ask.example") == 0 && ev.port == 443);
    uint64_t asked = ev.tunnel;
    veil_tunnel_verdict answer;
    memset(&answer, 0, sizeof answer);
    answer.action = VEIL_TUNNEL_ASK;
    CHECK_RESULT(veil_endpoint_decide_tunnel(edge, asked, &answer), VEIL_ERR_INVALID_STATE);
    answer.action = VEIL_TUNNEL_REFUSE;
    answer.refusal = 99;
    CHECK_RESULT(veil_endpoint_decide_tunnel(edge, asked, &answer), VEIL_ERR_INVALID_ARGUMENT);
    answer.action = VEIL_TUNNEL_PASS;
    snprintf(answer.tags, sizeof answer.tags, "%s", "host-said");
    CHECK_RESULT(veil_endpoint_decide_tunnel(edge, asked, NULL), VEIL_ERR_NULL);
    CHECK_RESULT(veil_endpoint_decide_tunnel(edge, asked, &answer), VEIL_OK);
    CHECK_RESULT(veil_endpoint_decide_tunnel(edge, asked, &answer), VEIL_ERR_INVALID_STATE);
    CHECK_RESULT(veil_endpoint_decide_tunnel(edge, 4242, &answer), VEIL_ERR_UNKNOWN_TUNNEL);
    CHECK(run_until(client, edge, edge, VEIL_EVENT_TUNNEL_REQUEST, &ev));
    CHECK(ev.tunnel == asked);
    char tags[64];
    CHECK_RESULT(veil_endpoint_tunnel_tags(edge, asked, tags, sizeof tags), VEIL_OK);
    CHECK(strcmp(tags, "c-hook,host-said") == 0);
    CHECK_RESULT(veil_endpoint_tunnel_tags(edge, asked, tags, 5), VEIL_ERR_BUFFER_TOO_SMALL);
    CHECK_RESULT(veil_endpoint_decide_ingress(edge, 4242, VEIL_INGRESS_ACCEPT, 0),
                 VEIL_ERR_UNKNOWN_TUNNEL);
    CHECK_RESULT(veil_endpoint_decide_ingress(edge, ev.connection, 7, 0), VEIL_ERR_INVALID_ARGUMENT);
    CHECK_RESULT(veil_endpoint_decide_ingress(edge, ev.connection, VEIL_INGRESS_ACCEPT, 0),
                 VEIL_ERR_INVALID_STATE);

    /* Egress: the default (first permitted), then the hook's choice and source address. */
    veil_sockaddr three[3] = {loopback, public_ip, v4("9.9.9.9", 443)};
    veil_egress egress;
    CHECK_RESULT(veil_endpoint_egress_for(edge, asked, three, 3, &egress), VEIL_OK);
    CHECK(egress.index == 1 && egress.from.len == 0);
    CHECK_RESULT(veil_endpoint_egress_for(edge, asked, three, 1, &egress), VEIL_ERR_PROHIBITED);
    CHECK(egress.refusal == VEIL_REFUSAL_PROHIBITED);
    CHECK_RESULT(veil_endpoint_egress_for(edge, asked, NULL, 0, &egress), VEIL_ERR_PROHIBITED);
    CHECK(egress.refusal == VEIL_REFUSAL_DNS_ERROR);
    CHECK_RESULT(veil_endpoint_egress_for(edge, asked, three, 3, NULL), VEIL_ERR_NULL);
    CHECK_RESULT(veil_endpoint_set_egress_hook(edge, egress_hook, &calls), VEIL_OK);
    CHECK_RESULT(veil_endpoint_egress_for(edge, asked, three, 3, &egress), VEIL_OK);
    CHECK(egress.index == 2 && egress.from.len == sizeof(struct sockaddr_in));
    CHECK(calls.egress == 1);
    CHECK_RESULT(veil_endpoint_set_egress_hook(edge, NULL, NULL), VEIL_OK);
    CHECK_RESULT(veil_endpoint_refuse_tunnel(edge, asked, VEIL_REFUSAL_DENIED), VEIL_OK);
    CHECK(run_until(client, edge, client, VEIL_EVENT_TUNNEL_REFUSED, &ev));
    CHECK(calls.tunnel == 4);

    /* An inspected tunnel: the HTTP hook denies the request, the edge's host reads the end
     * of the client's direction, and the client gets the 403 after the host's FIN. */
    CHECK_RESULT(veil_endpoint_set_http_hook(edge, http_hook, &calls), VEIL_OK);
    CHECK_RESULT(veil_endpoint_open_tunnel(client, t0, "inspect.example", 80, &tunnel), VEIL_OK);
    CHECK(run_until(client, edge, edge, VEIL_EVENT_TUNNEL_REQUEST, &ev));
    uint64_t inspected = ev.tunnel;
    CHECK_RESULT(veil_endpoint_accept_tunnel(edge, inspected), VEIL_OK);
    CHECK(run_until(client, edge, client, VEIL_EVENT_TUNNEL_OPENED, &ev));
    const char *admin = "GET /admin HTTP/1.1\r\nHost: inspect.example\r\n\r\n";
    CHECK_RESULT(veil_endpoint_tunnel_send(client, tunnel, (const uint8_t *)admin, strlen(admin), &n),
                 VEIL_OK);
    CHECK(run_until(client, edge, edge, VEIL_EVENT_TUNNEL_READABLE, &ev));
    CHECK_RESULT(veil_endpoint_tunnel_recv(edge, inspected, buf, sizeof buf, &n, &fin), VEIL_OK);
    CHECK(n == 0 && fin && calls.http == 1);
    CHECK_RESULT(veil_endpoint_tunnel_finish(edge, inspected), VEIL_OK);
    CHECK(run_until(client, edge, client, VEIL_EVENT_TUNNEL_READABLE, &ev));
    CHECK_RESULT(veil_endpoint_tunnel_recv(client, tunnel, buf, sizeof buf, &n, &fin), VEIL_OK);
    CHECK(n > 12 && memcmp(buf, "HTTP/1.1 403", 12) == 0);
    /* The edge stopped reading the client's direction: the client's tunnel is closing. */
    veil_result aborted = veil_endpoint_tunnel_abort(client, tunnel);
    CHECK(aborted == VEIL_OK || aborted == VEIL_ERR_UNKNOWN_TUNNEL);
    CHECK_RESULT(veil_endpoint_set_http_hook(edge, NULL, NULL), VEIL_OK);

    /* A tunnel the edge refuses: the client learns the status. */
    CHECK_RESULT(veil_endpoint_open_tunnel(client, t0, "example.com", 443, &tunnel), VEIL_OK);
    CHECK(run_until(client, edge, edge, VEIL_EVENT_TUNNEL_REQUEST, &ev));
    CHECK(strcmp(ev.host, "example.com") == 0 && ev.port == 443);
    CHECK(ev.tunnel_kind == VEIL_TUNNEL_STREAM);
    uint64_t request = ev.tunnel;
    CHECK_RESULT(veil_endpoint_tunnel_send(edge, request, buf, 10, &n), VEIL_ERR_INVALID_STATE);
    CHECK_RESULT(veil_endpoint_refuse_tunnel(edge, request, VEIL_REFUSAL_CONNECTION_REFUSED), VEIL_OK);
    CHECK_RESULT(veil_endpoint_refuse_tunnel(edge, request, VEIL_REFUSAL_CONNECTION_REFUSED),
                 VEIL_ERR_UNKNOWN_TUNNEL);
    CHECK(run_until(client, edge, client, VEIL_EVENT_TUNNEL_REFUSED, &ev));
    CHECK(ev.tunnel == tunnel && ev.refused == VEIL_REFUSED_STATUS && ev.status == 502);
    CHECK(strstr(ev.text, "connection_refused") != NULL);

    /* A tunnel the edge accepts: bytes both ways, then FIN both ways. */
    CHECK_RESULT(veil_endpoint_open_tunnel(client, now_ns(), "93.184.216.34", 80, &tunnel), VEIL_OK);
    CHECK(run_until(client, edge, edge, VEIL_EVENT_TUNNEL_REQUEST, &ev));
    request = ev.tunnel;
    CHECK_RESULT(veil_endpoint_accept_tunnel(edge, request), VEIL_OK);
    CHECK_RESULT(veil_endpoint_accept_tunnel(edge, request), VEIL_ERR_INVALID_STATE);
    CHECK(run_until(client, edge, client, VEIL_EVENT_TUNNEL_OPENED, &ev));
    /* Datagram calls on a stream tunnel. */
    size_t max = 0;
    veil_tunnel_kind kind = VEIL_TUNNEL_UDP;
    CHECK_RESULT(veil_endpoint_tunnel_send_datagram(client, tunnel, buf, 1, &fin),
                 VEIL_ERR_NOT_UDP);
    CHECK_RESULT(veil_endpoint_tunnel_max_datagram_payload(client, tunnel, &max), VEIL_ERR_NOT_UDP);
    CHECK_RESULT(veil_endpoint_tunnel_kind(client, tunnel, &kind), VEIL_OK);
    CHECK(kind == VEIL_TUNNEL_STREAM);

    CHECK_RESULT(veil_endpoint_tunnel_send(client, tunnel, (const uint8_t *)"ping", 4, &n), VEIL_OK);
    CHECK(n == 4);
    CHECK_RESULT(veil_endpoint_tunnel_send(client, tunnel, NULL, 4, &n), VEIL_ERR_NULL);
    CHECK_RESULT(veil_endpoint_tunnel_finish(client, tunnel), VEIL_OK);
    CHECK(run_until(client, edge, edge, VEIL_EVENT_TUNNEL_READABLE, &ev));
    CHECK_RESULT(veil_endpoint_tunnel_recv(edge, request, buf, sizeof buf, &n, &fin), VEIL_OK);
    CHECK(n == 4 && memcmp(buf, "ping", 4) == 0 && fin);
    CHECK_RESULT(veil_endpoint_tunnel_send(edge, request, (const uint8_t *)"pong", 4, &n), VEIL_OK);
    CHECK_RESULT(veil_endpoint_tunnel_finish(edge, request), VEIL_OK);
    CHECK(run_until(client, edge, client, VEIL_EVENT_TUNNEL_READABLE, &ev));
    CHECK_RESULT(veil_endpoint_tunnel_recv(client, tunnel, buf, sizeof buf, &n, &fin), VEIL_OK);
    CHECK(n == 4 && memcmp(buf, "pong", 4) == 0);

    /* A UDP tunnel (CONNECT-UDP): a datagram each way, a short receive buffer. */
    uint64_t udp = 0;
    CHECK_RESULT(veil_endpoint_open_udp_tunnel(edge, now_ns(), "9.9.9.9", 53, &udp),
                 VEIL_ERR_WRONG_ROLE);
    CHECK_RESULT(veil_endpoint_open_udp_tunnel(client, now_ns(), "9.9.9.9", 53, &udp), VEIL_OK);
    CHECK_RESULT(veil_endpoint_tunnel_send_datagram(client, udp, buf, 1, &fin),
                 VEIL_ERR_INVALID_STATE);
    CHECK(run_until(client, edge, edge, VEIL_EVENT_TUNNEL_REQUEST, &ev));
    CHECK(ev.tunnel_kind == VEIL_TUNNEL_UDP && ev.port == 53);
    CHECK(strcmp(ev.host, "9.9.9.9") == 0);
    uint64_t udp_edge = ev.tunnel;
    CHECK_RESULT(veil_endpoint_accept_tunnel(edge, udp_edge), VEIL_OK);
    CHECK(run_until(client, edge, client, VEIL_EVENT_TUNNEL_OPENED, &ev));
    CHECK_RESULT(veil_endpoint_tunnel_max_datagram_payload(client, udp, &max), VEIL_OK);
    CHECK(max > 1000 && max <= 65527);
    CHECK_RESULT(veil_endpoint_tunnel_send(client, udp, buf, 1, &n), VEIL_ERR_NOT_STREAM);
    bool queued = false;
    CHECK_RESULT(veil_endpoint_tunnel_send_datagram(client, udp, (const uint8_t *)"query", 5, &queued),
                 VEIL_OK);
    CHECK(queued);
    CHECK(run_until(client, edge, edge, VEIL_EVENT_TUNNEL_DATAGRAMS, &ev));
    CHECK(ev.tunnel == udp_edge);
    CHECK_RESULT(veil_endpoint_tunnel_recv_datagram(edge, udp_edge, small, 2, &n),
                 VEIL_ERR_BUFFER_TOO_SMALL);
    CHECK(n == 5); /* the length needed; the datagram stays queued */
    CHECK_RESULT(veil_endpoint_tunnel_recv_datagram(edge, udp_edge, small, sizeof small, &n), VEIL_OK);
    CHECK(n == 5 && memcmp(small, "query", 5) == 0);
    CHECK_RESULT(veil_endpoint_tunnel_recv_datagram(edge, udp_edge, small, sizeof small, &n), VEIL_DONE);
    CHECK_RESULT(veil_endpoint_tunnel_send_datagram(edge, udp_edge, (const uint8_t *)"answer", 6, &queued),
                 VEIL_OK);
    CHECK(run_until(client, edge, client, VEIL_EVENT_TUNNEL_DATAGRAMS, &ev));
    CHECK_RESULT(veil_endpoint_tunnel_recv_datagram(client, udp, small, sizeof small, &n), VEIL_OK);
    CHECK(n == 6 && memcmp(small, "answer", 6) == 0);
    CHECK_RESULT(veil_endpoint_tunnel_recv_datagram(client, udp, NULL, 10, &n), VEIL_ERR_NULL);
    CHECK_RESULT(veil_endpoint_tunnel_recv_datagram(client, 999, small, sizeof small, &n),
                 VEIL_ERR_UNKNOWN_TUNNEL);

    veil_stats stats;
    CHECK_RESULT(veil_endpoint_stats(edge, &stats), VEIL_OK);
    /* Six reached the host (the redirected, the asked-about and the inspected among them);
     * five were refused: twice by the tunnel hook, three times by the host. */
    CHECK(stats.tunnels_total == 6 && stats.tunnels_refused == 5 && stats.connections == 1);
    CHECK(stats.udp_datagrams_received == 1 && stats.udp_datagrams_sent == 1);
    CHECK_RESULT(veil_endpoint_stats(edge, NULL), VEIL_ERR_NULL);
    /* The same counters as Prometheus text; too short a buffer says how long it is. */
    static char metrics[16384];
    size_t metrics_len = 0;
    CHECK_RESULT(veil_endpoint_metrics_text(edge, metrics, 8, &metrics_len),
                 VEIL_ERR_BUFFER_TOO_SMALL);
    CHECK(metrics_len > 8);
    CHECK_RESULT(veil_endpoint_metrics_text(edge, metrics, sizeof metrics, &metrics_len), VEIL_OK);
    CHECK(strlen(metrics) == metrics_len);
    CHECK(strstr(metrics, "veil_tunnels_opened_total 6\n") != NULL);
    CHECK(strstr(metrics, "# EOF") != NULL);
    CHECK_RESULT(veil_endpoint_metrics_text(edge, NULL, 10, &metrics_len), VEIL_ERR_NULL);

    /* Graceful close of both. */
    uint64_t now = now_ns();
    /* GOAWAY first, as a draining edge does; a client has nothing to drain. */
    CHECK_RESULT(veil_endpoint_go_away(edge, now), VEIL_OK);
    CHECK_RESULT(veil_endpoint_go_away(client, now), VEIL_OK);
    CHECK_RESULT(veil_endpoint_close(client, now, 0, (const uint8_t *)"done", 4), VEIL_OK);
    CHECK_RESULT(veil_endpoint_close(edge, now, 0, NULL, 0), VEIL_OK);
    CHECK_RESULT(veil_endpoint_open_tunnel(client, now, "example.com", 80, &tunnel),
                 VEIL_ERR_CLOSING);
    /* Both drain (closing and draining periods of a few PTOs, on quiche's own clock; slow
     * under valgrind) and forget the connection. */
    bool closed = false, edge_closed = false;
    uint64_t give_up = now_ns() + 60ull * 1000 * 1000 * 1000;
    while (!(closed && edge_closed) && now_ns() < give_up) {
        now = now_ns();
        shuttle(client, edge, now);
        shuttle(edge, client, now);
        veil_endpoint_handle_timeout(client, now);
        veil_endpoint_handle_timeout(edge, now);
        while (veil_endpoint_poll_event(client, &ev) == VEIL_OK) {}
        while (veil_endpoint_poll_event(edge, &ev) == VEIL_OK) {}
        CHECK_RESULT(veil_endpoint_is_closed(client, &closed), VEIL_OK);
        CHECK_RESULT(veil_endpoint_is_closed(edge, &edge_closed), VEIL_OK);
        struct timespec pause = {0, 20 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    CHECK(closed && edge_closed);
    veil_endpoint_free(client);
    veil_endpoint_free(edge);
}

/* A relay's end on the caller's clock: NULLs and bad arguments are codes, a stop after
 * the FIN lingers until the deadline, and the relay frees cleanly (also mid-way). */
static void relays(void) {
    veil_relay *relay = NULL;
    veil_relay_action action;
    veil_relay_outcome outcome;
    uint64_t deadline = 0;
    bool discards = false;
    CHECK_RESULT(veil_relay_new(NULL, VEIL_RELAY_BOTH_FINISHED, &relay), VEIL_ERR_NULL);
    CHECK_RESULT(veil_relay_tcp_eof(NULL, 0), VEIL_ERR_NULL);
    CHECK_RESULT(veil_relay_poll_action(NULL, &action), VEIL_ERR_NULL);
    CHECK_RESULT(veil_relay_poll_timeout(NULL, &deadline), VEIL_ERR_NULL);
    CHECK_RESULT(veil_relay_ended(NULL, &outcome), VEIL_ERR_NULL);
    veil_relay_free(NULL);

    veil_config *cfg = NULL;
    veil_endpoint *ep = NULL;
    CHECK_RESULT(veil_config_new(VEIL_ROLE_EDGE, &cfg), VEIL_OK);
    CHECK_RESULT(veil_endpoint_new(cfg, now_ns(), &ep), VEIL_OK);
    veil_config_free(cfg);
    CHECK_RESULT(veil_relay_new(ep, 7, &relay), VEIL_ERR_INVALID_ARGUMENT);
    CHECK_RESULT(veil_relay_new(ep, VEIL_RELAY_BOTH_FINISHED, NULL), VEIL_ERR_NULL);

    /* Freed with actions still queued. */
    CHECK_RESULT(veil_relay_new(ep, VEIL_RELAY_AFTER_PEER_FIN, &relay), VEIL_OK);
    CHECK_RESULT(veil_relay_tcp_eof(relay, now_ns()), VEIL_OK);
    veil_relay_free(relay);

    uint64_t now = now_ns();
    CHECK_RESULT(veil_relay_new(ep, VEIL_RELAY_BOTH_FINISHED, &relay), VEIL_OK);
    CHECK_RESULT(veil_relay_tunnel_error(relay, now, VEIL_OK), VEIL_ERR_INVALID_ARGUMENT);
    CHECK_RESULT(veil_relay_tunnel_closed(relay, now, VEIL_CLOSE_NONE, 0),
                 VEIL_ERR_INVALID_ARGUMENT);
    CHECK_RESULT(veil_relay_ended(relay, &outcome), VEIL_DONE);
    CHECK_RESULT(veil_relay_tunnel_fin(relay, now), VEIL_OK);
    CHECK_RESULT(veil_relay_tunnel_closed(relay, now, VEIL_CLOSE_RESET, 0x10f), VEIL_OK);
    CHECK_RESULT(veil_relay_discards_tcp(relay, &discards), VEIL_OK);
    CHECK(discards);
    CHECK_RESULT(veil_relay_tcp_flushed(relay, now), VEIL_OK);
    CHECK_RESULT(veil_relay_poll_action(relay, &action), VEIL_OK);
    CHECK(action == VEIL_RELAY_DISCARD_TCP);
    CHECK_RESULT(veil_relay_poll_action(relay, &action), VEIL_OK);
    CHECK(action == VEIL_RELAY_SHUTDOWN_TCP_WRITE);
    CHECK_RESULT(veil_relay_poll_action(relay, &action), VEIL_DONE);
    CHECK_RESULT(veil_relay_poll_timeout(relay, &deadline), VEIL_OK);
    CHECK(deadline == now + 5000000000ull); /* 5 s without a byte */
    CHECK_RESULT(veil_relay_handle_timeout(relay, deadline), VEIL_OK);
    CHECK_RESULT(veil_relay_poll_action(relay, &action), VEIL_OK);
    CHECK(action == VEIL_RELAY_CLOSE_TCP);
    CHECK_RESULT(veil_relay_poll_action(relay, &action), VEIL_OK);
    CHECK(action == VEIL_RELAY_DONE);
    CHECK_RESULT(veil_relay_ended(relay, &outcome), VEIL_OK);
    CHECK(outcome == VEIL_RELAY_OUTCOME_PEER_STOPPED);
    veil_relay_free(relay);
    veil_endpoint_free(ep);
}

/* Lanes from C: a client that runs two endpoints asks which one a new tunnel goes to;
 * the lane that moves a download is avoided, bad arguments are codes. */
static void lanes(void) {
    veil_lanes *lanes = NULL;
    size_t lane = 99;
    uint64_t moved[2] = {0, 0};
    CHECK_RESULT(veil_lanes_new(0, now_ns(), &lanes), VEIL_ERR_INVALID_ARGUMENT);
    CHECK_RESULT(veil_lanes_new(VEIL_LANES_MAX + 1, now_ns(), &lanes), VEIL_ERR_INVALID_ARGUMENT);
    CHECK_RESULT(veil_lanes_new(2, now_ns(), NULL), VEIL_ERR_NULL);
    CHECK_RESULT(veil_lanes_pick(NULL, now_ns(), moved, 2, &lane), VEIL_ERR_NULL);
    veil_lanes_free(NULL);

    uint64_t now = now_ns();
    CHECK_RESULT(veil_lanes_new(2, now, &lanes), VEIL_OK);
    CHECK_RESULT(veil_lanes_pick(lanes, now, moved, 3, &lane), VEIL_ERR_INVALID_ARGUMENT);
    CHECK_RESULT(veil_lanes_pick(lanes, now, NULL, 2, &lane), VEIL_ERR_NULL);
    CHECK_RESULT(veil_lanes_pick(lanes, now, moved, 2, NULL), VEIL_ERR_NULL);
    /* Quiet lanes take turns. */
    CHECK_RESULT(veil_lanes_pick(lanes, now, moved, 2, &lane), VEIL_OK);
    CHECK(lane == 0);
    CHECK_RESULT(veil_lanes_pick(lanes, now, moved, 2, &lane), VEIL_OK);
    CHECK(lane == 1);
    /* Lane 1 starts a download (40 MB in 10 ms): new tunnels go to lane 0. */
    for (int step = 1; step <= 3; step++) {
        moved[1] += 40000000;
        now += 10000000;
        CHECK_RESULT(veil_lanes_pick(lanes, now, moved, 2, &lane), VEIL_OK);
        CHECK(lane == 0);
    }
    veil_lanes_free(lanes);

    /* Told the open tunnels: lane 0's 930 KB of small exchanges have ended, lane 1's
     * download has just begun (20 KB): the next small tunnel still keeps off lane 1. */
    uint64_t tunnels[2] = {0, 0};
    now = now_ns();
    CHECK_RESULT(veil_lanes_new(2, now, &lanes), VEIL_OK);
    CHECK_RESULT(veil_lanes_pick_counting(lanes, now, moved, NULL, 2, &lane), VEIL_ERR_NULL);
    CHECK_RESULT(veil_lanes_pick_counting(lanes, now, moved, tunnels, 3, &lane),
                 VEIL_ERR_INVALID_ARGUMENT);
    moved[0] = 0;
    moved[1] = 0;
    CHECK_RESULT(veil_lanes_pick_counting(lanes, now, moved, tunnels, 2, &lane), VEIL_OK);
    CHECK(lane == 0);
    moved[0] = 930000;
    now += 700000000;
    CHECK_RESULT(veil_lanes_pick_counting(lanes, now, moved, tunnels, 2, &lane), VEIL_OK);
    CHECK(lane == 1);
    moved[1] = 20000;
    tunnels[1] = 1;
    now += 3000000;
    CHECK_RESULT(veil_lanes_pick_counting(lanes, now, moved, tunnels, 2, &lane), VEIL_OK);
    CHECK(lane == 0);
    veil_lanes_free(lanes);
}

/* Drivers from C: several endpoints on one port. The engine's steering program comes out
 * whole (its size asked first), the kernel accepts it on a SO_REUSEPORT group, and an
 * endpoint is numbered among the others; bad arguments are codes. */
static void drivers(void) {
    size_t len = 0;
    CHECK_RESULT(veil_driver_steering(2, NULL, 0, NULL), VEIL_ERR_NULL);
    CHECK_RESULT(veil_driver_steering(0, NULL, 0, &len), VEIL_ERR_INVALID_ARGUMENT);
    CHECK_RESULT(veil_driver_steering(2, NULL, 0, &len), VEIL_ERR_BUFFER_TOO_SMALL);
    CHECK(len > 0);
    veil_sock_filter *program = calloc(len, sizeof *program);
    CHECK(program != NULL);
    CHECK_RESULT(veil_driver_steering(2, program, len - 1, &len), VEIL_ERR_BUFFER_TOO_SMALL);
    CHECK_RESULT(veil_driver_steering(2, program, len, &len), VEIL_OK);

    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t addr_len = sizeof addr;
    int one = 1;
    int sockets[2];
    for (int i = 0; i < 2; i++) {
        sockets[i] = socket(AF_INET, SOCK_DGRAM, 0);
        CHECK(sockets[i] >= 0);
        CHECK(setsockopt(sockets[i], SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) == 0);
        CHECK(bind(sockets[i], (struct sockaddr *)&addr, sizeof addr) == 0);
        /* The second socket joins the first one's port. */
        CHECK(getsockname(sockets[i], (struct sockaddr *)&addr, &addr_len) == 0);
    }
    struct sock_fprog prog;
    memset(&prog, 0, sizeof prog); /* its padding goes to the kernel too */
    prog.len = (unsigned short)len;
    prog.filter = (struct sock_filter *)program;
    CHECK(sizeof(veil_sock_filter) == sizeof(struct sock_filter));
    if (setsockopt(sockets[0], SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof prog) != 0) {
        fprintf(stderr, "SO_ATTACH_REUSEPORT_CBPF: %s\n", strerror(errno));
        failures++;
    }
    close(sockets[0]);
    close(sockets[1]);
    free(program);

    veil_config *config = NULL;
    CHECK_RESULT(veil_config_new(VEIL_ROLE_EDGE, &config), VEIL_OK);
    CHECK_RESULT(veil_config_set_endpoint_number(NULL, 0, 2), VEIL_ERR_NULL);
    CHECK_RESULT(veil_config_set_endpoint_number(config, 2, 2), VEIL_ERR_INVALID_ARGUMENT);
    CHECK_RESULT(veil_config_set_endpoint_number(config, 1, 2), VEIL_OK);
    CHECK_RESULT(veil_config_set_server_id(NULL, 7, 3), VEIL_ERR_NULL);
    CHECK_RESULT(veil_config_set_server_id(config, 7, 3), VEIL_OK);
    veil_config_free(config);
}

/* Across a path with 20 ms round trips (on the caller's clock), the engine counts the
 * connection long and says to grow the socket's buffers to 1 MiB, once; when the
 * connection is gone, back to what they were (half what the kernel reported). */
static void long_path_buffers(void) {
    veil_endpoint *edge = NULL, *client = NULL;
    uint64_t t = now_ns();
    const uint64_t hop = 10ull * 1000 * 1000;
    pair_in_memory(t, &edge, &client);

    size_t resize = 7, long_paths = 7;
    CHECK_RESULT(veil_endpoint_socket_buffers(client, 212992, &resize), VEIL_OK);
    CHECK(resize == 0);
    uint64_t tunnel = 0;
    veil_event ev;
    CHECK_RESULT(veil_endpoint_open_tunnel(client, t, "example.com", 80, &tunnel), VEIL_OK);
    bool requested = false;
    uint64_t asked = 0;
    for (int round = 0; round < 50 && !requested; round++) {
        t += hop;
        veil_endpoint_handle_timeout(client, t);
        shuttle(client, edge, t);
        t += hop;
        veil_endpoint_handle_timeout(edge, t);
        shuttle(edge, client, t);
        while (veil_endpoint_poll_event(edge, &ev) == VEIL_OK)
            if (ev.kind == VEIL_EVENT_TUNNEL_REQUEST) {
                requested = true;
                asked = ev.tunnel;
            }
        while (veil_endpoint_poll_event(client, &ev) == VEIL_OK) {}
    }
    CHECK(requested);
    CHECK_RESULT(veil_endpoint_refuse_tunnel(edge, asked, VEIL_REFUSAL_DENIED), VEIL_OK);
    CHECK_RESULT(veil_endpoint_long_paths(client, &long_paths), VEIL_OK);
    CHECK(long_paths == 1);
    CHECK_RESULT(veil_endpoint_socket_buffers(client, 212992, &resize), VEIL_OK);
    CHECK(resize == 1024 * 1024);
    CHECK_RESULT(veil_endpoint_socket_buffers(client, 212992, &resize), VEIL_OK);
    CHECK(resize == 0);

    /* Closed on both sides: back. quiche keeps its closing periods on its own clock, so
     * the caller's runs on at least as fast as the real one meanwhile. */
    CHECK_RESULT(veil_endpoint_go_away(edge, t), VEIL_OK);
    CHECK_RESULT(veil_endpoint_go_away(client, t), VEIL_OK);
    CHECK_RESULT(veil_endpoint_close(client, t, 0, NULL, 0), VEIL_OK);
    CHECK_RESULT(veil_endpoint_close(edge, t, 0, NULL, 0), VEIL_OK);
    bool closed = false;
    uint64_t give_up = now_ns() + 60ull * 1000 * 1000 * 1000;
    while (!closed && now_ns() < give_up) {
        struct timespec pause = {0, 20 * 1000 * 1000};
        nanosleep(&pause, NULL);
        t += 2 * hop;
        shuttle(client, edge, t);
        shuttle(edge, client, t);
        veil_endpoint_handle_timeout(client, t);
        veil_endpoint_handle_timeout(edge, t);
        while (veil_endpoint_poll_event(client, &ev) == VEIL_OK) {}
        while (veil_endpoint_poll_event(edge, &ev) == VEIL_OK) {}
        CHECK_RESULT(veil_endpoint_is_closed(client, &closed), VEIL_OK);
    }
    CHECK(closed);
    CHECK_RESULT(veil_endpoint_long_paths(client, &long_paths), VEIL_OK);
    CHECK(long_paths == 0);
    CHECK_RESULT(veil_endpoint_socket_buffers(client, 212992, &resize), VEIL_OK);
    CHECK(resize == 212992 / 2);
    veil_endpoint_free(client);
    veil_endpoint_free(edge);
}

int main(void) {
    result_codes();
    drivers();
    null_handles();
    bad_config();
    relays();
    lanes();
    tunnels_in_memory();
    long_path_buffers();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("abi_errors: all checks passed\n");
    return 0;
}
