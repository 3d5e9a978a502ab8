/* test_routes.c - the route table (server/routes.c) against the OpenAPI description the server
 * serves at GET /openapi.json (server/openapi.h: docs/openapi.yaml converted at build time), both
 * ways: every documented path and operation is in the table and every table entry is
 * documented, with the same authentication class (security: [{}] = open, [bearer: []] = a write
 * that always needs the key, none = the key only with --auth-all), the same request body media
 * types, exactly the multipart fields the table reads (the schema's properties, $ref and allOf
 * resolved), a 401 response exactly where a key can be asked for, and a 503 wherever the route
 * can answer before the model is loaded only when it is not served then. Also: the metrics name
 * each route by its template, and the document is what docs/openapi.yaml says (the converter's
 * own check against PyYAML is tests/e2e/test_openapi.py). */
#include "test.h"

#include "metrics.h"
#include "openapi.h"
#include "routes.h"

#include <cJSON.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static cJSON *doc;

/* The object a local $ref ("#/components/schemas/X") names; NULL if it names nothing. */
static const cJSON *deref(const cJSON *v) {
    for (int hops = 0; hops < 16; hops++) {
        const cJSON *ref = cJSON_GetObjectItemCaseSensitive(v, "$ref");
        if (!cJSON_IsString(ref)) return v;
        if (strncmp(ref->valuestring, "#/", 2)) return NULL;
        char path[256];
        snprintf(path, sizeof path, "%s", ref->valuestring + 2);
        const cJSON *cur = doc;
        for (char *save = NULL, *tok = strtok_r(path, "/", &save); tok && cur; tok = strtok_r(NULL, "/", &save))
            cur = cJSON_GetObjectItemCaseSensitive(cur, tok);
        if (!cur) return NULL;
        v = cur;
    }
    return NULL;
}

/* Adds the property names of a schema (through $ref and allOf) to names[*n]. */
static void schema_props(const cJSON *schema, const char **names, int *n, int cap) {
    schema = deref(schema);
    if (!schema) return;
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(schema, "allOf")) schema_props(it, names, n, cap);
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(schema, "properties")) {
        int seen = 0;
        for (int i = 0; i < *n; i++) seen |= !strcmp(names[i], it->string);
        if (!seen && *n < cap) names[(*n)++] = it->string;
    }
}

/* 0 none, 1 open ([{}]), 2 bearer ([{bearer: []}]); -1 anything else. */
static int security_of(const cJSON *op) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(op, "security");
    if (!s) return 0;
    if (!cJSON_IsArray(s) || cJSON_GetArraySize(s) != 1) return -1;
    const cJSON *e = s->child;
    if (cJSON_IsObject(e) && !e->child) return 1;
    if (cJSON_IsObject(e) && cJSON_GetObjectItemCaseSensitive(e, "bearer") && !e->child->next) return 2;
    return -1;
}

static const cJSON *operation(const char *path, const char *method) {
    char m[16];
    size_t i = 0;
    for (; method[i] && i < sizeof m - 1; i++) m[i] = (char)tolower((unsigned char)method[i]);
    m[i] = 0;
    return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(doc, "paths"), path), m);
}

static int is_method_key(const char *k) {
    static const char *const M[] = {"get", "put", "post", "delete", "options", "head", "patch", "trace", NULL};
    for (int i = 0; M[i]; i++) if (!strcmp(k, M[i])) return 1;
    return 0;
}

int main(void) {
    const pd_console_file *f = &pd_openapi_file;
    CHECK(!strcmp(f->content_type, "application/json") && f->len > 1000);
    doc = cJSON_ParseWithLength((const char *)f->data, f->len);
    CHECKF(doc != NULL, "the embedded OpenAPI document is not JSON");
    if (!doc) return TEST_SUMMARY("test_routes");
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(doc, "openapi");
    CHECK(cJSON_IsString(ver) && !strncmp(ver->valuestring, "3.0.", 4));

    /* table -> document */
    int n_table = 0;
    for (int r = 0; r < PD_ROUTE_COUNT; r++) {
        const pd_route_def *d = &pd_routes[r];
        CHECKF(!strcmp(pd_route_name(r), d->path), "route %d name %s", r, pd_route_name(r));
        for (int k = 0; k < 3 && d->m[k].method; k++) {
            const pd_method_def *m = &d->m[k];
            n_table++;
            const cJSON *o = operation(d->path, m->method);
            CHECKF(o, "%s %s is served but not documented", m->method, d->path);
            if (!o) continue;
            int want_security = d->open ? 1 : m->write ? 2 : 0;
            CHECKF(security_of(o) == want_security, "%s %s: security %d in the document, %d in the table", m->method, d->path,
                   security_of(o), want_security);
            const cJSON *resp = cJSON_GetObjectItemCaseSensitive(o, "responses");
            CHECKF(!cJSON_GetObjectItemCaseSensitive(resp, "401") == !!d->open,
                   "%s %s: a 401 response must be documented exactly when a key can be asked", m->method, d->path);
            /* routes refused while the model loads answer 503 then (and every route while stopping
             * may; the ones served before ready document it where they can say not_ready) */
            if (!d->before_ready)
                CHECKF(cJSON_GetObjectItemCaseSensitive(resp, "503") != NULL, "%s %s: 503 (not_ready) is not documented",
                       m->method, d->path);
            const cJSON *content = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "requestBody"), "content");
            int json = m->body == PD_BODY_JSON || m->body == PD_BODY_EITHER;
            int multipart = m->body == PD_BODY_MULTIPART || m->body == PD_BODY_EITHER;
            int djson = cJSON_GetObjectItemCaseSensitive(content, "application/json") != NULL;
            const cJSON *dmp = cJSON_GetObjectItemCaseSensitive(content, "multipart/form-data");
            CHECKF(djson == json && !!dmp == multipart, "%s %s: body json %d multipart %d documented, %d %d served", m->method,
                   d->path, djson, !!dmp, json, multipart);
            CHECKF(!m->parts == !multipart, "%s %s: multipart fields only with a multipart body", m->method, d->path);
            if (dmp && m->parts) {
                const char *names[16];
                int n = 0;
                schema_props(cJSON_GetObjectItemCaseSensitive(dmp, "schema"), names, &n, 16);
                int q = 0;
                for (; m->parts[q]; q++) {
                    int found = 0;
                    for (int p = 0; p < n; p++) found |= !strcmp(names[p], m->parts[q]);
                    /* PUT takes the name from the path: its form documents "name" as optional */
                    CHECKF(found, "%s %s: field %s is read but not documented", m->method, d->path, m->parts[q]);
                }
                CHECKF(q == n, "%s %s: %d fields read, %d documented", m->method, d->path, q, n);
            }
        }
    }

    /* document -> table */
    int n_ops = 0;
    const cJSON *path;
    cJSON_ArrayForEach(path, cJSON_GetObjectItemCaseSensitive(doc, "paths")) {
        const cJSON *op;
        cJSON_ArrayForEach(op, path) {
            if (!is_method_key(op->string)) {
                CHECKF(!strcmp(op->string, "parameters") || !strcmp(op->string, "summary") || !strcmp(op->string, "description"),
                       "%s: unknown key %s", path->string, op->string);
                continue;
            }
            n_ops++;
            int found = 0;
            for (int r = 0; r < PD_ROUTE_COUNT && !found; r++)
                for (int k = 0; k < 3 && pd_routes[r].m[k].method; k++) {
                    char up[16];
                    size_t i = 0;
                    for (; op->string[i] && i < sizeof up - 1; i++) up[i] = (char)toupper((unsigned char)op->string[i]);
                    up[i] = 0;
                    found |= !strcmp(pd_routes[r].path, path->string) && !strcmp(pd_routes[r].m[k].method, up);
                }
            CHECKF(found, "%s %s is documented but not served", op->string, path->string);
        }
    }
    CHECKF(n_table == n_ops, "%d operations served, %d documented", n_table, n_ops);
    CHECKF(n_ops >= 15, "%d operations documented", n_ops);

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
    printf("%d operations in the route table, %d in /openapi.json\n", n_table, n_ops);
    cJSON_Delete(doc);
    return TEST_SUMMARY("test_routes");
}
