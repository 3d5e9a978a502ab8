/* test_console.c - the embedded web console (server/console.h): the generated table holds the
 * files of server/console/ byte for byte with their content types and distinct ETags, request
 * paths map to files and nothing else, and If-None-Match is parsed as RFC 9110 says.
 * Run from the repository root (it reads server/console/ to compare). */
#include "console.h"
#include "test.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

static unsigned char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(n > 0 ? (size_t)n : 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static const char *ext_type(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot) return NULL;
    if (!strcmp(dot, ".html")) return "text/html; charset=utf-8";
    if (!strcmp(dot, ".css")) return "text/css; charset=utf-8";
    if (!strcmp(dot, ".js")) return "text/javascript; charset=utf-8";
    return NULL;
}

/* Every .html/.css/.js file of server/console/ is embedded, identical, with its type. */
static void test_table_matches_sources(void) {
    DIR *d = opendir("server/console");
    if (!d) {
        TEST_SKIP("server/console not found: run from the repository root");
        return;
    }
    int on_disk = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *type = ext_type(e->d_name);
        if (!type) continue;
        on_disk++;
        char path[512];
        snprintf(path, sizeof path, "server/console/%s", e->d_name);
        size_t len = 0;
        unsigned char *want = slurp(path, &len);
        const pd_console_file *f = NULL;
        for (int i = 0; i < pd_console_n_files; i++)
            if (!strcmp(pd_console_files[i].name, e->d_name)) f = &pd_console_files[i];
        CHECKF(f != NULL, "%s is not embedded", e->d_name);
        if (f && want) {
            CHECKF(f->len == len && !memcmp(f->data, want, len), "%s: embedded bytes differ from the file", e->d_name);
            CHECKF(!strcmp(f->content_type, type), "%s: type %s", e->d_name, f->content_type);
        }
        free(want);
    }
    closedir(d);
    CHECKF(on_disk == pd_console_n_files, "%d files on disk, %d embedded", on_disk, pd_console_n_files);
    for (int i = 0; i < pd_console_n_files; i++) {
        const char *t = pd_console_files[i].etag;
        CHECKF(strlen(t) == 18 && t[0] == '"' && t[17] == '"' && strspn(t + 1, "0123456789abcdef") == 16, "ETag %s", t);
        for (int j = 0; j < i; j++) CHECKF(strcmp(t, pd_console_files[j].etag), "%s and %s share an ETag", pd_console_files[i].name,
                                           pd_console_files[j].name);
    }
}

static void test_lookup(void) {
    const pd_console_file *idx = pd_console_lookup("/");
    CHECK(idx && !strcmp(idx->name, "index.html"));
    CHECK(pd_console_lookup("/console/index.html") == idx);
    const pd_console_file *app = pd_console_lookup("/console/app.js");
    CHECK(app && !strcmp(app->name, "app.js") && !strcmp(app->content_type, "text/javascript; charset=utf-8"));
    const char *no[] = {NULL, "", "/console", "/console/", "/console/nope.js", "/console/../index.html", "/console//app.js",
                        "/index.html", "/app.js", "/console/app.js/", "/console/app.js?x", "/console/embed.c", "/Console/app.js",
                        "/adapters", "//"};
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) CHECKF(pd_console_lookup(no[i]) == NULL, "lookup(%s) matched", no[i] ? no[i] : "NULL");
}

static void test_etag_matches(void) {
    const pd_console_file *f = pd_console_lookup("/");
    if (!f) return;
    char tag[64], weak[80], list[160], bare[64];
    snprintf(tag, sizeof tag, "%s", f->etag);
    snprintf(weak, sizeof weak, "W/%s", f->etag);
    snprintf(list, sizeof list, "\"0000000000000000\" ,W/\"1\",  %s", f->etag);
    snprintf(bare, sizeof bare, "%.16s", f->etag + 1); /* the hex without quotes */
    CHECK(pd_console_etag_matches(f, tag));
    CHECK(pd_console_etag_matches(f, weak));
    CHECK(pd_console_etag_matches(f, list));
    CHECK(pd_console_etag_matches(f, "*"));
    CHECK(pd_console_etag_matches(f, " * "));
    CHECK(!pd_console_etag_matches(f, NULL));
    CHECK(!pd_console_etag_matches(f, ""));
    CHECK(!pd_console_etag_matches(f, bare));
    CHECK(!pd_console_etag_matches(f, "\"0000000000000000\""));
    CHECK(!pd_console_etag_matches(f, "*x"));
    CHECK(!pd_console_etag_matches(f, "\"unterminated"));
    CHECK(!pd_console_etag_matches(f, ",,, ,"));
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%.10s\"", f->etag); /* a shorter tag sharing its start */
    CHECK(!pd_console_etag_matches(f, prefix));
}

static void test_headers(void) {
    int csp = 0, nosniff = 0, cache = 0;
    for (int i = 0; pd_console_headers[i][0]; i++) {
        const char *k = pd_console_headers[i][0], *v = pd_console_headers[i][1];
        if (!strcmp(k, "Content-Security-Policy")) csp = strstr(v, "script-src 'self'") && strstr(v, "style-src 'self'") && !strstr(v, "unsafe");
        if (!strcmp(k, "X-Content-Type-Options")) nosniff = !strcmp(v, "nosniff");
        if (!strcmp(k, "Cache-Control")) cache = 1;
    }
    CHECK(csp);
    CHECK(nosniff);
    CHECK(cache);
}

int main(void) {
    test_table_matches_sources();
    test_lookup();
    test_etag_matches();
    test_headers();
    return TEST_SUMMARY("test_console");
}
