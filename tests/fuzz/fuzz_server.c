/* fuzz_server.c - libFuzzer target: the whole server in process (tests/fuzz/NEXT.md item 5).
 * LLVMFuzzerInitialize starts `peftd serve` as main.c does (pd_server_start) on 127.0.0.1, port 0,
 * with the generated model and a temporary data dir, one training thread, and small limits
 * (--max-body-mb 1, --max-connections 64). Each input is written as raw bytes to a new loopback
 * connection (so the gate, libmicrohttpd, the router and every handler see it; the input may
 * hold several pipelined requests), the write side is shut, and the answer is read until the
 * server closes or 1 s passes. Then GET /health on a new connection must answer 200 within 10 s
 * (a 503 busy is retried: the server may not have seen the input's connection close yet),
 * else abort(): a crash, a hang of the HTTP threads or a server that stopped serving is a
 * finding. Seeds: the hostile suite's raw requests (test_hostile.py --dump-corpus) and
 * well-formed predict, upload, train and adapter requests (scripts/fuzz.sh). */
#include "genmodel.h"
#include "options.h"
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static pd_server *srv;
static int port;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static int dial(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends data, shuts the write side, reads until the server closes or secs pass; returns the
 * bytes read into out (cap), -1 if the connection failed. */
static long exchange(const void *data, size_t len, double secs, char *out, size_t cap) {
    int fd = dial();
    if (fd < 0) return -1;
    size_t sent = 0;
    while (sent < len) {
        ssize_t w = send(fd, (const char *)data + sent, len - sent, MSG_NOSIGNAL);
        if (w <= 0) break; /* the server may close early (an error answered): fine */
        sent += (size_t)w;
    }
    shutdown(fd, SHUT_WR);
    long got = 0;
    char sink[4096];
    double end = now_s() + secs;
    for (;;) {
        double left = end - now_s();
        if (left <= 0) break;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, (int)(left * 1000) + 1) <= 0) break;
        char *dst = out && (size_t)got < cap ? out + got : sink;
        size_t room = out && (size_t)got < cap ? cap - (size_t)got : sizeof sink;
        ssize_t r = recv(fd, dst, room, 0);
        if (r <= 0) break;
        if (dst != sink) got += r;
    }
    close(fd);
    return got;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    static char dir[] = "/tmp/pd_fuzz_server_XXXXXX";
    static char model[600], data[600];
    char err[1024];
    if (!mkdtemp(dir)) abort();
    snprintf(model, sizeof model, "%s/model", dir);
    snprintf(data, sizeof data, "%s/data", dir);
    if (pd_genmodel_write(model, err, sizeof err)) {
        fprintf(stderr, "fuzz_server: %s\n", err);
        abort();
    }
    char *args[] = {"--model", model, "--data-dir", data, "--host", "127.0.0.1", "--port", "0", "--threads", "1", "--http-threads", "2",
                    "--max-body-mb", "1", "--max-connections", "64", "--train-threads", "1", "--batch-wait-ms", "0"};
    static pd_serve_opts o;
    int help = 0;
    if (pd_opts_parse(pd_serve_opt_defs, pd_serve_opt_count, &o, (int)(sizeof args / sizeof *args), args, 0, &help, err, sizeof err) ||
        pd_server_start(&o, &srv, err, sizeof err)) {
        fprintf(stderr, "fuzz_server: %s\n", err);
        abort();
    }
    port = srv->port;
    for (int i = 0; i < 600 && !pd_server_ready(srv, err, sizeof err); i++) usleep(10000);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    exchange(data, size, 1.0, NULL, 0);
    static const char health[] = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    char ans[256];
    long n = 0;
    double end = now_s() + 10;
    do {
        n = exchange(health, sizeof health - 1, 5.0, ans, sizeof ans);
        if (n >= 12 && !memcmp(ans, "HTTP/1.1 200", 12)) return 0;
        usleep(20000);
    } while (now_s() < end && n >= 12 && !memcmp(ans, "HTTP/1.1 503", 12));
    fprintf(stderr, "fuzz_server: GET /health after the input: %ld bytes: %.*s\n", n, n > 0 ? (int)n : 0, ans);
    abort();
}
