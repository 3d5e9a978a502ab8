/* gate.c - the gate in front of libmicrohttpd: see gate.h. One thread, one edge-triggered
 * epoll set: the listening socket, a stop eventfd, and the connections waiting at the gate
 * (their head peeked at each time more bytes arrive) or being closed after an error (what the
 * client still sends is read and dropped until it closes, so that the close does not reset the
 * connection before the answer is read). */
#include "gate.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define HEAD_CAP (64 * 1024) /* a head larger than this is libmicrohttpd's (431 or 414) */
#define HEAD_WAIT_S 10.0     /* a head slower than this is libmicrohttpd's (its timeouts) */
#define DRAIN_S 1.0          /* after an error: how long the client's last bytes are read */
#define MAX_WAITING 4096     /* connections at the gate; past it new ones are closed at once */

typedef struct slot {
    int fd;
    int draining;            /* answered: reading until the client closes */
    int counted;             /* counted by c.waiting */
    double deadline;
    socklen_t alen;
    struct sockaddr_storage addr;
} slot;

struct pd_gate {
    pd_gate_config c;
    int lfd, efd, stopfd;
    pthread_t th;
    int started;
    slot **w;                /* connections at the gate (the gate's thread only) */
    int n_w;
    char buf[HEAD_CAP];
};

/* ==== The head ==== */

size_t pd_gate_head_len(const char *buf, size_t len) {
    size_t i = 0;
    while (i < len && (buf[i] == '\n' || (buf[i] == '\r' && i + 1 < len && buf[i + 1] == '\n'))) i += buf[i] == '\r' ? 2 : 1;
    for (; i < len; i++) {
        if (buf[i] != '\n') continue;
        if (i + 1 < len && buf[i + 1] == '\n') return i + 2;
        if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n') return i + 3;
    }
    return 0;
}

static int is_tchar(unsigned char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static int name_is(const char *name, size_t n, const char *want) { return strlen(want) == n && !strncasecmp(name, want, n); }

#define REFUSE(status, c, ...)                     \
    do {                                           \
        *code = (c);                               \
        snprintf(why, whylen, __VA_ARGS__);        \
        return (status);                           \
    } while (0)

int pd_gate_check(const char *head, size_t len, long long max_body, const char **code, char *why, size_t whylen) {
    if (memchr(head, 0, len)) REFUSE(400, "invalid_input", "a NUL byte in the request head");
    const char *p = head, *end = head + len;
    while (p < end && (*p == '\r' || *p == '\n')) p++;
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol) REFUSE(400, "invalid_input", "the request head has no line end");
    size_t rl = (size_t)(eol - p) - (eol > p && eol[-1] == '\r');
    int http11 = rl >= 9 && !memcmp(p + rl - 9, " HTTP/1.1", 9);
    int n_host = 0, n_auth = 0, n_te = 0;
    long long cl = -1;
    for (p = eol + 1; p < end;) {
        eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        size_t n = (size_t)(eol - p);
        if (n && p[n - 1] == '\r') n--;
        const char *line = p;
        p = eol + 1;
        if (n == 0) break; /* the empty line */
        if (memchr(line, '\r', n)) REFUSE(400, "invalid_input", "a bare CR in a header line");
        if (line[0] == ' ' || line[0] == '\t') REFUSE(400, "invalid_input", "obsolete line folding (RFC 9112 5.2)");
        const char *colon = memchr(line, ':', n);
        if (!colon) REFUSE(400, "invalid_input", "a header line without ':'");
        size_t nl = (size_t)(colon - line);
        if (nl == 0) REFUSE(400, "invalid_input", "a header with an empty name");
        for (size_t i = 0; i < nl; i++)
            if (!is_tchar((unsigned char)line[i]))
                REFUSE(400, "invalid_input", line[i] == ' ' || line[i] == '\t' ? "whitespace before ':' in a header (RFC 9112 5.1)"
                                                                               : "a header name with a character outside RFC 9110's token");
        const char *v = colon + 1, *ve = line + n;
        while (v < ve && (*v == ' ' || *v == '\t')) v++;
        int trailing_ws = ve > v && (ve[-1] == ' ' || ve[-1] == '\t');
        for (const char *q = v; q < ve; q++)
            if (((unsigned char)*q < 0x20 && *q != '\t') || *q == 0x7f)
                REFUSE(400, "invalid_input", "a control character in the value of header %.*s", (int)(nl > 64 ? 64 : nl), line);
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        size_t vl = (size_t)(ve - v);
        if (name_is(line, nl, "Host")) {
            if (++n_host > 1) REFUSE(400, "invalid_input", "more than one Host header (RFC 9112 3.2)");
        } else if (name_is(line, nl, "Authorization")) {
            if (++n_auth > 1) REFUSE(400, "invalid_input", "more than one Authorization header");
        } else if (name_is(line, nl, "Content-Length")) {
            /* libmicrohttpd 0.9.75 answers a value it cannot read twice over (status line and
             * headers sent twice), so every oddity is answered here */
            if (vl == 0) REFUSE(400, "invalid_input", "Content-Length: empty");
            long long x = 0;
            for (size_t i = 0; i < vl; i++) {
                if (v[i] < '0' || v[i] > '9') REFUSE(400, "invalid_input", "Content-Length: '%.*s' is not a decimal number", (int)(vl > 32 ? 32 : vl), v);
                if (x > (LLONG_MAX - 9) / 10) REFUSE(413, "too_large", "Content-Length: %zu digits; the limit is %lld bytes", vl, max_body);
                x = x * 10 + (v[i] - '0');
            }
            if (trailing_ws) REFUSE(400, "invalid_input", "Content-Length: whitespace after the value (libmicrohttpd cannot take it)");
            if (cl >= 0 && cl != x) REFUSE(400, "invalid_input", "two Content-Length headers that differ");
            cl = x;
        } else if (name_is(line, nl, "Transfer-Encoding")) {
            if (++n_te > 1 || vl != 7 || strncasecmp(v, "chunked", 7))
                REFUSE(501, "not_implemented", "Transfer-Encoding: only a single 'chunked' is supported");
        }
    }
    if (http11 && n_host == 0) REFUSE(400, "invalid_input", "an HTTP/1.1 request without Host (RFC 9112 3.2)");
    return 0;
}

#undef REFUSE

/* ==== Connections ==== */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static const char *reason(int status) {
    switch (status) {
    case 400: return "Bad Request";
    case 413: return "Content Too Large";
    case 501: return "Not Implemented";
    default: return "Service Unavailable";
    }
}

/* Sends a whole JSON error answer (best effort: the socket is non-blocking and the answer small)
 * and stops the sending side. */
static void answer(int fd, int status, const char *code, const char *msg) {
    char body[640], out[1024];
    char esc[512];
    size_t k = 0;
    for (const char *m = msg; *m && k + 2 < sizeof esc; m++) {
        if (*m == '"' || *m == '\\') esc[k++] = '\\';
        esc[k++] = (unsigned char)*m < 0x20 || (unsigned char)*m >= 0x7f ? '?' : *m; /* an echoed value may not be UTF-8 */
    }
    esc[k] = 0;
    int bl = snprintf(body, sizeof body, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code, esc);
    int n = snprintf(out, sizeof out,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nConnection: close\r\n%sContent-Length: %d\r\n\r\n%s",
                     status, reason(status), status == 503 ? "Retry-After: 1\r\n" : "", bl, body);
    if (n > 0) {
        ssize_t w = send(fd, out, (size_t)n, MSG_NOSIGNAL);
        (void)w;
    }
    shutdown(fd, SHUT_WR);
}

static void count(pd_gate *g, slot *s, int on) {
    if (s->counted == on) return;
    s->counted = on;
    if (g->c.waiting) g->c.waiting(g->c.arg, on ? 1 : -1);
}

static void drop(pd_gate *g, int i, int close_fd) {
    slot *s = g->w[i];
    count(g, s, 0);
    epoll_ctl(g->efd, EPOLL_CTL_DEL, s->fd, NULL);
    if (close_fd) close(s->fd);
    free(s);
    g->w[i] = g->w[--g->n_w];
}

/* Hands connection i to libmicrohttpd; it stops waiting only then (no moment uncounted). */
static void hand(pd_gate *g, int i) {
    slot *s = g->w[i];
    epoll_ctl(g->efd, EPOLL_CTL_DEL, s->fd, NULL);
    g->c.handoff(g->c.arg, s->fd, (const struct sockaddr *)&s->addr, s->alen);
    count(g, s, 0);
    free(s);
    g->w[i] = g->w[--g->n_w];
}

static int find(pd_gate *g, const slot *s) {
    for (int i = 0; i < g->n_w; i++)
        if (g->w[i] == s) return i;
    return -1;
}

static void start_drain(pd_gate *g, slot *s, int status, const char *code, const char *msg) {
    count(g, s, 0);
    answer(s->fd, status, code, msg);
    s->draining = 1;
    s->deadline = now_s() + DRAIN_S;
}

/* Reads what the client sends after an error; closes on its end or an error. */
static void drain(pd_gate *g, slot *s) {
    for (;;) {
        ssize_t r = recv(s->fd, g->buf, sizeof g->buf, 0);
        if (r > 0) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (r < 0 && errno == EINTR) continue;
        drop(g, find(g, s), 1);
        return;
    }
}

/* Peeks at a waiting connection's head: hands it over, answers it, or waits for more. */
static void look(pd_gate *g, slot *s) {
    ssize_t r;
    do r = recv(s->fd, g->buf, sizeof g->buf, MSG_PEEK);
    while (r < 0 && errno == EINTR);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (r <= 0) { /* closed (or failed) before a whole head: nothing to answer */
        drop(g, find(g, s), 1);
        return;
    }
    size_t hl = pd_gate_head_len(g->buf, (size_t)r);
    if (!hl && (size_t)r < sizeof g->buf) return; /* more to come (the next edge) */
    if (hl) {
        const char *code = NULL;
        char why[256];
        int st = pd_gate_check(g->buf, hl, g->c.max_body, &code, why, sizeof why);
        if (st) {
            if (g->c.refused) g->c.refused(g->c.arg, st, code, g->buf, hl);
            start_drain(g, s, st, code, why);
            drain(g, s);
            return;
        }
    }
    hand(g, find(g, s));
}

static void accept_all(pd_gate *g) {
    for (;;) {
        struct sockaddr_storage a;
        socklen_t al = sizeof a;
        int fd = accept4(g->lfd, (struct sockaddr *)&a, &al, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return; /* EAGAIN; or EMFILE and the like: the backlog waits */
        }
        if (g->n_w >= MAX_WAITING) {
            close(fd);
            continue;
        }
        slot *s = calloc(1, sizeof *s);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.ptr = s};
        if (!s || epoll_ctl(g->efd, EPOLL_CTL_ADD, fd, &ev)) {
            free(s);
            close(fd);
            continue;
        }
        s->fd = fd;
        s->addr = a;
        s->alen = al;
        s->deadline = now_s() + HEAD_WAIT_S;
        g->w[g->n_w++] = s;
        int waiting = 0;
        for (int i = 0; i < g->n_w; i++) waiting += !g->w[i]->draining;
        if (g->c.open_now(g->c.arg) + waiting > g->c.max_open) {
            char msg[160];
            snprintf(msg, sizeof msg, "%d connections are open (--max-connections); retry later", g->c.max_open);
            if (g->c.refused) g->c.refused(g->c.arg, 503, "busy", NULL, 0);
            start_drain(g, s, 503, "busy", msg);
            drain(g, s);
        } else {
            count(g, s, 1);
            look(g, s); /* the request may be there already */
        }
    }
}

static void *gate_main(void *arg) {
    pd_gate *g = arg;
    struct epoll_event evs[64];
    double last = now_s();
    for (;;) {
        int n = epoll_wait(g->efd, evs, 64, 100);
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &g->stopfd) return NULL;
            if (p == &g->lfd) {
                accept_all(g);
                continue;
            }
            slot *s = p;
            if (find(g, s) < 0) continue; /* gone earlier in this batch */
            if (s->draining) drain(g, s);
            else look(g, s);
        }
        double t = now_s();
        if (t - last < 0.05) continue;
        last = t;
        for (int i = g->n_w - 1; i >= 0; i--) {
            slot *s = g->w[i];
            if (t < s->deadline) continue;
            if (s->draining) {
                drop(g, i, 1);
            } else { /* a slow head: libmicrohttpd's timeouts apply */
                hand(g, i);
            }
        }
    }
}

pd_status pd_gate_start(const pd_gate_config *c, pd_gate **out, int *port, char *err, size_t errlen) {
    *out = NULL;
    pd_gate *g = calloc(1, sizeof *g);
    if (!g || !(g->w = calloc(MAX_WAITING, sizeof *g->w))) {
        if (g) free(g);
        return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    }
    g->c = *c;
    g->efd = g->stopfd = -1;
    int one = 1;
    g->lfd = socket(c->addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (g->lfd < 0 || setsockopt(g->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) || bind(g->lfd, c->addr, c->addr_len) ||
        listen(g->lfd, 1024)) {
        pd_status st = pd_err(err, errlen, PD_ERR_IO, "%s", strerror(errno));
        if (g->lfd >= 0) close(g->lfd);
        free(g->w);
        free(g);
        return st;
    }
    struct sockaddr_storage a;
    socklen_t al = sizeof a;
    *port = 0;
    if (!getsockname(g->lfd, (struct sockaddr *)&a, &al))
        *port = a.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&a)->sin6_port) : ntohs(((struct sockaddr_in *)&a)->sin_port);
    g->efd = epoll_create1(EPOLL_CLOEXEC);
    g->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event el = {.events = EPOLLIN | EPOLLET, .data.ptr = &g->lfd}, es = {.events = EPOLLIN, .data.ptr = &g->stopfd};
    if (g->efd < 0 || g->stopfd < 0 || epoll_ctl(g->efd, EPOLL_CTL_ADD, g->lfd, &el) || epoll_ctl(g->efd, EPOLL_CTL_ADD, g->stopfd, &es) ||
        pthread_create(&g->th, NULL, gate_main, g)) {
        pd_status st = pd_err(err, errlen, PD_ERR_IO, "cannot start the connection gate: %s", strerror(errno));
        pd_gate_stop(g);
        return st;
    }
    g->started = 1;
    *out = g;
    return PD_OK;
}

void pd_gate_stop(pd_gate *g) {
    if (!g) return;
    if (g->started) {
        uint64_t one = 1;
        ssize_t w = write(g->stopfd, &one, sizeof one);
        (void)w;
        pthread_join(g->th, NULL);
    }
    while (g->n_w > 0) drop(g, g->n_w - 1, 1);
    if (g->efd >= 0) close(g->efd);
    if (g->stopfd >= 0) close(g->stopfd);
    if (g->lfd >= 0) close(g->lfd);
    free(g->w);
    free(g);
}
