/* http.c: one POST over a reused libcurl handle, for the HTTP sinks (ClickHouse, search). */
#include "http.h"

#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

static size_t on_body(char *p, size_t size, size_t n, void *opaque)
{
        eddy_wbuf_put(opaque, p, size * n);
        return size * n;
}

int eddy_http_post(void *curl, const eddy_http_req_t *rq, eddy_wbuf_t *resp, long *status,
                   char *err, size_t err_size)
{
        CURL *c = curl;
        char cerr[CURL_ERROR_SIZE] = "";
        struct curl_slist *hdrs = NULL;
        for (size_t i = 0; rq->headers && rq->headers[i]; i++)
                hdrs = curl_slist_append(hdrs, rq->headers[i]);
        hdrs = curl_slist_append(hdrs, "Expect:"); /* no 100-continue round trip */
        resp->len = 0;
        curl_easy_reset(c);
        curl_easy_setopt(c, CURLOPT_URL, rq->url);
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, rq->body ? rq->body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->len);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
        if (rq->user) {
                curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
                curl_easy_setopt(c, CURLOPT_USERNAME, rq->user);
                curl_easy_setopt(c, CURLOPT_PASSWORD, rq->password ? rq->password : "");
        }
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, resp);
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, rq->timeout_ms);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, rq->timeout_ms * 6);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
        CURLcode cc = curl_easy_perform(c);
        *status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL); /* cerr goes out of scope */
        curl_slist_free_all(hdrs);
        eddy_wbuf_put(resp, "", 1);
        resp->len--;
        if (cc != CURLE_OK) {
                snprintf(err, err_size, "%s", cerr[0] ? cerr : curl_easy_strerror(cc));
                return -1;
        }
        return 0;
}
