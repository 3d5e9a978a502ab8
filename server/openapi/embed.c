/* embed.c - build-time converter of docs/openapi.yaml, the one OpenAPI source, into the JSON that
 * GET /openapi.json serves from memory (server/openapi.h), without a YAML library in the product.
 *
 *   openapi-embed OUT.c IN.yaml     writes a C source defining pd_openapi_file (console.h's
 *                                   embedded-file type: JSON bytes, content type, ETag)
 *   openapi-embed --json IN.yaml    prints the JSON on stdout (tests compare it with PyYAML)
 *
 * It reads the subset of YAML 1.2 the file uses and refuses everything else with file:line, so a
 * construct it does not know fails the build instead of being converted wrongly:
 *   - block mappings ("key: value", "key:" + an indented block), plain or quoted keys, no
 *     duplicates; block sequences ("- value", "- key: value" starting a mapping); a sequence
 *     may sit at its key's indentation;
 *   - flow collections {a: b, c: [d, e]} and [a, {b: c}, k: v] (a single-pair mapping in a
 *     sequence), also spread over several lines;
 *   - scalars: "double" (JSON escapes plus \/ \0 \t) and 'single' quoted, plain ones on one line;
 *     literal blocks "|" and "|-";
 *   - comments (" #" after a value, whole lines) and a leading "---".
 * Plain scalars resolve as the YAML 1.2 core schema does: null, ~ and nothing are null;
 * true/false (any case) booleans; JSON-shaped integers and floats numbers; the rest strings.
 * Plain scalars that YAML 1.1 readers (PyYAML, most tools) would read differently are refused
 * ("quote it"): yes/no/on/off/y/n, leading zeros or '+', 1_000, 0x1F, 1:30, .5, 1., .inf,
 * dates. Tabs in indentation, anchors, aliases, tags, complex keys, folded blocks and
 * multi-line plain scalars are refused too.
 *
 * The ETag is "<FNV-1a 64 of the JSON, hex>", as console-embed makes them. OUT.c is written
 * through OUT.c.tmp and a rename. Exit status 0, or 1 with a message. C library only. */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ==== Output buffer ==== */

typedef struct { char *p; size_t n, cap; } buf;

static void put(buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 65536;
        while (cap < b->n + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) { fprintf(stderr, "openapi-embed: out of memory\n"); exit(1); }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

/* A JSON string literal of s[0..n). */
static void put_str(buf *b, const char *s, size_t n) {
    puts_(b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[8];
        if (c == '"' || c == '\\') { e[0] = '\\'; e[1] = (char)c; put(b, e, 2); }
        else if (c == '\n') puts_(b, "\\n");
        else if (c < 0x20 || c == 0x7f) { snprintf(e, sizeof e, "\\u%04x", c); puts_(b, e); }
        else put(b, (const char *)&c, 1);
    }
    puts_(b, "\"");
}

/* ==== Input ==== */

static const char *path;
static char **lines; /* without line ends */
static int nlines, li; /* li: the next line to read */

static void die(int line, const char *fmt, const char *arg) {
    fprintf(stderr, "%s:%d: ", path, line + 1);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    exit(1);
}

static int indent_of(const char *s) {
    int n = 0;
    while (s[n] == ' ') n++;
    return n;
}

/* Blank or a comment only. */
static int insignificant(const char *s) {
    s += indent_of(s);
    return !*s || *s == '#';
}

/* Moves li to the next significant line; returns its indentation, or -1 at the end. */
static int next_indent(void) {
    while (li < nlines && insignificant(lines[li])) li++;
    return li < nlines ? indent_of(lines[li]) : -1;
}

/* ==== Scalars ==== */

static int all(const char *s, size_t n, const char *set) {
    for (size_t i = 0; i < n; i++) if (!strchr(set, s[i])) return 0;
    return n > 0;
}

static int one_of(const char *s, size_t n, const char *const *words) {
    for (int i = 0; words[i]; i++) if (strlen(words[i]) == n && !memcmp(s, words[i], n)) return 1;
    return 0;
}

/* A JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)? */
static int json_number(const char *s, size_t n) {
    size_t i = 0;
    if (i < n && s[i] == '-') i++;
    if (i >= n || !isdigit((unsigned char)s[i])) return 0;
    if (s[i] == '0') i++;
    else while (i < n && isdigit((unsigned char)s[i])) i++;
    if (i < n && s[i] == '.') {
        i++;
        if (i >= n || !isdigit((unsigned char)s[i])) return 0;
        while (i < n && isdigit((unsigned char)s[i])) i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= n || !isdigit((unsigned char)s[i])) return 0;
        while (i < n && isdigit((unsigned char)s[i])) i++;
    }
    return i == n;
}

/* Emits the plain scalar s[0..n) (already trimmed) resolved by the YAML 1.2 core schema;
 * refuses what YAML 1.1 would resolve otherwise. */
static void plain(buf *b, const char *s, size_t n, int line) {
    static const char *const NULLS[] = {"null", "Null", "NULL", "~", NULL};
    static const char *const TRUES[] = {"true", "True", "TRUE", NULL};
    static const char *const FALSES[] = {"false", "False", "FALSE", NULL};
    static const char *const YAML11[] = {"y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON",
                                         "off", "Off", "OFF", "=", "<<", NULL};
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%.*s", (int)(n < 200 ? n : 200), s);
    if (n == 0 || one_of(s, n, NULLS)) { puts_(b, "null"); return; }
    if (one_of(s, n, TRUES)) { puts_(b, "true"); return; }
    if (one_of(s, n, FALSES)) { puts_(b, "false"); return; }
    if (one_of(s, n, YAML11)) die(line, "plain scalar '%s' means a boolean or more to YAML 1.1 readers: quote it", tmp);
    if (strchr("!&*%@`|>?", s[0]) || (s[0] == '-' && n > 1 && s[1] == ' '))
        die(line, "unsupported YAML (tag, anchor, alias, directive or indicator): '%s'", tmp);
    if (json_number(s, n)) { put(b, s, n); return; }
    /* what YAML 1.1 reads as numbers or dates but JSON does not write that way */
    size_t k = s[0] == '-' || s[0] == '+' || s[0] == '.' ? 1 : 0;
    int numeric = k < n && (isdigit((unsigned char)s[k]) || s[k] == '.') && all(s + k, n - k, "0123456789._:eE+-xXoObBabcdefABCDEF");
    int special = one_of(s + k, n - k, (const char *const[]){"inf", "Inf", "INF", ".inf", ".Inf", ".INF", "nan", "NaN", "NAN",
                                                            ".nan", ".NaN", ".NAN", NULL});
    int date = n >= 8 && all(s, 4, "0123456789") && s[4] == '-';
    int dots = 0;
    for (size_t i = 0; i < n; i++) dots += s[i] == '.';
    /* 0.1.0 or 3.0.3 (versions) are strings to every reader; 1.5e3x is a string too */
    if ((numeric && dots < 2 && isdigit((unsigned char)s[n - 1])) || (numeric && s[n - 1] == '.') || special || date ||
        (numeric && dots < 2 && s[0] == '.'))
        die(line, "plain scalar '%s' is a number or date to some YAML readers but not valid JSON: quote it or write it as JSON does", tmp);
    put_str(b, s, n);
}

/* A plain key must read as a string to every reader (JSON keys are strings): refuses the
 * words that resolve to null or booleans. */
static void plain_key(buf *b, const char *s, size_t n, int line) {
    static const char *const WORDS[] = {"null", "Null", "NULL", "~", "true", "True", "TRUE", "false", "False", "FALSE", "y", "Y",
                                        "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF",
                                        "<<", "=", NULL};
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%.*s", (int)(n < 200 ? n : 200), s);
    if (!n || one_of(s, n, WORDS) || strchr("!&*%@`|>?{[", s[0])) die(line, "key '%s' is not a plain string to every YAML reader: quote it", tmp);
    put_str(b, s, n);
}

/* A quoted scalar starting at s (a quote); emits it and returns the position after it. */
static const char *quoted(buf *b, const char *s, int line) {
    char q = *s++;
    buf v = {0};
    put(&v, "", 0);
    for (;;) {
        if (!*s) die(line, "unterminated %s-quoted string (multi-line quoted scalars are not supported)", q == '"' ? "double" : "single");
        if (q == '\'' && *s == '\'') {
            if (s[1] == '\'') { put(&v, "'", 1); s += 2; continue; }
            s++;
            break;
        }
        if (q == '"' && *s == '"') { s++; break; }
        if (q == '"' && *s == '\\') {
            static const char from[] = "\"\\/ntrbf", to[] = "\"\\/\n\t\r\b\f";
            char c = *++s;
            const char *m = c ? strchr(from, c) : NULL;
            s++;
            if (m) {
                put(&v, &to[m - from], 1);
                continue;
            }
            if (c != 'u') die(line, "unsupported escape in a double-quoted string%s", "");
            unsigned cp = 0;
            for (int i = 0; i < 4; i++) {
                if (!isxdigit((unsigned char)s[i])) die(line, "bad \\u escape%s", "");
                cp = cp * 16 + (unsigned)(isdigit((unsigned char)s[i]) ? s[i] - '0' : tolower((unsigned char)s[i]) - 'a' + 10);
            }
            s += 4;
            if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF)) die(line, "\\u0000 and surrogate escapes are not supported%s", "");
            char u[3];
            int k = 0;
            if (cp < 0x80) u[k++] = (char)cp;
            else if (cp < 0x800) { u[k++] = (char)(0xC0 | (cp >> 6)); u[k++] = (char)(0x80 | (cp & 0x3F)); }
            else { u[k++] = (char)(0xE0 | (cp >> 12)); u[k++] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[k++] = (char)(0x80 | (cp & 0x3F)); }
            put(&v, u, (size_t)k);
            continue;
        }
        put(&v, s, 1);
        s++;
    }
    put_str(b, v.p, v.n);
    free(v.p);
    return s;
}

/* ==== Flow collections ==== */

static const char *skip_ws(const char *s) {
    while (*s == ' ') s++;
    return s;
}

static const char *flow_value(buf *b, const char *s, int line);

/* A plain scalar in flow context ends at , [ ] { } or ": "/":" before , ] } or the end. */
static const char *flow_plain_end(const char *s) {
    const char *e = s;
    while (*e && !strchr(",[]{}", *e)) {
        if (*e == ':' && (e[1] == ' ' || e[1] == 0 || strchr(",]}", e[1]))) break;
        if (*e == ' ' && e[1] == '#') break;
        e++;
    }
    return e;
}

/* A key (quoted or plain) in flow context: emitted as a JSON string; returns the position after it. */
static const char *flow_key(buf *b, const char *s, int line) {
    if (*s == '"' || *s == '\'') return quoted(b, s, line);
    const char *e = flow_plain_end(s);
    size_t n = (size_t)(e - s);
    while (n && s[n - 1] == ' ') n--;
    plain_key(b, s, n, line);
    return e;
}

static const char *expect_colon(const char *s, int line) {
    s = skip_ws(s);
    if (*s != ':') die(line, "expected ':' after a key in a flow collection near '%s'", s);
    return skip_ws(s + 1);
}

/* Checks that key (the JSON text just written at b->p + at) does not repeat one of the mapping's. */
typedef struct { size_t at[512]; int n; } keyset;

static void key_once(buf *b, keyset *ks, size_t at, int line) {
    size_t len = b->n - at;
    for (int i = 0; i < ks->n; i++) {
        /* both are JSON string literals in b: compare up to the closing quote */
        const char *x = b->p + ks->at[i], *y = b->p + at;
        size_t xl = 1;
        while (x[xl] != '"') xl += x[xl] == '\\' ? 2 : 1;
        if (xl + 1 == len && !memcmp(x, y, len)) {
            char k[200];
            snprintf(k, sizeof k, "%.*s", (int)(len < 190 ? len : 190), y);
            die(line, "duplicate key %s", k);
        }
    }
    if (ks->n < 512) ks->at[ks->n++] = at;
}

static const char *flow_mapping(buf *b, const char *s, int line) {
    keyset ks = {.n = 0};
    puts_(b, "{");
    s = skip_ws(s + 1);
    int first = 1;
    while (*s != '}') {
        if (!*s) die(line, "unterminated flow mapping%s", "");
        if (!first) puts_(b, ",");
        size_t at = b->n;
        s = flow_key(b, s, line);
        key_once(b, &ks, at, line);
        puts_(b, ":");
        s = expect_colon(s, line);
        s = skip_ws(flow_value(b, s, line));
        first = 0;
        if (*s == ',') s = skip_ws(s + 1);
        else if (*s != '}') die(line, "expected ',' or '}' in a flow mapping near '%s'", s);
    }
    puts_(b, "}");
    return s + 1;
}

static const char *flow_sequence(buf *b, const char *s, int line) {
    puts_(b, "[");
    s = skip_ws(s + 1);
    int first = 1;
    while (*s != ']') {
        if (!*s) die(line, "unterminated flow sequence%s", "");
        if (!first) puts_(b, ",");
        /* an entry "key: value" is a single-pair mapping */
        const char *e = (*s == '"' || *s == '\'' || *s == '{' || *s == '[') ? NULL : flow_plain_end(s);
        if (e && *e == ':') {
            puts_(b, "{");
            s = flow_key(b, s, line);
            puts_(b, ":");
            s = expect_colon(s, line);
            s = flow_value(b, s, line);
            puts_(b, "}");
        } else {
            size_t mark = b->n;
            s = flow_value(b, s, line);
            const char *t = skip_ws(s);
            if (*t == ':') { /* "quoted": value, a single-pair mapping too */
                size_t kl = b->n - mark;
                char *k = malloc(kl + 1);
                if (!k) { fprintf(stderr, "openapi-embed: out of memory\n"); exit(1); }
                memcpy(k, b->p + mark, kl + 1);
                b->n = mark;
                puts_(b, "{");
                put(b, k, kl);
                free(k);
                puts_(b, ":");
                s = flow_value(b, skip_ws(t + 1), line);
                puts_(b, "}");
            }
        }
        s = skip_ws(s);
        first = 0;
        if (*s == ',') s = skip_ws(s + 1);
        else if (*s != ']') die(line, "expected ',' or ']' in a flow sequence near '%s'", s);
    }
    puts_(b, "]");
    return s + 1;
}

static const char *flow_value(buf *b, const char *s, int line) {
    s = skip_ws(s);
    if (*s == '{') return flow_mapping(b, s, line);
    if (*s == '[') return flow_sequence(b, s, line);
    if (*s == '"' || *s == '\'') return quoted(b, s, line);
    const char *e = flow_plain_end(s);
    size_t n = (size_t)(e - s);
    while (n && s[n - 1] == ' ') n--;
    plain(b, s, n, line);
    return e;
}

/* The rest of a line after a value: nothing, or a comment. */
static void line_end(const char *s, int line) {
    s = skip_ws(s);
    if (*s && *s != '#') die(line, "unexpected text after a value: '%s'", s);
}

/* ==== Block structure ==== */

static void block_node(buf *b, int ind);

/* Where the ':' of a block mapping entry is in s (its content), or NULL if s is not one. */
static const char *entry_colon(const char *s) {
    if (*s == '{' || *s == '[' || *s == '|' || *s == '>' || *s == '#') return NULL;
    if (*s == '"' || *s == '\'') {
        char q = *s;
        const char *e = s + 1;
        while (*e && !(*e == q && !(q == '\'' && e[1] == '\''))) e += (q == '"' && *e == '\\' && e[1]) ? 2 : (q == '\'' && *e == '\'') ? 2 : 1;
        if (!*e) return NULL;
        e = skip_ws(e + 1);
        return *e == ':' && (e[1] == ' ' || !e[1]) ? e : NULL;
    }
    for (const char *e = s; *e; e++) {
        if (*e == ' ' && e[1] == '#') return NULL;
        if (*e == ':' && (e[1] == ' ' || !e[1])) return e;
    }
    return NULL;
}

/* A literal block scalar ("|" or "|-") of the lines below the current one, indented more than ind. */
static void literal_block(buf *b, const char *header, int ind, int line) {
    int strip = 0;
    if (!strcmp(header, "|-")) strip = 1;
    else if (strcmp(header, "|")) die(line, "only the block scalars | and |- are supported, not '%s'", header);
    li++;
    int content = -1, last = li;
    buf v = {0};
    put(&v, "", 0);
    int pending_blank = 0;
    for (; li < nlines; li++) {
        const char *s = lines[li];
        int in = indent_of(s);
        if (!s[in]) { pending_blank++; continue; }
        if (content < 0) {
            if (in <= ind) break;
            content = in;
        }
        if (in < content) break;
        for (; pending_blank; pending_blank--) put(&v, "\n", 1);
        put(&v, s + content, strlen(s + content));
        put(&v, "\n", 1);
        last = li + 1;
    }
    li = last; /* trailing blank lines belong to what follows */
    if (strip) while (v.n && v.p[v.n - 1] == '\n') v.p[--v.n] = 0;
    put_str(b, v.p, v.n);
    free(v.p);
}

/* A value given on its key's (or dash's) line: the rest of the line s, with the line's
 * indentation ind for blocks below it. Flow collections may continue on following lines. */
static void inline_value(buf *b, const char *s, int ind) {
    int line = li;
    if (*s == '|' || *s == '>') {
        char h[8];
        snprintf(h, sizeof h, "%.*s", (int)strcspn(s, " #"), s);
        line_end(s + strlen(h), line);
        literal_block(b, h, ind, line);
        return;
    }
    if (*s == '{' || *s == '[') {
        /* join lines until the brackets balance (outside quotes) */
        buf t = {0};
        put(&t, "", 0);
        int depth = 0, q = 0, l = li;
        for (const char *p = s;; ) {
            for (; *p; p++) {
                if (q) { if (*p == q) q = 0; else if (q == '"' && *p == '\\' && p[1]) { put(&t, p, 1); p++; } }
                else if (*p == '"' || *p == '\'') q = *p;
                else if (*p == '{' || *p == '[') depth++;
                else if (*p == '}' || *p == ']') depth--;
                else if (*p == '#' && (p == s || p[-1] == ' ')) break; /* a comment ends the line */
                put(&t, p, 1);
            }
            if (depth <= 0 || q) break;
            if (++l >= nlines) die(line, "unterminated flow collection%s", "");
            put(&t, " ", 1);
            p = lines[l] + indent_of(lines[l]);
            if (indent_of(lines[l]) <= ind && *p) die(l, "a flow collection's continuation must be indented more than its key%s", "");
        }
        const char *e = flow_value(b, t.p, line);
        line_end(e, line);
        free(t.p);
        li = l + 1;
        return;
    }
    if (*s == '"' || *s == '\'') {
        line_end(quoted(b, s, line), line);
        li++;
        return;
    }
    size_t n = strlen(s);
    const char *c = strstr(s, " #");
    if (c) n = (size_t)(c - s);
    while (n && s[n - 1] == ' ') n--;
    plain(b, s, n, line);
    li++;
    int nx = next_indent();
    if (nx > ind && li < nlines) die(li, "unexpected indentation (multi-line plain scalars are not supported)%s", "");
}

static void mapping(buf *b, int ind) {
    keyset ks = {.n = 0};
    puts_(b, "{");
    int first = 1;
    while (next_indent() == ind) {
        const char *s = lines[li] + ind;
        if (s[0] == '-' && (s[1] == ' ' || !s[1])) break; /* a sequence at a key's indentation ended */
        const char *colon = entry_colon(s);
        if (!colon) die(li, "expected 'key: value', got '%s'", s);
        if (!first) puts_(b, ",");
        first = 0;
        size_t at = b->n;
        if (*s == '"' || *s == '\'') quoted(b, s, li);
        else {
            size_t n = (size_t)(colon - s);
            while (n && s[n - 1] == ' ') n--;
            plain_key(b, s, n, li);
        }
        key_once(b, &ks, at, li);
        puts_(b, ":");
        const char *rest = skip_ws(colon + 1);
        if (!*rest || *rest == '#') {
            int here = li;
            li++;
            int nx = next_indent();
            if (nx > ind) block_node(b, nx);
            else if (nx == ind && lines[li][ind] == '-' && (lines[li][ind + 1] == ' ' || !lines[li][ind + 1])) block_node(b, nx);
            else { (void)here; puts_(b, "null"); }
        } else {
            inline_value(b, rest, ind);
        }
    }
    puts_(b, "}");
}

static void sequence(buf *b, int ind) {
    puts_(b, "[");
    int first = 1;
    while (next_indent() == ind) {
        char *s = lines[li] + ind;
        if (!(s[0] == '-' && (s[1] == ' ' || !s[1]))) break;
        if (!first) puts_(b, ",");
        first = 0;
        const char *rest = skip_ws(s + 1);
        if (!*rest || *rest == '#') {
            li++;
            int nx = next_indent();
            if (nx > ind) block_node(b, nx);
            else puts_(b, "null");
            continue;
        }
        int at = (int)(rest - lines[li]);
        if (entry_colon(rest) || (rest[0] == '-' && (rest[1] == ' ' || !rest[1]))) {
            /* "- key: value" starts a mapping (or "- - x" a sequence) at the text's column:
             * blank the dash so the line reads as one of that block */
            memset(s, ' ', (size_t)(rest - s));
            block_node(b, at);
        } else {
            inline_value(b, rest, ind);
        }
    }
    puts_(b, "]");
}

/* The block node whose first line (the current one) is indented ind. */
static void block_node(buf *b, int ind) {
    const char *s = lines[li] + ind;
    if (s[0] == '-' && (s[1] == ' ' || !s[1])) sequence(b, ind);
    else if (entry_colon(s)) mapping(b, ind);
    else inline_value(b, s, ind - 1);
}

/* ==== Main ==== */

static char *read_all(const char *p, size_t *len) {
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    buf b = {0};
    char chunk[65536];
    size_t n;
    put(&b, "", 0);
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) put(&b, chunk, n);
    int bad = ferror(f);
    fclose(f);
    if (bad) { free(b.p); return NULL; }
    *len = b.n;
    return b.p;
}

static uint64_t fnv1a64(const char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 0x100000001b3u;
    return h;
}

int main(int argc, char **argv) {
    int json_only = argc == 3 && !strcmp(argv[1], "--json");
    if (argc != 3) {
        fprintf(stderr, "usage: %s OUT.c IN.yaml | --json IN.yaml\n", argv[0]);
        return 1;
    }
    path = argv[2];
    size_t len = 0;
    char *text = read_all(path, &len);
    if (!text) { perror(path); return 1; }
    if (memchr(text, 0, len)) die(0, "NUL byte in the file%s", "");
    /* split into lines; CR LF and LF both end a line */
    int cap = 1024;
    lines = malloc(sizeof *lines * (size_t)cap);
    for (char *p = text; p && *p;) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = 0;
        size_t n = strlen(p);
        if (n && p[n - 1] == '\r') p[n - 1] = 0;
        if (nlines == cap) lines = realloc(lines, sizeof *lines * (size_t)(cap *= 2));
        if (!lines) { fprintf(stderr, "openapi-embed: out of memory\n"); return 1; }
        lines[nlines++] = p;
        p = nl ? nl + 1 : NULL;
    }
    for (int i = 0; i < nlines; i++) {
        int in = indent_of(lines[i]);
        if (lines[i][in] == '\t') die(i, "a tab in the indentation%s", "");
        if (!strncmp(lines[i], "---", 3) || !strncmp(lines[i], "...", 3) || lines[i][0] == '%') {
            if (i == 0 && !strcmp(lines[0], "---")) { lines[0][0] = '#'; continue; }
            die(i, "more than one document, or a directive: '%s'", lines[i]);
        }
    }
    buf out = {0};
    int ind = next_indent();
    if (ind != 0) die(li < nlines ? li : 0, "the document must be a mapping starting in column 1%s", "");
    mapping(&out, 0);
    if (next_indent() >= 0) die(li, "unexpected text (wrong indentation?): '%s'", lines[li]);
    if (json_only) {
        fwrite(out.p, 1, out.n, stdout);
        putchar('\n');
        return ferror(stdout) ? 1 : 0;
    }
    const char *o = argv[1];
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", o) >= (int)sizeof tmp) { fprintf(stderr, "openapi-embed: path too long\n"); return 1; }
    FILE *f = fopen(tmp, "w");
    if (!f) { perror(tmp); return 1; }
    fprintf(f, "/* Generated by server/openapi/embed.c from %s: do not edit. */\n#include \"openapi.h\"\n\n", path);
    fprintf(f, "static const unsigned char DATA[%zu] = {", out.n);
    for (size_t k = 0; k < out.n; k++) fprintf(f, "%s%u,", k % 24 ? "" : "\n    ", (unsigned char)out.p[k]);
    fprintf(f, "\n};\n\nconst pd_console_file pd_openapi_file = {\"openapi.json\", \"application/json\", "
               "\"\\\"%016llx\\\"\", DATA, %zu};\n", (unsigned long long)fnv1a64(out.p, out.n), out.n);
    if (ferror(f) | fclose(f)) { fprintf(stderr, "openapi-embed: cannot write %s\n", tmp); remove(tmp); return 1; }
    if (rename(tmp, o)) { perror(o); remove(tmp); return 1; }
    free(out.p);
    free(lines);
    free(text);
    return 0;
}
