/* test_multipart.c - multipart/form-data as server/multipart.c reads it (issue 17, finding 4):
 * boundaries, delimiters, a preamble and an epilogue, part names (quoted, token, NUL, missing),
 * truncation, and parts pointing into the body NUL-terminated. The end-to-end cases are in
 * tests/e2e/test_hostile.py (mp.*). */
#include "multipart.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

typedef struct got {
    int n;
    char names[8][64];
    char *data[8];
    size_t len[8];
} got;

static int collect(void *arg, const char *name, char *data, size_t len, char *err, size_t errlen) {
    got *g = arg;
    if (g->n == 8) {
        snprintf(err, errlen, "too many");
        return -1;
    }
    snprintf(g->names[g->n], sizeof g->names[0], "%s", name);
    g->data[g->n] = data;
    g->len[g->n++] = len;
    return 0;
}

/* Parses text (copied: it is modified in place) with boundary "B"; the status, err and g. */
static pd_status parse(const char *text, size_t len, got *g, char *err, size_t errlen) {
    char *b = malloc(len + 1);
    memcpy(b, text, len);
    b[len] = 0;
    memset(g, 0, sizeof *g);
    pd_status st = pd_multipart_parse(b, len, "B", collect, g, err, errlen);
    for (int i = 0; i < g->n; i++) {
        CHECKF(g->data[i][g->len[i]] == 0, "part %d is NUL-terminated", i);
        char *copy = malloc(g->len[i] + 1);
        memcpy(copy, g->data[i], g->len[i] + 1);
        g->data[i] = copy; /* outlives b */
    }
    free(b);
    return st;
}

static void free_got(got *g) {
    for (int i = 0; i < g->n; i++) free(g->data[i]);
}

#define P(name_hdr, data) "--B\r\nContent-Disposition: form-data; " name_hdr "\r\n\r\n" data "\r\n"

static void expect_ok(const char *text, int n, const char *name0, const char *data0) {
    got g;
    char err[200] = "";
    pd_status st = parse(text, strlen(text), &g, err, sizeof err);
    CHECKF(st == PD_OK && g.n == n, "%s: %s, %d parts (%s)", text, pd_status_name(st), g.n, err);
    if (st == PD_OK && g.n > 0) {
        CHECKF(!strcmp(g.names[0], name0), "%s: name '%s'", text, g.names[0]);
        CHECKF(g.len[0] == strlen(data0) && !memcmp(g.data[0], data0, g.len[0]), "%s: data", text);
    }
    free_got(&g);
}

static void expect_bad(const char *text, size_t len, const char *why) {
    got g;
    char err[200] = "";
    pd_status st = parse(text, len, &g, err, sizeof err);
    CHECKF(st == PD_ERR_INVALID && strstr(err, why), "%.60s: %s (%s), wanted '%s'", text, pd_status_name(st), err, why);
    free_got(&g);
}

static void test_parse(void) {
    expect_ok(P("name=\"a\"", "x") P("name=\"b\"", "yz") "--B--\r\n", 2, "a", "x");
    expect_ok("preamble\r\n" P("name=\"a\"", "x") "--B--\r\nepilogue", 1, "a", "x");
    expect_ok(P("name=a", "x") "--B--", 1, "a", "x");                                  /* a token */
    expect_ok(P("name=\"a\"; filename=\"../../etc/passwd\"", "x") "--B--\r\n", 1, "a", "x");
    expect_ok(P("name=\"a\"", "") "--B--\r\n", 1, "a", "");                            /* empty data */
    expect_ok("--B  \t\r\nContent-Disposition: form-data; name=\"a\"\r\nContent-Type: text/plain\r\n\r\nx\r\n--B--", 1, "a", "x");
    const char bin[] = "--B\r\nContent-Disposition: form-data; name=\"w\"\r\n\r\n\0\1\2\r\n--B--\r\n";
    got g;
    char err[200];
    CHECK(parse(bin, sizeof bin - 1, &g, err, sizeof err) == PD_OK && g.n == 1 && g.len[0] == 3 && g.data[0][1] == 1);
    free_got(&g);
    const char nul_name[] = "--B\r\nContent-Disposition: form-data; name=\"a\0b\"\r\n\r\nx\r\n--B--\r\n";
    expect_bad(nul_name, sizeof nul_name - 1, "NUL");
    const char nul_file[] = "--B\r\nContent-Disposition: form-data; name=\"a\"; filename=\"a\0b\"\r\n\r\nx\r\n--B--\r\n";
    CHECK(parse(nul_file, sizeof nul_file - 1, &g, err, sizeof err) == PD_OK && g.n == 1);
    free_got(&g);
    expect_bad("", 0, "no delimiter");
    expect_bad("--B--\r\n", 7, "no parts");
    expect_bad("--C\r\n\r\nx\r\n--C--\r\n", 17, "no delimiter");
    const char *t;
    t = P("name=\"a\"", "x");                                                            /* no close delimiter */
    expect_bad(t, strlen(t), "truncated");
    t = "--B\r\nContent-Disposition: form-data; name=\"a\"\r\n";                        /* cut in the headers */
    expect_bad(t, strlen(t), "truncated");
    t = P("name=\"a\"", "line\r\n--Bx") "--B--\r\n"; /* the boundary in the data (RFC 2046 forbids it) */
    expect_bad(t, strlen(t), "CRLF");
    t = "--B\nContent-Disposition: form-data; name=\"a\"\n\nx\n--B--\n";                /* bare LF */
    expect_bad(t, strlen(t), "CRLF");
    t = "--B\r\nContent-Type: text/plain\r\n\r\nx\r\n--B--\r\n";
    expect_bad(t, strlen(t), "without Content-Disposition");
    t = P("filename=\"f\"", "x") "--B--\r\n";
    expect_bad(t, strlen(t), "without a name");
    t = P("name=\"\"", "x") "--B--\r\n";
    expect_bad(t, strlen(t), "empty name");
    t = "--B\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nx\r\n--B--\r\n";
    expect_bad(t, strlen(t), "not form-data");
    t = "--B\r\nContent-Disposition: form-data; name=\"a\"\r\nContent-Disposition: form-data; name=\"b\"\r\n\r\nx\r\n--B--\r\n";
    expect_bad(t, strlen(t), "two Content-Disposition");
    t = "--B\r\nContent-Disposition: form-data; name=\"a\r\nX\r\n\r\nx\r\n--B--\r\n";
    expect_bad(t, strlen(t), "unclosed");
    t = "--B\r\nbogus header\r\n\r\nx\r\n--B--\r\n";
    expect_bad(t, strlen(t), "without ':'");
    /* headers past 8 KiB */
    size_t n = 10000;
    char *big = malloc(n + 100);
    int k = snprintf(big, n + 100, "--B\r\nX-Big: ");
    memset(big + k, 'b', n);
    k += (int)n;
    k += snprintf(big + k, 100, "\r\n\r\nx\r\n--B--\r\n");
    expect_bad(big, (size_t)k, "8 KiB");
    free(big);
}

static void test_boundary(void) {
    char b[80];
    CHECK(pd_multipart_boundary("multipart/form-data; boundary=abc", b, sizeof b) == 3 && !strcmp(b, "abc"));
    CHECK(pd_multipart_boundary("multipart/form-data; charset=utf-8; BOUNDARY=\"a b;c\"", b, sizeof b) == 5 && !strcmp(b, "a b;c"));
    CHECK(pd_multipart_boundary("multipart/form-data;boundary=x; charset=utf-8", b, sizeof b) == 1 && !strcmp(b, "x"));
    CHECK(pd_multipart_boundary("multipart/form-data", b, sizeof b) == -1);
    CHECK(pd_multipart_boundary("multipart/form-data; boundary=", b, sizeof b) == -1);
    CHECK(pd_multipart_boundary("multipart/form-data; boundary=\"unclosed", b, sizeof b) == -1);
    char ct[200];
    snprintf(ct, sizeof ct, "multipart/form-data; boundary=%070d", 7);
    CHECK(pd_multipart_boundary(ct, b, sizeof b) == 70);
    snprintf(ct, sizeof ct, "multipart/form-data; boundary=%071d", 7);
    CHECK(pd_multipart_boundary(ct, b, sizeof b) == -1);
}

int main(void) {
    test_parse();
    test_boundary();
    return TEST_SUMMARY("test_multipart");
}
