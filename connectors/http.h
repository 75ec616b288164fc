/* http.h: one POST over a reused libcurl handle, for the HTTP sinks (ClickHouse, search). */
#ifndef EDDY_HTTP_H
#define EDDY_HTTP_H

#include "warehouse.h"

#include <stddef.h>

typedef struct eddy_http_req_s {
        const char *url;
        const char *const *headers;  /* extra header lines, NULL-terminated; may be NULL */
        const char *user, *password; /* basic auth, when user is set */
        const void *body;
        size_t len;
        long timeout_ms; /* to connect; the whole request may take 6 times as long */
} eddy_http_req_t;

/**
 * @brief POSTs @p rq with @p curl (a CURL *, reset first: keep-alive connections stay).
 * @returns 0 with the HTTP status in @p status and the body in @p resp (NUL-terminated, the
 *          NUL not counted in resp->len); or -1 when no answer came, the reason in @p err.
 */
int eddy_http_post(void *curl, const eddy_http_req_t *rq, eddy_wbuf_t *resp, long *status,
                   char *err, size_t err_size);

#endif
