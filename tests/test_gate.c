/* test_gate.c - the gate's checks of a request head (server/gate.c): what it hands to
 * libmicrohttpd and what it answers itself (issue 17, findings 6 and 9). The end-to-end cases are
 * in tests/e2e/test_hostile.py (cl.*, te.*, hdr.*, conn.*). */
#include "gate.h"
#include "test.h"

#include <string.h>

#define MAX_BODY (64LL << 20)

/* head's status, and its code's first letters when refused */
static int check(const char *head, const char *want_code) {
    const char *code = NULL;
    char why[256] = "";
    int st = pd_gate_check(head, strlen(head), MAX_BODY, &code, why, sizeof why);
    if (want_code) CHECKF(st && code && !strcmp(code, want_code), "%s -> %d %s (%s)", head, st, code ? code : "-", why);
    if (st) CHECKF(why[0], "%s: no reason", head);
    return st;
}

#define REQ(hdrs) "POST /predict HTTP/1.1\r\nHost: x\r\n" hdrs "\r\n"

static void test_heads(void) {
    /* handed over */
    CHECK(check(REQ(""), NULL) == 0);
    CHECK(check(REQ("Content-Length: 12\r\n"), NULL) == 0);
    CHECK(check(REQ("Content-Length: 00012\r\n"), NULL) == 0);
    CHECK(check(REQ("Content-Length: 12\r\nContent-Length: 12\r\n"), NULL) == 0);
    CHECK(check(REQ("Transfer-Encoding: chunked\r\n"), NULL) == 0);
    CHECK(check(REQ("Transfer-Encoding: CHUNKED\r\n"), NULL) == 0);
    CHECK(check(REQ("X-A: caf\xc3\xa9\r\n"), NULL) == 0); /* obs-text in a value */
    CHECK(check(REQ("X-A:\tb\t\r\n"), NULL) == 0);
    CHECK(check("GET /health HTTP/1.0\r\n\r\n", NULL) == 0); /* HTTP/1.0 needs no Host */
    CHECK(check("\r\n\r\nGET /health HTTP/1.1\nHost: x\n\n", NULL) == 0);
    CHECK(check(REQ("Content-Length: 9223372036854775000\r\n"), NULL) == 0); /* the handler says 413 */
    /* Content-Length: libmicrohttpd 0.9.75 would answer these twice over */
    static const char *const bad_cl[] = {"-5", "0x10", "+12", "1e3", "", "abc", "12x", "12, 12", " 12 "};
    for (size_t i = 0; i < sizeof bad_cl / sizeof bad_cl[0]; i++) {
        char h[200];
        snprintf(h, sizeof h, REQ("Content-Length: %s\r\n"), bad_cl[i]);
        CHECKF(check(h, "invalid_input") == 400, "Content-Length '%s'", bad_cl[i]);
    }
    CHECK(check(REQ("Content-Length: 11111111111111111111111111\r\n"), "too_large") == 413);
    CHECK(check(REQ("Content-Length: 12\r\nContent-Length: 15\r\n"), "invalid_input") == 400);
    /* Transfer-Encoding other than one chunked: libmicrohttpd never answered */
    static const char *const bad_te[] = {"gzip, chunked", "gzip", "identity", "chunked, chunked", "chunked, gzip", "banana"};
    for (size_t i = 0; i < sizeof bad_te / sizeof bad_te[0]; i++) {
        char h[200];
        snprintf(h, sizeof h, REQ("Transfer-Encoding: %s\r\n"), bad_te[i]);
        CHECKF(check(h, "not_implemented") == 501, "Transfer-Encoding '%s'", bad_te[i]);
    }
    CHECK(check(REQ("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"), "not_implemented") == 501);
    /* RFC 9112 syntax */
    CHECK(check("GET /health HTTP/1.1\r\n\r\n", "invalid_input") == 400);              /* no Host */
    CHECK(check(REQ("Host: other\r\n"), "invalid_input") == 400);                      /* two */
    CHECK(check(REQ("X-A : b\r\n"), "invalid_input") == 400);                          /* space before ':' */
    CHECK(check(REQ("X-A b\r\n"), "invalid_input") == 400);                            /* no colon */
    CHECK(check(REQ(": b\r\n"), "invalid_input") == 400);                              /* empty name */
    CHECK(check(REQ("X-\xc3\xa9: b\r\n"), "invalid_input") == 400);                    /* non-token name */
    CHECK(check(REQ("X-A: b\rc\r\n"), "invalid_input") == 400);                        /* bare CR */
    CHECK(check(REQ("X-A: b\x01" "c\r\n"), "invalid_input") == 400);                   /* a control character */
    CHECK(check(REQ("X-A: b\r\n c\r\n"), "invalid_input") == 400);                     /* obs-fold */
    CHECK(check(REQ("Authorization: Bearer a\r\nAuthorization: Bearer b\r\n"), "invalid_input") == 400);
    const char nul[] = "GET /health HTTP/1.1\r\nHost: x\r\nX-A: b\0c\r\n\r\n";
    const char *code = NULL;
    char why[128];
    CHECK(pd_gate_check(nul, sizeof nul - 1, MAX_BODY, &code, why, sizeof why) == 400);
}

static void test_head_len(void) {
    const char *a = "GET / HTTP/1.1\r\nHost: x\r\n\r\nBODY";
    CHECK(pd_gate_head_len(a, strlen(a)) == strlen(a) - 4);
    CHECK(pd_gate_head_len(a, 20) == 0);
    const char *b = "\r\n\nGET / HTTP/1.1\nHost: x\n\n";
    CHECK(pd_gate_head_len(b, strlen(b)) == strlen(b));
    CHECK(pd_gate_head_len("\r\n", 2) == 0);
    CHECK(pd_gate_head_len("", 0) == 0);
}

int main(void) {
    test_heads();
    test_head_len();
    return TEST_SUMMARY("test_gate");
}
