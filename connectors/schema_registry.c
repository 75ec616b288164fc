/* schema_registry.c: the Confluent schema registry's REST API (GET /schemas/ids/{id},
 * POST /subjects/{subject}/versions) over one reused libcurl handle. Caching and retries are
 * the caller's (runtime/codec.c): this file makes one request per call. */
#include "schema_registry.h"

#include "mem.h"
#include "warehouse.h" /* eddy_wbuf_t */

#include <curl/curl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SR_MAX_RESPONSE (16 << 20) /* a schema larger than this is not one */

struct eddy_sr_s {
        CURL *curl;
        char *url, *user, *password;
        int64_t timeout_ms;
        eddy_wbuf_t resp;
        char curl_err[CURL_ERROR_SIZE];
};

static char *dupstr(const char *s)
{
        if (!s)
                return NULL;
        size_t n = strlen(s) + 1;
        char *d = eddy__xrealloc(NULL, n);
        memcpy(d, s, n);
        return d;
}

eddy_sr_t *eddy_sr_new(const eddy_sr_conf_t *conf, char *errstr, size_t errstr_size)
{
        if (!conf->url || (strncmp(conf->url, "http://", 7) && strncmp(conf->url, "https://", 8))) {
                snprintf(errstr, errstr_size,
                         "schema.registry.url: expected http://host:port or https://..., got "
                         "\"%s\"",
                         conf->url ? conf->url : "");
                return NULL;
        }
        eddy_sr_t *sr = calloc(1, sizeof(*sr));
        if (!sr || !(sr->curl = curl_easy_init())) {
                free(sr);
                snprintf(errstr, errstr_size, "schema registry: curl_easy_init failed");
                return NULL;
        }
        sr->url = dupstr(conf->url);
        size_t n = strlen(sr->url);
        while (n > 0 && sr->url[n - 1] == '/')
                sr->url[--n] = '\0';
        sr->user = conf->user && *conf->user ? dupstr(conf->user) : NULL;
        sr->password = dupstr(conf->password ? conf->password : "");
        sr->timeout_ms = conf->timeout_ms > 0 ? conf->timeout_ms : 5000;
        return sr;
}

void eddy_sr_destroy(eddy_sr_t *sr)
{
        if (!sr)
                return;
        curl_easy_cleanup(sr->curl);
        free(sr->url);
        free(sr->user);
        free(sr->password);
        eddy_wbuf_free(&sr->resp);
        free(sr);
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *opaque)
{
        eddy_wbuf_t *b = opaque;
        size_t n = size * nmemb;
        if (b->len + n > SR_MAX_RESPONSE)
                return 0; /* aborts the transfer */
        eddy_wbuf_put(b, p, n);
        return n;
}

/* One request; @returns the HTTP status (the body in sr->resp), or EDDY_SR_RETRY. */
static long request(eddy_sr_t *sr, const char *path, const char *body, char *errstr,
                    size_t errstr_size)
{
        CURL *c = sr->curl;
        char url[2048];
        snprintf(url, sizeof(url), "%s%s", sr->url, path);
        struct curl_slist *hdrs = NULL;
        hdrs = curl_slist_append(hdrs, "Accept: application/vnd.schemaregistry.v1+json, "
                                       "application/json");
        if (body)
                hdrs =
                    curl_slist_append(hdrs, "Content-Type: application/vnd.schemaregistry.v1+json");
        hdrs = curl_slist_append(hdrs, "Expect:");
        curl_easy_reset(c);
        curl_easy_setopt(c, CURLOPT_URL, url);
        if (body) {
                curl_easy_setopt(c, CURLOPT_POST, 1L);
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
                curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
        }
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
        if (sr->user) {
                curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
                curl_easy_setopt(c, CURLOPT_USERNAME, sr->user);
                curl_easy_setopt(c, CURLOPT_PASSWORD, sr->password);
        }
        sr->resp.len = 0;
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &sr->resp);
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, sr->curl_err);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)sr->timeout_ms);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)sr->timeout_ms);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
        sr->curl_err[0] = '\0';
        CURLcode cc = curl_easy_perform(c);
        curl_slist_free_all(hdrs);
        if (cc != CURLE_OK) {
                snprintf(errstr, errstr_size, "schema registry %s: %s", url,
                         sr->curl_err[0] ? sr->curl_err : curl_easy_strerror(cc));
                return EDDY_SR_RETRY;
        }
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        eddy_wbuf_put(&sr->resp, "", 1); /* NUL-terminated */
        sr->resp.len--;
        return status;
}

/* Maps a non-2xx status to EDDY_SR_*, with the registry's message. */
static int status_err(eddy_sr_t *sr, const char *what, long status, char *errstr,
                      size_t errstr_size)
{
        json_t *j = json_loadb((const char *)sr->resp.p, sr->resp.len, 0, NULL);
        const char *msg = j ? json_string_value(json_object_get(j, "message")) : NULL;
        snprintf(errstr, errstr_size, "schema registry %s: HTTP %ld%s%.300s", what, status,
                 msg ? ": " : "", msg ? msg : "");
        json_decref(j);
        if (status >= 500 || status == 429 || status == 408)
                return EDDY_SR_RETRY;
        if (status == 404)
                return EDDY_SR_NOTFOUND;
        return EDDY_SR_FATAL;
}

int eddy_sr_schema(eddy_sr_t *sr, int32_t id, char **schema, char *errstr, size_t errstr_size)
{
        char path[64], what[64];
        snprintf(path, sizeof(path), "/schemas/ids/%" PRId32, id);
        snprintf(what, sizeof(what), "schema id %" PRId32, id);
        long st = request(sr, path, NULL, errstr, errstr_size);
        if (st < 0)
                return (int)st;
        if (st < 200 || st > 299)
                return status_err(sr, what, st, errstr, errstr_size);
        json_t *j = json_loadb((const char *)sr->resp.p, sr->resp.len, 0, NULL);
        const char *s = j ? json_string_value(json_object_get(j, "schema")) : NULL;
        const char *ty = j ? json_string_value(json_object_get(j, "schemaType")) : NULL;
        int rc = 0;
        if (!s) {
                snprintf(errstr, errstr_size, "schema registry %s: an answer without \"schema\"",
                         what);
                rc = EDDY_SR_FATAL;
        } else if (ty && strcmp(ty, "AVRO")) {
                snprintf(errstr, errstr_size, "schema registry %s: a %s schema, not Avro", what,
                         ty);
                rc = EDDY_SR_FATAL;
        } else {
                *schema = dupstr(s);
        }
        json_decref(j);
        return rc;
}

int eddy_sr_register(eddy_sr_t *sr, const char *subject, const char *schema, int32_t *id,
                     char *errstr, size_t errstr_size)
{
        char *esc = curl_easy_escape(sr->curl, subject, 0);
        char path[1024];
        snprintf(path, sizeof(path), "/subjects/%s/versions", esc ? esc : subject);
        curl_free(esc);
        json_t *req = json_pack("{s:s}", "schema", schema);
        char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
        json_decref(req);
        if (!body) {
                snprintf(errstr, errstr_size, "schema registry: can not encode the request");
                return EDDY_SR_FATAL;
        }
        char what[600];
        snprintf(what, sizeof(what), "register under %.500s", subject);
        long st = request(sr, path, body, errstr, errstr_size);
        free(body);
        if (st < 0)
                return (int)st;
        if (st < 200 || st > 299)
                return status_err(sr, what, st, errstr, errstr_size);
        json_t *j = json_loadb((const char *)sr->resp.p, sr->resp.len, 0, NULL);
        json_t *ji = j ? json_object_get(j, "id") : NULL;
        int rc = 0;
        if (!json_is_integer(ji) || json_integer_value(ji) < 0 ||
            json_integer_value(ji) > INT32_MAX) {
                snprintf(errstr, errstr_size, "schema registry %s: an answer without an id", what);
                rc = EDDY_SR_FATAL;
        } else {
                *id = (int32_t)json_integer_value(ji);
        }
        json_decref(j);
        return rc;
}
