/* routes_console.c - GET / and GET /console/{file}: the operator's web console, embedded in
 * the binary (console.h), served from memory with its ETag (If-None-Match -> 304 without a
 * body) and the console's headers. Open and served before the model is ready (routes.c). */
#include "routes.h"

#include "console.h"

void pd_route_console(pd_req *r) {
    const pd_console_file *f = pd_console_lookup(r->path);
    if (!f) {
        pd_req_error(r, 404, "not_found", "no route %s %.200s", r->method, r->path);
        return;
    }
    int fresh = pd_console_etag_matches(f, pd_req_get_header(r, "If-None-Match"));
    for (int i = 0; pd_console_headers[i][0]; i++) pd_req_header(r, pd_console_headers[i][0], pd_console_headers[i][1]);
    pd_req_header(r, "ETag", f->etag);
    pd_req_reply_static(r, fresh ? 304 : 200, fresh ? NULL : f->content_type, f->data, fresh ? 0 : f->len);
}
