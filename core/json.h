/* json.h - reading JSON (cJSON) with types and ranges checked, in one place for every reader:
 * config.json, adapter configs, request bodies, training specs, job files.
 *
 * A reader looks key up in the object o. An absent key or a JSON null leaves *out as it was (the
 * caller's default) and returns PD_OK; a value of the wrong type returns PD_ERR_INVALID; a
 * number outside its range returns range_st, the caller's choice (the request parsers tell a
 * malformed request, HTTP 400, from an unusable value, 422). Messages name the value as
 * <where><key>: with where = "config." a message reads "config.r must be an integer".
 *
 * Writing lays JSON files out as the Hugging Face tools do (config.json and the like).
 *
 * Ownership: strings read point into o. Thread-safety: no state; cJSON_GetErrorPtr (a process
 * global) is never used. */
#ifndef PD_JSON_H
#define PD_JSON_H

#include "common.h"

#include <cJSON.h>

/* ==== Strict reading ====
 *
 * Every JSON text from outside (request bodies, JSON Lines, uploaded configs and labels) goes
 * through pd_json_check before cJSON sees it. cJSON is lenient (raw control characters in
 * strings, "01", "1.", invalid UTF-8 are accepted) and costs about 80 bytes per value, so a
 * dense body (60 MB of "1,") would take gigabytes. The check is one streaming pass in O(1)
 * memory (a bit per nesting level) that enforces RFC 8259's grammar exactly, strict UTF-8
 * (no overlong forms, no surrogates, nothing past U+10FFFF; escaped surrogates must pair),
 * refuses "\u0000" (cJSON's strings end at a NUL: a name "a\u0000b" would read as "a"), caps
 * the nesting at PD_JSON_MAX_DEPTH, and estimates what cJSON will allocate for the tree. */

#define PD_JSON_MAX_DEPTH 1000 /* cJSON's own CJSON_NESTING_LIMIT */

typedef struct pd_json_stats {
    size_t values;    /* every value, containers included */
    size_t strings;   /* string values and member names */
    size_t cost;      /* estimated bytes cJSON allocates for the tree (nodes and strings) */
    int depth;        /* deepest nesting */
} pd_json_stats;

/* Checks len bytes as exactly one JSON value with optional surrounding whitespace. PD_OK and
 * *st filled (st may be NULL), or PD_ERR_INVALID naming the problem and its byte offset. */
pd_status pd_json_check(const char *text, size_t len, pd_json_stats *st, char *err, size_t errlen);

/* After cJSON_Parse* returned NULL on len bytes of text: PD_ERR_NOMEM when the text is valid
 * JSON (so an allocation failed), else PD_ERR_FORMAT. For loaders that call cJSON directly. */
pd_status pd_json_parse_failure(const char *text, size_t len);

/* The budget pd_json_parse gives a tree: 8 bytes per byte of text plus a constant. */
#define PD_JSON_COST(len) ((size_t)(len) * 8 + ((size_t)4 << 20))

/* Parses len bytes as exactly one JSON value (whitespace may follow), after pd_json_check.
 * PD_ERR_INVALID with the byte offset of the problem; PD_ERR_TOO_LARGE when the tree would
 * cost more than PD_JSON_COST(len) (a text of tiny values: refused before anything is
 * allocated); PD_ERR_NOMEM. */
pd_status pd_json_parse(const char *text, size_t len, cJSON **out, char *err, size_t errlen);

/* pd_utf8_check (core/common.h) says whether s[0..n) is all valid UTF-8. */
static inline int pd_utf8_valid(const char *s, size_t n) { return pd_utf8_check(s, n) == n; }

/* Reads the file at path (at most max bytes) and parses it with pd_json_parse; a file that is
 * not valid JSON is PD_ERR_FORMAT, otherwise pd_read_file's errors. */
pd_status pd_json_read_file(const char *path, size_t max, cJSON **out, char *err, size_t errlen);

/* The member key of o, or NULL when o is not an object, key is absent or its value is null. */
const cJSON *pd_json_get(const cJSON *o, const char *key);

pd_status pd_json_bool(const cJSON *o, const char *key, const char *where, int *out, char *err, size_t errlen);
pd_status pd_json_str(const cJSON *o, const char *key, const char *where, const char **out, char *err, size_t errlen);

/* An integral number in [lo, hi]. */
pd_status pd_json_long(const cJSON *o, const char *key, const char *where, long lo, long hi, pd_status range_st, long *out,
                       char *err, size_t errlen);
pd_status pd_json_int(const cJSON *o, const char *key, const char *where, int lo, int hi, pd_status range_st, int *out,
                      char *err, size_t errlen);

/* Checks that every member of o is named in allowed (NULL-terminated). PD_ERR_INVALID naming
 * the first other one as "<where><key>: unknown <what> (known: ...)", with "; did you mean
 * \"<name>\"?" before the list when one is close (pd_suggest). */
pd_status pd_json_known(const cJSON *o, const char *where, const char *what, const char *const *allowed, char *err,
                        size_t errlen);

/* A finite number in [lo, hi], or (lo, hi] when lo_open. */
pd_status pd_json_num(const cJSON *o, const char *key, const char *where, double lo, int lo_open, double hi,
                      pd_status range_st, double *out, char *err, size_t errlen);

/* ==== Writing ==== */

/* Adds v (which may be NULL: an allocation failed) to object o under k, taking it over; on any
 * failure v is freed and *bad set. pd_json_set replaces o[k]. For building objects in a row of
 * calls with one check at the end. */
void pd_json_add(cJSON *o, const char *k, cJSON *v, int *bad);
void pd_json_set(cJSON *o, const char *k, cJSON *v, int *bad);

/* The compact text of v (cJSON_PrintUnformatted) with the guarantee that it is valid UTF-8:
 * a string that is not (it cannot come from outside: every reader checks, but a bug must not
 * make a client's JSON invalid) has each bad byte replaced by U+FFFD. NULL when out of memory. */
char *pd_json_print(const cJSON *v);

/* v as Python's json.dumps(indent=2) and the Hugging Face tools lay files out (cJSON_Print uses
 * tabs), ending in a newline: a malloc'd string, or NULL when out of memory. */
char *pd_json_print_indented(const cJSON *v);

/* Writes v (pd_json_print_indented) to path with pd_fs_write (fsync'd). */
pd_status pd_json_write_file(const char *path, const cJSON *v, char *err, size_t errlen);

#endif
