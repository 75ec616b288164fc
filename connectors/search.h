/* search.h: a search index (Elasticsearch / OpenSearch) over its _bulk HTTP API. */
#ifndef EDDY_SEARCH_H
#define EDDY_SEARCH_H

#include <stddef.h>
#include <stdint.h>

typedef struct eddy_search_s eddy_search_t;

typedef struct eddy_search_conf_s {
        const char *url; /* http(s)://host:9200 */
        const char *user, *password;
        int64_t timeout_ms;
} eddy_search_conf_t;

/** @returns the handle (no I/O yet), or NULL with @p errstr. Free with eddy_search_destroy(). */
eddy_search_t *eddy_search_new(const eddy_search_conf_t *conf, char *errstr, size_t errstr_size);
void eddy_search_destroy(eddy_search_t *s);

/**
 * @brief Appends one bulk action to @p out (NDJSON: the action line, then the document line
 *        for an index action): index @p doc (a JSON object) as document @p id of @p index
 *        with external version @p version, or delete the document when @p doc is NULL.
 */
struct eddy_wbuf_s;
void eddy_search_action(struct eddy_wbuf_s *out, const char *index, const void *id, size_t idlen,
                        int64_t version, const void *doc, size_t doclen);

/** What one bulk request did. */
typedef struct eddy_search_result_s {
        int64_t applied;  /* items indexed or deleted */
        int64_t stale;    /* items refused as not newer (409): a newer version is there */
        int64_t rejected; /* items refused for good (other 4xx: mapping, bad id ...) */
        char first_reject[256];
} eddy_search_result_t;

#define EDDY_SEARCH_RETRY -1 /* unreachable, timeout, 429, 5xx, an item 429/5xx: retry all */
#define EDDY_SEARCH_FATAL -2 /* 401/403/404 and other answers a retry will not fix */

/**
 * @brief POSTs @p body (actions from eddy_search_action()) to <url>/_bulk.
 * @returns 0 with @p res filled, or EDDY_SEARCH_RETRY / EDDY_SEARCH_FATAL with @p errstr.
 * @remark Every action carries its version, so sending a body again is harmless: what was
 *         applied comes back as stale.
 */
int eddy_search_bulk(eddy_search_t *s, const void *body, size_t len, eddy_search_result_t *res,
                     char *errstr, size_t errstr_size);

#endif
