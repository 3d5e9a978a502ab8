/* multipart.h - multipart/form-data (RFC 7578 on RFC 2046 5.1) read strictly from a whole body
 * in memory (issue 17, finding 4; it replaced libmicrohttpd's post processor, which ignored a
 * part without a name or a Content-Disposition, cut a name at a NUL, refused an epilogue and
 * an unquoted name, and did not tell an empty first copy of a part from no part).
 *
 * A preamble and an epilogue are allowed (ignored); delimiter lines end with CRLF (transport
 * padding of spaces and tabs before it allowed); every part needs a Content-Disposition of
 * form-data with a name (a quoted string or a token, no NUL, not empty); its filename,
 * Content-Type and Content-Transfer-Encoding are ignored (the bytes are taken as they are).
 * A part's header block is at most 8 KiB. Parts are not copied: each part's data is a pointer
 * into the body, NUL-terminated in place (the CR of the delimiter after it is overwritten).
 *
 * Pure functions, no I/O: tests/test_multipart.c and the fuzz target multipart use them. */
#ifndef PD_MULTIPART_H
#define PD_MULTIPART_H

#include "common.h"

#define PD_MP_BOUNDARY_MAX 70 /* RFC 2046 */

/* The boundary parameter of a Content-Type (token or quoted string, 1..70 characters) into out
 * (cap > 70). Its length, or -1 when there is none or it is empty or too long. */
int pd_multipart_boundary(const char *content_type, char *out, size_t cap);

/* Called once per part, in order: its name (NUL-terminated) and data (len bytes, NUL at
 * data[len]). Nonzero stops the parse with PD_ERR_INVALID and the message the callback wrote
 * into err. */
typedef int (*pd_mp_part_fn)(void *arg, const char *name, char *data, size_t len, char *err, size_t errlen);

/* Parses body (len bytes, modified in place) with boundary. PD_OK, or PD_ERR_INVALID with a
 * message naming the problem (no delimiter, a malformed delimiter line, a part without a
 * name, a truncated body, no parts). */
pd_status pd_multipart_parse(char *body, size_t len, const char *boundary, pd_mp_part_fn fn, void *arg, char *err,
                             size_t errlen);

#endif
