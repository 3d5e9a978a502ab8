/* log.h - the process log: one JSON object per line on stderr, each written with a single
 * write(2) so lines from many threads never interleave: {"ts", "level", "msg", ...}
 * (docs/API.md, "Logs"). Every layer logs through it (the server's start and stop, the
 * trainer's job lifecycle); the server's per-request access line is server/reqlog.h's.
 * Thread-safety: every function may be called from any thread. */
#ifndef PD_LOG_H
#define PD_LOG_H

#include "common.h"

/* One event line: {"ts", "level", "msg", extra}. extra is "" or a string of further members
 * starting with ',' (already JSON; pd_log_field builds it). */
void pd_log(const char *level, const char *msg, const char *extra);

/* Appends ,"key":value to the extra members in buf at *pos (bounded by cap): a JSON string
 * for str (escaped; NULL gives null), or the number num (10 significant digits, so steps and
 * counts print as integers). A member that does not fit is left out whole. */
void pd_log_str(char *buf, size_t cap, size_t *pos, const char *key, const char *str);
void pd_log_num(char *buf, size_t cap, size_t *pos, const char *key, double num);

/* Appends s as a JSON string literal (quotes included) into buf at *pos (bounded by cap):
 * control bytes and every byte >= 0x80 escaped as \u00XX (paths are not trusted to be UTF-8). */
void pd_json_escape(char *buf, size_t cap, size_t *pos, const char *s);

/* ISO 8601 UTC time with milliseconds, e.g. 2024-05-01T12:00:00.123Z. */
void pd_time_iso(char *buf, size_t cap);

#endif
