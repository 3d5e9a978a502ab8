/* console.c - request paths to the embedded console files. See console.h. */
#include "console.h"

#include <string.h>

const char *const pd_console_headers[][2] = {
    {"Cache-Control", "no-cache"},
    {"X-Content-Type-Options", "nosniff"},
    {"Content-Security-Policy",
     "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
     "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"},
    {"Referrer-Policy", "no-referrer"},
    {NULL, NULL},
};

const pd_console_file *pd_console_lookup(const char *path) {
    const char *name;
    if (!path) return NULL;
    if (!strcmp(path, "/")) name = "index.html";
    else if (!strncmp(path, "/console/", 9)) name = path + 9;
    else return NULL;
    for (int i = 0; i < pd_console_n_files; i++)
        if (!strcmp(pd_console_files[i].name, name)) return &pd_console_files[i];
    return NULL;
}

int pd_console_etag_matches(const pd_console_file *f, const char *h) {
    if (!f || !h) return 0;
    size_t want = strlen(f->etag);
    while (*h) {
        while (*h == ' ' || *h == '\t' || *h == ',') h++;
        if (!*h) break;
        const char *end = h;
        if (*h == '*') {
            end = h + 1;
            if (!*end || *end == ',' || *end == ' ' || *end == '\t') return 1;
        }
        if (!strncmp(h, "W/", 2)) h += 2;
        if (*h == '"') { /* an entity tag: up to its closing quote */
            end = strchr(h + 1, '"');
            if (!end) return 0;
            end++;
            if ((size_t)(end - h) == want && !memcmp(h, f->etag, want)) return 1;
        }
        while (*end && *end != ',') end++; /* skip anything malformed up to the next tag */
        h = end;
    }
    return 0;
}
