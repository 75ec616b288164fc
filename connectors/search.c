/* search.c: a search index over the _bulk API with external versions (libcurl, jansson).
 *
 * Documents are indexed with version_type=external: the index keeps a document's version and
 * refuses (409) an index or delete action whose version is not greater. The source position
 * of a change is its version, so a re-delivered or replayed action never moves a document
 * back; the refusal counts as done. */
#include "search.h"

#include "http.h"
#include "json.h"
#include "warehouse.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct eddy_search_s {
        CURL *curl;
        char *url, *user, *password;
        long timeout_ms;
        eddy_wbuf_t resp;
};

eddy_search_t *eddy_search_new(const eddy_search_conf_t *conf, char *errstr, size_t errstr_size)
{
        if (!conf->url || (strncmp(conf->url, "http://", 7) && strncmp(conf->url, "https://", 8))) {
                snprintf(errstr, errstr_size,
                         "search.url: expected http(s)://host:port (the _bulk API of Elasticsearch "
                         "or OpenSearch), got \"%s\"",
                         conf->url ? conf->url : "");
                return NULL;
        }
        eddy_search_t *s = calloc(1, sizeof(*s));
        if (!s || !(s->curl = curl_easy_init())) {
                snprintf(errstr, errstr_size, "search: can not set up libcurl");
                free(s);
                return NULL;
        }
        s->url = strdup(conf->url);
        size_t ul = strlen(s->url);
        while (ul > 8 && s->url[ul - 1] == '/')
                s->url[--ul] = '\0';
        s->user = conf->user && *conf->user ? strdup(conf->user) : NULL;
        s->password = strdup(conf->password ? conf->password : "");
        s->timeout_ms = (long)conf->timeout_ms;
        return s;
}

void eddy_search_destroy(eddy_search_t *s)
{
        if (!s)
                return;
        curl_easy_cleanup(s->curl);
        free(s->url);
        free(s->user);
        if (s->password)
                memset(s->password, 0, strlen(s->password));
        free(s->password);
        eddy_wbuf_free(&s->resp);
        free(s);
}

/* @p p as a JSON string literal (eddy_json_quote). */
static void json_str(eddy_wbuf_t *b, const void *p, size_t n)
{
        size_t at = b->len;
        eddy_wbuf_put(b, NULL, EDDY_JSON_QUOTED_MAX(n));
        b->len = at + eddy_json_quote((char *)b->p + at, p, n);
}

void eddy_search_action(eddy_wbuf_t *out, const char *index, const void *id, size_t idlen,
                        int64_t version, const void *doc, size_t doclen)
{
        const char *head = doc ? "{\"index\":{\"_index\":" : "{\"delete\":{\"_index\":";
        eddy_wbuf_put(out, head, strlen(head));
        json_str(out, index, strlen(index));
        eddy_wbuf_put(out, ",\"_id\":", 7);
        json_str(out, id, idlen);
        char v[64];
        int vl = snprintf(v, sizeof(v),
                          ",\"version\":%" PRId64 ",\"version_type\":\"external\"}}\n", version);
        eddy_wbuf_put(out, v, (size_t)vl);
        if (doc) {
                eddy_wbuf_put(out, doc, doclen);
                eddy_wbuf_put(out, "\n", 1);
        }
}

/* Reads the items of a bulk answer into @p res. @returns 0, or RETRY if an item may pass. */
static int read_items(json_t *items, eddy_search_result_t *res, char *errstr, size_t errstr_size)
{
        int retry = 0;
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it)
        {
                const char *action;
                json_t *body;
                json_object_foreach(it, action, body)
                {
                        int st = (int)json_integer_value(json_object_get(body, "status"));
                        if ((st >= 200 && st < 300) || (st == 404 && !strcmp(action, "delete"))) {
                                res->applied++; /* deleting what is not there: done too */
                        } else if (st == 409) {
                                res->stale++;
                        } else if (st == 429 || st >= 500 || st == 0) {
                                if (!retry)
                                        snprintf(errstr, errstr_size,
                                                 "search: _bulk item %zu: status %d", i, st);
                                retry = 1;
                        } else {
                                if (!res->rejected) {
                                        json_t *e = json_object_get(body, "error");
                                        char *et = e ? json_dumps(e, JSON_COMPACT) : NULL;
                                        const char *id =
                                            json_string_value(json_object_get(body, "_id"));
                                        snprintf(res->first_reject, sizeof(res->first_reject),
                                                 "%s %s: status %d %s", action, id ? id : "?", st,
                                                 et ? et : "");
                                        free(et);
                                }
                                res->rejected++;
                        }
                        break;
                }
        }
        return retry ? EDDY_SEARCH_RETRY : 0;
}

int eddy_search_bulk(eddy_search_t *s, const void *body, size_t len, eddy_search_result_t *res,
                     char *errstr, size_t errstr_size)
{
        memset(res, 0, sizeof(*res));
        size_t ul = strlen(s->url) + 16;
        char *url = malloc(ul);
        snprintf(url, ul, "%s/_bulk", s->url);
        static const char *const hdrs[] = {"Content-Type: application/x-ndjson", NULL};
        eddy_http_req_t rq = {url, hdrs, s->user, s->password, body, len, s->timeout_ms};
        long status;
        char err[CURL_ERROR_SIZE];
        int rc = eddy_http_post(s->curl, &rq, &s->resp, &status, err, sizeof(err));
        free(url);
        if (rc) {
                snprintf(errstr, errstr_size, "search: %s/_bulk: %s", s->url, err);
                return EDDY_SEARCH_RETRY;
        }
        const char *text = (const char *)s->resp.p;
        if (status == 429 || status >= 500) {
                snprintf(errstr, errstr_size, "search: %s/_bulk: HTTP %ld: %.200s", s->url, status,
                         text);
                return EDDY_SEARCH_RETRY;
        }
        if (status != 200) {
                snprintf(errstr, errstr_size, "search: %s/_bulk: HTTP %ld: %.200s", s->url, status,
                         text);
                return EDDY_SEARCH_FATAL;
        }
        json_error_t je;
        json_t *root = json_loadb(text, s->resp.len, 0, &je);
        json_t *items = root ? json_object_get(root, "items") : NULL;
        if (!json_is_array(items)) {
                snprintf(errstr, errstr_size, "search: %s/_bulk: not a bulk answer: %.200s", s->url,
                         text);
                json_decref(root);
                return EDDY_SEARCH_RETRY;
        }
        rc = read_items(items, res, errstr, errstr_size);
        json_decref(root);
        return rc;
}
