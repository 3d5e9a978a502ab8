/* openapi.h - the OpenAPI description of the HTTP API, embedded at build time: docs/openapi.yaml
 * (the one source) converted to JSON by server/openapi/embed.c, which the Makefile runs; GET
 * /openapi.json serves it from memory. The type is the console's embedded file (console.h):
 * bytes, content type and a strong ETag.
 * Ownership: static, read-only data. Thread-safety: none needed. */
#ifndef PD_OPENAPI_H
#define PD_OPENAPI_H

#include "console.h"

/* The generated definition (build/gen/openapi_json.c). */
extern const pd_console_file pd_openapi_file;

#endif
