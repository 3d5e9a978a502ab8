/* console.h - the operator's web console, embedded in the binary at build time.
 *
 * The files of server/console/ (HTML, CSS, JavaScript; no build step) are turned into byte
 * arrays by server/console/embed.c, which the Makefile runs; this module maps request paths to
 * them. "/" is index.html and "/console/NAME" is the file NAME; nothing else matches, so no
 * request can reach the file system. The HTTP layer serves a match with the file's content
 * type, its ETag (answering If-None-Match with 304) and pd_console_headers.
 *
 * Ownership: everything returned is static, read-only data. Thread-safety: no state; callable
 * from any thread. */
#ifndef PD_CONSOLE_H
#define PD_CONSOLE_H

#include <stddef.h>

typedef struct pd_console_file {
    const char *name;          /* "index.html", "app.js", ... */
    const char *content_type;  /* from the extension, e.g. "text/javascript; charset=utf-8" */
    const char *etag;          /* strong, quoted: "\"0123456789abcdef\"" (FNV-1a 64 of the bytes) */
    const unsigned char *data; /* (len) */
    size_t len;
} pd_console_file;

/* The generated table (build/gen/console_files.c), in the order the Makefile lists the files. */
extern const pd_console_file pd_console_files[];
extern const int pd_console_n_files;

/* Headers every console response carries, {name, value} pairs ending with {NULL, NULL}:
 * Cache-Control (revalidate: file names carry no version), nosniff, a Content-Security-Policy
 * that allows scripts, styles and fetches from this origin only (no inline script or style),
 * and no Referer. */
extern const char *const pd_console_headers[][2];

/* The file served at a (percent-decoded, query-less) request path; NULL if the path is not
 * the console's. */
const pd_console_file *pd_console_lookup(const char *path);

/* Whether an If-None-Match header value (NULL: absent) matches f: "*", or a comma-separated
 * list of entity tags one of which equals f's (weak comparison, as RFC 9110 asks for
 * If-None-Match: W/"x" matches "x"). Returns 1 or 0. */
int pd_console_etag_matches(const pd_console_file *f, const char *if_none_match);

#endif
