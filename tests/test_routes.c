/* test_routes.c - the route table (server/routes.c) against docs/openapi.yaml, both ways:
 * every documented path and operation is in the table and every table entry is documented,
 * with the same authentication class (security: [{}] = open, [bearer: []] = a write that
 * always needs the key, none = the key only with --auth-all), the same request body media
 * types, the same multipart fields (for inline schemas), and a 401 response exactly where a
 * key can be asked for. Also: the metrics name each route by its template.
 *
 * The YAML is read line by line by indentation (the file's own layout: paths at 2 spaces,
 * operations at 4, their keys at 6), which is all this file needs. */
#include "test.h"

#include "metrics.h"
#include "routes.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define OPENAPI "docs/openapi.yaml"
#define MAX_OPS 64

typedef struct {
    char path[128];
    char method[8];   /* upper case */
    int security;     /* 0 none, 1 open ({}), 2 bearer */
    int json, multipart, has_401, n_parts;
    char parts[8][32];
} op;

static op ops[MAX_OPS];
static int n_ops;

static int indent_of(const char *s) {
    int n = 0;
    while (s[n] == ' ') n++;
    return n;
}

/* "  key:" or "  key: value" at indentation ind: copies key, returns 1. */
static int key_at(const char *line, int ind, char *key, size_t cap) {
    if (indent_of(line) != ind || line[ind] == '-' || line[ind] == '#') return 0;
    const char *s = line + ind, *c = strchr(s, ':');
    if (!c || (size_t)(c - s) >= cap) return 0;
    memcpy(key, s, (size_t)(c - s));
    key[c - s] = 0;
    return 1;
}

static int parse(void) {
    FILE *f = fopen(OPENAPI, "r");
    if (!f) return -1;
    char line[512], key[128], path[128] = "";
    int in_paths = 0, in_body = 0, in_content = 0, in_props = -1;
    op *cur = NULL;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0] || line[indent_of(line)] == 0) continue;
        int ind = indent_of(line);
        if (ind == 0) {
            in_paths = !strcmp(line, "paths:");
            cur = NULL;
            continue;
        }
        if (!in_paths) continue;
        if (ind == 2 && key_at(line, 2, key, sizeof key)) {
            snprintf(path, sizeof path, "%s", key);
            cur = NULL;
            continue;
        }
        if (ind == 4 && key_at(line, 4, key, sizeof key)) {
            cur = NULL;
            if (!strcmp(key, "parameters") || n_ops == MAX_OPS) continue;
            cur = &ops[n_ops++];
            memset(cur, 0, sizeof *cur);
            snprintf(cur->path, sizeof cur->path, "%s", path);
            for (size_t i = 0; key[i] && i < sizeof cur->method - 1; i++) cur->method[i] = (char)toupper((unsigned char)key[i]);
            in_body = in_content = 0;
            in_props = -1;
            continue;
        }
        if (!cur) continue;
        if (ind == 6) {
            in_body = key_at(line, 6, key, sizeof key) && !strcmp(key, "requestBody");
            in_content = 0;
            in_props = -1;
            if (key_at(line, 6, key, sizeof key) && !strcmp(key, "security")) {
                const char *v = strchr(line, ':') + 1;
                cur->security = strstr(v, "bearer") ? 2 : strstr(v, "{}") ? 1 : 0;
            }
            continue;
        }
        if (ind == 8 && key_at(line, 8, key, sizeof key)) {
            if (!strcmp(key, "\"401\"")) cur->has_401 = 1;
            in_content = in_body && !strcmp(key, "content");
            continue;
        }
        if (in_content && ind == 10 && key_at(line, 10, key, sizeof key)) {
            cur->json |= !strcmp(key, "application/json");
            cur->multipart |= !strcmp(key, "multipart/form-data");
            in_props = -1;
            continue;
        }
        /* inline multipart fields: "properties:" of the multipart schema, one key per field */
        if (in_content && cur->multipart && key_at(line, ind, key, sizeof key)) {
            if (in_props >= 0 && ind == in_props + 2 && cur->n_parts < 8)
                snprintf(cur->parts[cur->n_parts++], sizeof cur->parts[0], "%.31s", key);
            else if (in_props >= 0 && ind <= in_props)
                in_props = -1;
            if (in_props < 0 && !strcmp(key, "properties") && ind == 14) in_props = ind;
        }
    }
    fclose(f);
    return 0;
}

static const op *find_op(const char *path, const char *method) {
    for (int i = 0; i < n_ops; i++)
        if (!strcmp(ops[i].path, path) && !strcmp(ops[i].method, method)) return &ops[i];
    return NULL;
}

int main(void) {
    if (parse() != 0) {
        TEST_SKIP("%s not found (run from the repository root)", OPENAPI);
        return TEST_SUMMARY("test_routes");
    }
    CHECKF(n_ops >= 10, "%d operations in %s", n_ops, OPENAPI);

    /* table -> document */
    int n_table = 0;
    for (int r = 0; r < PD_ROUTE_COUNT; r++) {
        const pd_route_def *d = &pd_routes[r];
        CHECKF(!strcmp(pd_route_name(r), d->path), "route %d name %s", r, pd_route_name(r));
        for (int k = 0; k < 3 && d->m[k].method; k++) {
            const pd_method_def *m = &d->m[k];
            n_table++;
            const op *o = find_op(d->path, m->method);
            CHECKF(o, "%s %s is served but not in %s", m->method, d->path, OPENAPI);
            if (!o) continue;
            int want_security = d->open ? 1 : m->write ? 2 : 0;
            CHECKF(o->security == want_security, "%s %s: security %d in the document, %d in the table", m->method,
                   d->path, o->security, want_security);
            CHECKF(o->has_401 == !d->open, "%s %s: a 401 response must be documented exactly when a key can be asked",
                   m->method, d->path);
            int json = m->body == PD_BODY_JSON || m->body == PD_BODY_EITHER;
            int multipart = m->body == PD_BODY_MULTIPART || m->body == PD_BODY_EITHER;
            CHECKF(o->json == json && o->multipart == multipart, "%s %s: body json %d multipart %d documented, %d %d served",
                   m->method, d->path, o->json, o->multipart, json, multipart);
            CHECKF(!m->parts == !multipart, "%s %s: multipart fields only with a multipart body", m->method, d->path);
            /* inline multipart schemas list exactly the table's fields (uploads use UploadForm) */
            for (int p = 0; o->n_parts && m->parts && p < o->n_parts; p++) {
                int found = 0;
                for (int q = 0; m->parts[q]; q++) found |= !strcmp(m->parts[q], o->parts[p]);
                CHECKF(found, "%s %s: documented field %s is not read", m->method, d->path, o->parts[p]);
            }
            if (o->n_parts && m->parts) {
                int q = 0;
                while (m->parts[q]) q++;
                CHECKF(q == o->n_parts, "%s %s: %d fields read, %d documented", m->method, d->path, q, o->n_parts);
            }
        }
    }

    /* document -> table */
    for (int i = 0; i < n_ops; i++) {
        int found = 0;
        for (int r = 0; r < PD_ROUTE_COUNT && !found; r++)
            for (int k = 0; k < 3 && pd_routes[r].m[k].method; k++)
                found |= !strcmp(pd_routes[r].path, ops[i].path) && !strcmp(pd_routes[r].m[k].method, ops[i].method);
        CHECKF(found, "%s %s is documented but not served", ops[i].method, ops[i].path);
    }
    CHECKF(n_table == n_ops, "%d operations served, %d documented", n_table, n_ops);

    /* the metrics label requests by the table's templates, "other" when none matched */
    const char *names[PD_ROUTE_COUNT];
    for (int r = 0; r < PD_ROUTE_COUNT; r++) names[r] = pd_route_name(r);
    pd_metrics *m = pd_metrics_new(names, PD_ROUTE_COUNT);
    CHECK(m != NULL);
    if (m) {
        pd_metrics_request(m, PD_ROUTE_ADAPTER, 200, 0.001);
        pd_metrics_request(m, -1, 404, 0.001);
        pd_metrics_gauges g = {0};
        char *text = pd_metrics_render(m, &g);
        CHECK(text && strstr(text, "route=\"/adapters/{name}\""));
        CHECK(text && strstr(text, "route=\"other\""));
        free(text);
        pd_metrics_free(m);
    }
    CHECK(!strcmp(pd_route_name(-1), "other") && !strcmp(pd_route_name(PD_ROUTE_COUNT), "other"));
    printf("%d operations in the route table, %d in %s\n", n_table, n_ops, OPENAPI);
    return TEST_SUMMARY("test_routes");
}
