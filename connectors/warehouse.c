/* warehouse.c: warehouse tables, Avro row encoding, the Avro lake and the ClickHouse client. */
#include "warehouse.h"

#include "http.h"

#include "mem.h"

#include <avro.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

/* Generated from the .avsc files of schemas/ by the Makefile. */
typedef struct eddy__schema_src_s {
        const char *name, *json;
} eddy__schema_src_t;
extern const eddy__schema_src_t eddy__schemas[];

/* ---------------------------------------------------------------- encoding
 * (eddy_wbuf_* and eddy_avro_long/string/double/bool live in schemas/avro_codec.c) */

/* Decoding of row bodies, for ClickHouse's RowBinary. */
typedef struct rd_s {
        const unsigned char *p, *end;
        int bad;
} rd_t;

static int64_t rd_long(rd_t *r)
{
        uint64_t z = 0;
        for (int shift = 0; shift < 70; shift += 7) {
                if (r->p >= r->end) {
                        r->bad = 1;
                        return 0;
                }
                unsigned char c = *r->p++;
                z |= (uint64_t)(c & 0x7f) << shift;
                if (!(c & 0x80))
                        return (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
        }
        r->bad = 1;
        return 0;
}

static const char *rd_str(rd_t *r, size_t *n)
{
        int64_t l = rd_long(r);
        if (r->bad || l < 0 || l > r->end - r->p) {
                r->bad = 1;
                *n = 0;
                return "";
        }
        const char *s = (const char *)r->p;
        r->p += l;
        *n = (size_t)l;
        return s;
}

/* ---------------------------------------------------------------- tables */

static const char *schema_text(const char *name)
{
        for (const eddy__schema_src_t *s = eddy__schemas; s->name; s++)
                if (!strcmp(s->name, name))
                        return s->json;
        return NULL;
}

static int col_type(json_t *ty, eddy_wh_col_t *c)
{
        if (json_is_array(ty)) {
                /* ["null", T]: nullable T */
                if (json_array_size(ty) != 2 || !json_is_string(json_array_get(ty, 0)) ||
                    strcmp(json_string_value(json_array_get(ty, 0)), "null"))
                        return -1;
                c->nullable = 1;
                ty = json_array_get(ty, 1);
        }
        static const char *const names[] = {"string", "long", "int", "double", "boolean"};
        const char *s = json_string_value(ty);
        for (int i = 0; s && i < 5; i++)
                if (!strcmp(s, names[i])) {
                        c->type = (eddy_wh_type_t)i;
                        return 0;
                }
        return -1;
}

int eddy_wh_table_load(const char *name, eddy_wh_table_t *t, char *errstr, size_t errstr_size)
{
        static const char *const meta[EDDY_WH_META_COLS] = {"_topic", "_partition", "_offset",
                                                            "_seq"};
        static const eddy_wh_type_t meta_type[EDDY_WH_META_COLS] = {EDDY_WH_STRING, EDDY_WH_INT,
                                                                    EDDY_WH_LONG, EDDY_WH_LONG};
        memset(t, 0, sizeof(*t));
        const char *text = schema_text(name);
        if (!text) {
                snprintf(errstr, errstr_size, "warehouse table %s: no schemas/%s.avsc", name, name);
                return -1;
        }
        json_error_t jerr;
        json_t *root = json_loads(text, 0, &jerr);
        json_t *fields = root ? json_object_get(root, "fields") : NULL;
        if (!json_is_array(fields) || json_array_size(fields) <= EDDY_WH_META_COLS) {
                snprintf(errstr, errstr_size, "schemas/%s.avsc: not a record with fields", name);
                json_decref(root);
                return -1;
        }
        t->name = strdup(name);
        t->json = strdup(text);
        t->ncols = (int)json_array_size(fields);
        t->cols = calloc((size_t)t->ncols, sizeof(*t->cols));
        json_t *ident = json_object_get(root, "eddy.identity");
        for (int i = 0; i < t->ncols; i++) {
                json_t *f = json_array_get(fields, (size_t)i);
                const char *fname = json_string_value(json_object_get(f, "name"));
                eddy_wh_col_t *c = &t->cols[i];
                if (!fname || col_type(json_object_get(f, "type"), c)) {
                        snprintf(errstr, errstr_size,
                                 "schemas/%s.avsc: field %d: expected a name and a type among "
                                 "string, long, int, double, boolean or [\"null\", one of them]",
                                 name, i);
                        goto fail;
                }
                c->name = strdup(fname);
                int m = i - (t->ncols - EDDY_WH_META_COLS);
                if (m >= 0 && (strcmp(fname, meta[m]) || c->type != meta_type[m] || c->nullable)) {
                        snprintf(errstr, errstr_size,
                                 "schemas/%s.avsc: the last fields must be _topic string, "
                                 "_partition int, _offset long, _seq long; field %d is %s",
                                 name, i, fname);
                        goto fail;
                }
                size_t k;
                json_t *v;
                json_array_foreach(ident, k,
                                   v) if (json_is_string(v) && !strcmp(json_string_value(v), fname))
                    c->identity = 1;
                if (c->identity && c->nullable) {
                        snprintf(errstr, errstr_size,
                                 "schemas/%s.avsc: identity column %s can not be nullable", name,
                                 fname);
                        goto fail;
                }
        }
        avro_schema_t sch = NULL;
        if (avro_schema_from_json_length(text, strlen(text), &sch)) {
                snprintf(errstr, errstr_size, "schemas/%s.avsc: %s", name, avro_strerror());
                goto fail;
        }
        t->avro = sch;
        json_decref(root);
        return 0;
fail:
        json_decref(root);
        eddy_wh_table_free(t);
        return -1;
}

void eddy_wh_table_free(eddy_wh_table_t *t)
{
        if (!t)
                return;
        for (int i = 0; i < t->ncols; i++)
                free(t->cols[i].name);
        free(t->cols);
        free(t->name);
        free(t->json);
        if (t->avro)
                avro_schema_decref((avro_schema_t)t->avro);
        memset(t, 0, sizeof(*t));
}

/* ---------------------------------------------------------------- the lake */

static int fsync_path(const char *path)
{
        int fd = open(path, O_RDONLY);
        if (fd < 0)
                return -1;
        int rc = fsync(fd);
        close(fd);
        return rc;
}

/* mkdir -p */
static int mkdirs(char *path)
{
        for (char *s = path + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = '\0';
                int rc = mkdir(path, 0755);
                *s = '/';
                if (rc && errno != EEXIST)
                        return -1;
        }
        if (mkdir(path, 0755) && errno != EEXIST)
                return -1;
        return 0;
}

static uint64_t fnv1a64(const char *s, uint64_t h)
{
        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * 1099511628211ull;
        return h;
}

static int64_t hour_of(int64_t ts)
{
        return ts >= 0 ? ts / 3600000 : -((-ts + 3599999) / 3600000);
}

/* Appends one block of an object container file: row count, size, raw deflate data, sync. */
static int ocf_block(eddy_wbuf_t *out, const eddy_wbuf_t *raw, int64_t count,
                     const unsigned char sync[16])
{
        z_stream z;
        memset(&z, 0, sizeof(z));
        if (deflateInit2(&z, Z_BEST_SPEED, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
                return -1;
        size_t bound = deflateBound(&z, raw->len);
        eddy_wbuf_t zb = {eddy__xrealloc(NULL, bound), 0, bound};
        z.next_in = raw->p;
        z.avail_in = (uInt)raw->len;
        z.next_out = zb.p;
        z.avail_out = (uInt)bound;
        int rc = deflate(&z, Z_FINISH) == Z_STREAM_END ? 0 : -1;
        zb.len = z.total_out;
        deflateEnd(&z);
        if (!rc) {
                eddy_avro_long(out, count);
                eddy_avro_long(out, (int64_t)zb.len);
                eddy_wbuf_put(out, zb.p, zb.len);
                eddy_wbuf_put(out, sync, 16);
        }
        eddy_wbuf_free(&zb);
        return rc;
}

/* An Avro object container file of the @p n rows listed in @p idx, in memory: the header
 * (schema, codec deflate, a sync marker drawn from the file's name, so that the same rows
 * make the same bytes) and blocks of about 1 MiB of rows, each deflated at level 1.
 * eddy writes the container itself: avro-c's writer deflates at level 9, with no setting,
 * which cost the benchmark job 37% of its wall time (docs/warehouse.md). */
static int ocf_build(const eddy_wh_table_t *t, const char *name, const eddy_wh_row_t *rows,
                     const size_t *idx, size_t n, eddy_wbuf_t *out)
{
        unsigned char sync[16];
        uint64_t h1 = fnv1a64(name, 14695981039346656037ull), h2 = fnv1a64(name, h1 ^ 0x9e37);
        for (int i = 0; i < 8; i++) {
                sync[i] = (unsigned char)(h1 >> (8 * i));
                sync[8 + i] = (unsigned char)(h2 >> (8 * i));
        }
        eddy_wbuf_put(out, "Obj\x01", 4);
        eddy_avro_long(out, 2); /* metadata map: one block of 2 entries */
        eddy_avro_string(out, "avro.schema", 11);
        eddy_avro_string(out, t->json, strlen(t->json));
        eddy_avro_string(out, "avro.codec", 10);
        eddy_avro_string(out, "deflate", 7);
        eddy_avro_long(out, 0);
        eddy_wbuf_put(out, sync, 16);
        eddy_wbuf_t raw = {0};
        int64_t count = 0;
        int rc = 0;
        for (size_t k = 0; k < n && !rc; k++) {
                const eddy_wh_row_t *r = &rows[idx[k]];
                eddy_wbuf_put(&raw, r->body, r->len);
                count++;
                if (raw.len >= (1 << 20) || k + 1 == n) {
                        rc = ocf_block(out, &raw, count, sync);
                        raw.len = 0;
                        count = 0;
                }
        }
        eddy_wbuf_free(&raw);
        return rc;
}

/* One file of the @p n rows listed in @p idx, all in the same hour of event time. */
static int lake_file(const char *dir, const eddy_wh_table_t *t, const char *topic,
                     const eddy_wh_row_t *rows, const size_t *idx, size_t n, char *errstr,
                     size_t errstr_size)
{
        const eddy_wh_row_t *first = &rows[idx[0]], *last = &rows[idx[n - 1]];
        time_t secs = (time_t)(hour_of(first->ts) * 3600);
        struct tm tm;
        gmtime_r(&secs, &tm);
        char d[4096], name[512], path[4700], tmp[4700];
        snprintf(d, sizeof(d), "%s/%s/dt=%04d-%02d-%02d/hr=%02d", dir, t->name, tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour);
        /* A later roll can start at the offset where the previous one ended only when rows
         * came without new input at that offset; its first _seq then tells them apart. */
        if (first->seq > 0)
                snprintf(name, sizeof(name),
                         "part-%s-%" PRId32 "-%" PRId64 "-%" PRId64 ".%" PRId64 ".avro", topic,
                         first->partition, first->pos, last->pos, first->seq);
        else
                snprintf(name, sizeof(name), "part-%s-%" PRId32 "-%" PRId64 "-%" PRId64 ".avro",
                         topic, first->partition, first->pos, last->pos);
        snprintf(path, sizeof(path), "%s/%s", d, name);
        snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", d, name);
        if (mkdirs(d)) {
                snprintf(errstr, errstr_size, "lake: mkdir %s: %s", d, strerror(errno));
                return -1;
        }
        eddy_wbuf_t file = {0};
        if (ocf_build(t, name, rows, idx, n, &file)) {
                snprintf(errstr, errstr_size, "lake: %s: deflate failed", path);
                eddy_wbuf_free(&file);
                return -1;
        }
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        int rc = fd < 0 ? -1 : 0;
        for (size_t off = 0; !rc && off < file.len;) {
                ssize_t w = write(fd, file.p + off, file.len - off);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        rc = -1;
                else
                        off += (size_t)w;
        }
        if (!rc && fsync(fd))
                rc = -1;
        if (fd >= 0 && close(fd) && !rc)
                rc = -1;
        if (!rc && rename(tmp, path))
                rc = -1;
        if (!rc && fsync_path(d))
                rc = -1;
        if (rc) {
                snprintf(errstr, errstr_size, "lake: %s: %s", path, strerror(errno));
                unlink(tmp);
        }
        eddy_wbuf_free(&file);
        return rc;
}

static const eddy_wh_row_t *sort_rows;

static int hour_cmp(const void *a, const void *b)
{
        size_t x = *(const size_t *)a, y = *(const size_t *)b;
        int64_t hx = hour_of(sort_rows[x].ts), hy = hour_of(sort_rows[y].ts);
        if (hx != hy)
                return hx < hy ? -1 : 1;
        return x < y ? -1 : x > y; /* stable: rows keep their (pos, seq) order */
}

int eddy_lake_write(const char *dir, const eddy_wh_table_t *t, const char *topic,
                    const eddy_wh_row_t *rows, size_t nrows, char *errstr, size_t errstr_size)
{
        if (!nrows)
                return 0;
        size_t *idx = eddy__xrealloc(NULL, nrows * sizeof(*idx));
        for (size_t i = 0; i < nrows; i++)
                idx[i] = i;
        sort_rows = rows; /* only the committer thread writes the lake */
        qsort(idx, nrows, sizeof(*idx), hour_cmp);
        int rc = 0;
        for (size_t i = 0; i < nrows && !rc;) {
                size_t j = i + 1;
                while (j < nrows && hour_of(rows[idx[j]].ts) == hour_of(rows[idx[i]].ts))
                        j++;
                rc = lake_file(dir, t, topic, rows, idx + i, j - i, errstr, errstr_size);
                i = j;
        }
        free(idx);
        return rc;
}

/* ---------------------------------------------------------------- ClickHouse */

struct eddy_ch_s {
        CURL *curl;
        char *url, *user, *password, *database, *prefix;
        int create;
        long timeout_ms;
        eddy_wbuf_t resp;
};

eddy_ch_t *eddy_ch_new(const eddy_ch_conf_t *conf, char *errstr, size_t errstr_size)
{
        if (!conf->url || strncmp(conf->url, "http://", 7)) {
                snprintf(errstr, errstr_size,
                         "warehouse.url: expected http://host:port (ClickHouse's HTTP "
                         "interface), got \"%s\"",
                         conf->url ? conf->url : "");
                return NULL;
        }
        eddy_ch_t *ch = calloc(1, sizeof(*ch));
        if (!ch || !(ch->curl = curl_easy_init())) {
                snprintf(errstr, errstr_size, "warehouse: can not set up libcurl");
                free(ch);
                return NULL;
        }
        ch->url = strdup(conf->url);
        size_t ul = strlen(ch->url);
        while (ul > 7 && ch->url[ul - 1] == '/')
                ch->url[--ul] = '\0';
        ch->user = strdup(conf->user && *conf->user ? conf->user : "default");
        ch->password = strdup(conf->password ? conf->password : "");
        ch->database = strdup(conf->database && *conf->database ? conf->database : "default");
        ch->prefix = strdup(conf->table_prefix ? conf->table_prefix : "");
        ch->create = conf->create;
        ch->timeout_ms = (long)conf->timeout_ms;
        return ch;
}

void eddy_ch_destroy(eddy_ch_t *ch)
{
        if (!ch)
                return;
        curl_easy_cleanup(ch->curl);
        free(ch->url);
        if (ch->password)
                memset(ch->password, 0, strlen(ch->password));
        free(ch->password);
        free(ch->user);
        free(ch->database);
        free(ch->prefix);
        eddy_wbuf_free(&ch->resp);
        free(ch);
}

/* ClickHouse error codes a retry can not fix (schema and query errors). */
static int fatal_code(int code)
{
        static const int codes[] = {
            6,   /* CANNOT_PARSE_TEXT */
            16,  /* NO_SUCH_COLUMN_IN_TABLE */
            26,  /* CANNOT_PARSE_QUOTED_STRING */
            27,  /* CANNOT_PARSE_INPUT_ASSERTION_FAILED */
            36,  /* BAD_ARGUMENTS */
            44,  /* ILLEGAL_COLUMN */
            47,  /* UNKNOWN_IDENTIFIER */
            53,  /* TYPE_MISMATCH */
            60,  /* UNKNOWN_TABLE */
            62,  /* SYNTAX_ERROR */
            70,  /* CANNOT_CONVERT_TYPE */
            81,  /* UNKNOWN_DATABASE */
            117, /* INCORRECT_DATA */
            192, /* UNKNOWN_USER */
            193, /* WRONG_PASSWORD */
            497, /* ACCESS_DENIED */
        };
        for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
                if (codes[i] == code)
                        return 1;
        return 0;
}

/* One request: POST @p query (in the URL) with @p body. The response is in ch->resp. */
static int ch_request(eddy_ch_t *ch, const char *query, const void *body, size_t blen, int gzip,
                      const char *what, char *errstr, size_t errstr_size)
{
        CURL *c = ch->curl;
        char *q = curl_easy_escape(c, query, 0);
        char *db = curl_easy_escape(c, ch->database, 0);
        size_t ul = strlen(ch->url) + strlen(q) + strlen(db) + 64;
        char *url = malloc(ul);
        snprintf(url, ul, "%s/?database=%s&query=%s", ch->url, db, q);
        curl_free(q);
        curl_free(db);
        const char *hdrs[] = {"Content-Type: application/octet-stream",
                              gzip ? "Content-Encoding: gzip" : NULL, NULL};
        eddy_http_req_t rq = {url, hdrs, ch->user, ch->password, body, blen, ch->timeout_ms};
        long status;
        char err[CURL_ERROR_SIZE];
        int rc = eddy_http_post(c, &rq, &ch->resp, &status, err, sizeof(err));
        free(url);
        if (rc) {
                snprintf(errstr, errstr_size, "clickhouse %s: %s: %s", ch->url, what, err);
                return EDDY_CH_RETRY;
        }
        if (status == 200)
                return 0;
        int code = 0;
        const char *cs = strstr((const char *)ch->resp.p, "Code: ");
        if (cs)
                code = atoi(cs + 6);
        /* first line of ClickHouse's message, without the stack trace */
        const char *m = (const char *)ch->resp.p;
        size_t ml = strcspn(m, "\n");
        if (ml > 400)
                ml = 400;
        snprintf(errstr, errstr_size, "clickhouse %s: %s: HTTP %ld: %.*s", ch->url, what, status,
                 (int)ml, m);
        return fatal_code(code) || (status >= 400 && status < 500 && code == 0) ? EDDY_CH_FATAL
                                                                                : EDDY_CH_RETRY;
}

static const char *ch_type(const eddy_wh_col_t *c)
{
        static const char *const plain[] = {"String", "Int64", "Int32", "Float64", "UInt8"};
        static const char *const nul[] = {"Nullable(String)", "Nullable(Int64)", "Nullable(Int32)",
                                          "Nullable(Float64)", "Nullable(UInt8)"};
        return c->nullable ? nul[c->type] : plain[c->type];
}

/* @p s quoted with @p q (` for an identifier, ' for a string), \ and q escaped. */
static void sql_quote(eddy_wbuf_t *b, const char *s, char q)
{
        eddy_wbuf_put(b, &q, 1);
        for (; *s; s++) {
                if (*s == q || *s == '\\')
                        eddy_wbuf_put(b, "\\", 1);
                eddy_wbuf_put(b, s, 1);
        }
        eddy_wbuf_put(b, &q, 1);
}

static void table_name(eddy_ch_t *ch, const eddy_wh_table_t *t, eddy_wbuf_t *b)
{
        char n[512];
        snprintf(n, sizeof(n), "%s%s", ch->prefix, t->name);
        sql_quote(b, n, '`');
}

int eddy_ch_prepare(eddy_ch_t *ch, const eddy_wh_table_t *t, char *errstr, size_t errstr_size)
{
        eddy_wbuf_t q = {0};
        int rc = 0;
        if (ch->create) {
                eddy_wbuf_put(&q, "CREATE TABLE IF NOT EXISTS ", 27);
                table_name(ch, t, &q);
                eddy_wbuf_put(&q, " (", 2);
                for (int i = 0; i < t->ncols; i++) {
                        if (i)
                                eddy_wbuf_put(&q, ", ", 2);
                        sql_quote(&q, t->cols[i].name, '`');
                        eddy_wbuf_put(&q, " ", 1);
                        const char *ty = ch_type(&t->cols[i]);
                        eddy_wbuf_put(&q, ty, strlen(ty));
                }
                eddy_wbuf_put(&q, ") ENGINE = ReplacingMergeTree ORDER BY (", 40);
                int first = 1;
                for (int i = 0; i < t->ncols; i++) {
                        int meta = i >= t->ncols - EDDY_WH_META_COLS;
                        if (!t->cols[i].identity && !meta)
                                continue;
                        if (!first)
                                eddy_wbuf_put(&q, ", ", 2);
                        first = 0;
                        sql_quote(&q, t->cols[i].name, '`');
                }
                eddy_wbuf_put(&q, ")", 2); /* with the NUL */
                rc = ch_request(ch, (const char *)q.p, NULL, 0, 0, "create table", errstr,
                                errstr_size);
                q.len = 0;
        }
        if (!rc) {
                /* the columns must be the schema's, with the same types */
                eddy_wbuf_put(&q, "SELECT name, type FROM system.columns WHERE database = ", 55);
                sql_quote(&q, ch->database, '\'');
                eddy_wbuf_put(&q, " AND table = ", 13);
                char n[512];
                snprintf(n, sizeof(n), "%s%s", ch->prefix, t->name);
                sql_quote(&q, n, '\'');
                eddy_wbuf_put(&q, " FORMAT TabSeparated", 21);
                rc = ch_request(ch, (const char *)q.p, NULL, 0, 0, "describe table", errstr,
                                errstr_size);
        }
        if (!rc) {
                const char *resp = (const char *)ch->resp.p;
                if (!*resp) {
                        snprintf(errstr, errstr_size,
                                 "clickhouse: table %s.%s%s does not exist (set "
                                 "warehouse.create=true, or create it as docs/warehouse.md says)",
                                 ch->database, ch->prefix, t->name);
                        rc = EDDY_CH_FATAL;
                }
                for (int i = 0; i < t->ncols && !rc; i++) {
                        char want[600];
                        snprintf(want, sizeof(want), "%s\t%s\n", t->cols[i].name,
                                 ch_type(&t->cols[i]));
                        /* a whole line: "_topic\tString\n" also ends "imp_topic\tString\n" */
                        const char *hit = strstr(resp, want);
                        while (hit && hit != resp && hit[-1] != '\n')
                                hit = strstr(hit + 1, want);
                        if (hit)
                                continue;
                        /* name the column and what was found */
                        char found[128] = "no such column";
                        size_t nl = strlen(t->cols[i].name);
                        for (const char *l = resp; *l;
                             l = strchr(l, '\n') ? strchr(l, '\n') + 1 : l + strlen(l))
                                if (!strncmp(l, t->cols[i].name, nl) && l[nl] == '\t') {
                                        snprintf(found, sizeof(found), "type %.*s",
                                                 (int)strcspn(l + nl + 1, "\n"), l + nl + 1);
                                        break;
                                }
                        snprintf(errstr, errstr_size,
                                 "clickhouse: table %s.%s%s column %s: expected %s, found %s",
                                 ch->database, ch->prefix, t->name, t->cols[i].name,
                                 ch_type(&t->cols[i]), found);
                        rc = EDDY_CH_FATAL;
                }
        }
        eddy_wbuf_free(&q);
        return rc;
}

int eddy_ch_max_pos(eddy_ch_t *ch, const eddy_wh_table_t *t, const char *topic, int32_t partition,
                    int64_t *pos, int64_t *seq, char *errstr, size_t errstr_size)
{
        eddy_wbuf_t q = {0};
        eddy_wbuf_put(&q, "SELECT _offset, _seq FROM ", 26);
        table_name(ch, t, &q);
        eddy_wbuf_put(&q, " WHERE _topic = ", 16);
        sql_quote(&q, topic, '\'');
        char tail[128];
        snprintf(tail, sizeof(tail),
                 " AND _partition = %" PRId32
                 " ORDER BY _offset DESC, _seq DESC LIMIT 1 FORMAT TabSeparated",
                 partition);
        eddy_wbuf_put(&q, tail, strlen(tail) + 1);
        int rc = ch_request(ch, (const char *)q.p, NULL, 0, 0, "read the highest stored offset",
                            errstr, errstr_size);
        eddy_wbuf_free(&q);
        if (rc)
                return rc;
        *pos = *seq = -1;
        const char *resp = (const char *)ch->resp.p;
        if (*resp && sscanf(resp, "%" SCNd64 "\t%" SCNd64, pos, seq) != 2) {
                snprintf(errstr, errstr_size,
                         "clickhouse: unexpected answer to a max offset: %.80s", resp);
                return EDDY_CH_RETRY;
        }
        return 0;
}

static void le(eddy_wbuf_t *b, uint64_t v, int n)
{
        unsigned char o[8];
        for (int i = 0; i < n; i++, v >>= 8)
                o[i] = (unsigned char)v;
        eddy_wbuf_put(b, o, (size_t)n);
}

/* One row in ClickHouse's RowBinary: the columns in order, little-endian numbers, strings as
 * LEB128 length and bytes, Nullable as a null byte then the value. @returns -1 if the body
 * does not match the schema. */
static int row_binary(const eddy_wh_table_t *t, const eddy_wh_row_t *row, eddy_wbuf_t *b)
{
        rd_t r = {row->body, row->body + row->len, 0};
        for (int i = 0; i < t->ncols && !r.bad; i++) {
                const eddy_wh_col_t *c = &t->cols[i];
                if (c->nullable) {
                        int null = rd_long(&r) == 0;
                        le(b, null, 1);
                        if (null)
                                continue;
                }
                size_t n;
                const char *s;
                switch (c->type) {
                case EDDY_WH_STRING:
                        s = rd_str(&r, &n);
                        for (uint64_t v = n;; v >>= 7) {
                                unsigned char u = (unsigned char)(v & 0x7f) | (v > 0x7f ? 0x80 : 0);
                                eddy_wbuf_put(b, &u, 1);
                                if (v <= 0x7f)
                                        break;
                        }
                        eddy_wbuf_put(b, s, n);
                        break;
                case EDDY_WH_LONG:
                        le(b, (uint64_t)rd_long(&r), 8);
                        break;
                case EDDY_WH_INT:
                        le(b, (uint64_t)rd_long(&r), 4);
                        break;
                case EDDY_WH_DOUBLE:
                        if (r.end - r.p < 8) {
                                r.bad = 1;
                                break;
                        }
                        eddy_wbuf_put(b, r.p, 8); /* Avro doubles are little-endian too */
                        r.p += 8;
                        break;
                case EDDY_WH_BOOLEAN:
                        if (r.p >= r.end) {
                                r.bad = 1;
                                break;
                        }
                        le(b, *r.p++ ? 1 : 0, 1);
                        break;
                }
        }
        return r.bad || r.p != r.end ? -1 : 0;
}

static int gzip_buf(const eddy_wbuf_t *in, eddy_wbuf_t *out)
{
        z_stream z;
        memset(&z, 0, sizeof(z));
        if (deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
                return -1;
        size_t bound = deflateBound(&z, in->len) + 32;
        out->len = 0;
        if (out->cap < bound) {
                out->cap = bound;
                out->p = eddy__xrealloc(out->p, bound);
        }
        z.next_in = in->p;
        z.avail_in = (uInt)in->len;
        z.next_out = out->p;
        z.avail_out = (uInt)out->cap;
        int rc = deflate(&z, Z_FINISH);
        out->len = z.total_out;
        deflateEnd(&z);
        return rc == Z_STREAM_END ? 0 : -1;
}

int eddy_ch_insert(eddy_ch_t *ch, const eddy_wh_table_t *t, const eddy_wh_row_t *rows, size_t nrows,
                   char *errstr, size_t errstr_size)
{
        eddy_wbuf_t body = {0}, gz = {0}, q = {0};
        int rc = 0;
        for (size_t i = 0; i < nrows && !rc; i++)
                if (row_binary(t, &rows[i], &body)) {
                        snprintf(errstr, errstr_size,
                                 "warehouse table %s: a row of partition %" PRId32
                                 " offset %" PRId64 " does not match schemas/%s.avsc",
                                 t->name, rows[i].partition, rows[i].pos, t->name);
                        rc = EDDY_CH_FATAL;
                }
        if (!rc && gzip_buf(&body, &gz)) {
                snprintf(errstr, errstr_size, "clickhouse: gzip failed");
                rc = EDDY_CH_FATAL;
        }
        if (!rc) {
                eddy_wbuf_put(&q, "INSERT INTO ", 12);
                table_name(ch, t, &q);
                eddy_wbuf_put(&q, " FORMAT RowBinary", 18);
                char what[600];
                snprintf(what, sizeof(what), "insert %zu rows into %s", nrows, t->name);
                rc = ch_request(ch, (const char *)q.p, gz.p, gz.len, 1, what, errstr, errstr_size);
        }
        eddy_wbuf_free(&body);
        eddy_wbuf_free(&gz);
        eddy_wbuf_free(&q);
        return rc;
}
