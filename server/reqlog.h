/* reqlog.h - the request log: every finished request gets one access line on stderr,
 * {"ts", "request_id", "method", "path", "status", "adapter", "version", "tokens", "ms"}
 * (docs/API.md, "Logs"), written like every other log line (core/log.h) with one write(2).
 * Thread-safety: callable from any thread. */
#ifndef PD_REQLOG_H
#define PD_REQLOG_H

#include "log.h"

/* One access line. adapter NULL and version 0 are logged as null. */
void pd_log_request(const char *request_id, const char *method, const char *path, int status, const char *adapter,
                    int version, long tokens, double seconds);

#endif
