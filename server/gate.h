/* gate.h - the gate in front of libmicrohttpd (issue 17, findings 5, 6, 9): it owns the
 * listening socket, accepts connections, answers the ones past the connection limit at once
 * (503 + Retry-After), and reads the head of each connection's first request without taking it
 * off the socket (MSG_PEEK): a head libmicrohttpd 0.9.75 would get wrong (a Content-Length it
 * answers twice, a Transfer-Encoding it never answers) or that RFC 9112 says to refuse (no Host,
 * two Hosts, whitespace before a colon, a NUL or bare CR, ...) gets one JSON error and a close;
 * any other connection is handed to libmicrohttpd (MHD_add_connection), which reads the same
 * bytes. A head not complete within 10 s or larger than 64 KiB is handed over as it is (its
 * limits and timeouts apply). Later requests on a kept-alive connection are libmicrohttpd's
 * alone (docs/RELIABILITY.md).
 *
 * Thread-safety: one thread of its own; start and stop from one thread. */
#ifndef PD_GATE_H
#define PD_GATE_H

#include "common.h"

#include <sys/socket.h>

typedef struct pd_gate pd_gate;

typedef struct pd_gate_config {
    const struct sockaddr *addr; /* where to listen */
    socklen_t addr_len;
    int max_open;                /* connections open at once: past it 503 */
    long long max_body;          /* bytes, for the message of a Content-Length past 2^63 (413) */
    int (*open_now)(void *arg);  /* connections libmicrohttpd holds now */
    /* a connection starts (+1) or stops (-1) waiting at the gate: open connections are the
     * scheduler's company (a prediction may come on each); NULL = none */
    void (*waiting)(void *arg, int delta);
    /* takes fd over (closes it on failure); 0 on success */
    int (*handoff)(void *arg, int fd, const struct sockaddr *addr, socklen_t len);
    /* a connection answered with an error and closed here (status, its JSON code), head: the
     * bytes of its first request read so far (NULL when refused at accept: past max_open), for
     * the access log and the metrics; NULL = none. Called on the gate's thread. */
    void (*refused)(void *arg, int status, const char *code, const char *head, size_t head_len);
    void *arg;
} pd_gate_config;

/* Listens and starts the gate's thread; *port gets the bound port. PD_ERR_IO when the address
 * cannot be bound, PD_ERR_NOMEM. */
pd_status pd_gate_start(const pd_gate_config *c, pd_gate **out, int *port, char *err, size_t errlen);
/* Stops accepting, closes the connections still waiting at the gate and the listening socket.
 * NULL is a no-op. */
void pd_gate_stop(pd_gate *g);

/* Checks one request head (its bytes up to and including the empty line, len of them): 0 when
 * libmicrohttpd may have it, else the status to answer (400, 413, 501) with *code and a reason
 * in why. max_body as in the config. Pure: the fuzz target's entry (tests/fuzz/). */
int pd_gate_check(const char *head, size_t len, long long max_body, const char **code, char *why, size_t whylen);

/* The length of the head at the start of buf (through its empty line; empty lines before the
 * request line are part of it), or 0 when it is not complete in len bytes. */
size_t pd_gate_head_len(const char *buf, size_t len);

#endif
