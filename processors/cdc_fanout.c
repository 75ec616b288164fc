/* cdc_fanout.c: Debezium change events fanned out to a Redis row cache, a search index, the
 * warehouse and per-table topics, in source order per primary key (docs/cdc-fanout.md).
 *
 * State, per input partition (Debezium keys a table's topic by primary key, so a row's
 * changes all come through one partition):
 *   'k' table '\0' pk  ->  row: live (1 byte), then the source position of the last change
 *                          applied (kind 1 byte, three 8-byte big-endian numbers)
 *   'T' table          ->  the position of the last truncate applied (same encoding)
 * A change whose position is not newer than the row's, or than the table's last truncate, is
 * skipped: Debezium's duplicates after a connector restart, a replay, a snapshot read of a
 * row the stream already changed or a truncate removed.
 * Deleted rows keep their position, so an older create never brings them back.
 *
 * Outputs follow each applied change, in input order: Redis hash <prefix><table>:<pk> (or its
 * DEL), a search index action versioned by the position, a record on <topic.prefix>.<table>
 * (a tombstone for a delete), a cdc_change warehouse row. */
#include "cdc_fanout.h"
#include "eddy.h"
#include "json.h"

#include <inttypes.h>
#include <malloc.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct cdc_conf_s {
        char *table_from;
        char *redis_prefix;
        char *topic_prefix;
        char *index_prefix;
        char *routes;
        int64_t max_key_bytes;
} cdc_conf_t;

static const eddy_prop_t cdc_props[] = {
    {"table.from", EDDY_PROP_STR, "topic", 0, 0, offsetof(cdc_conf_t, table_from),
     "Where a change's table name comes from: topic (the last '.'-separated part of the topic "
     "name, as Debezium names topics <server>.<schema>.<table>) or source (source.table)"},
    {"redis.key.prefix", EDDY_PROP_STR, NULL, 0, 0, offsetof(cdc_conf_t, redis_prefix),
     "Prefix of the row cache's keys: <prefix><table>:<pk>"},
    {"topic.prefix", EDDY_PROP_STR, NULL, 0, 0, offsetof(cdc_conf_t, topic_prefix),
     "Derived topics: each table's rows go to <prefix>.<table>, keyed by primary key (empty: "
     "no derived topics)"},
    {"search.index.prefix", EDDY_PROP_STR, NULL, 0, 0, offsetof(cdc_conf_t, index_prefix),
     "Search index of a table: <prefix><table> (documents go out only when search.url is set)"},
    {"routes", EDDY_PROP_JSON, NULL, 0, 0, offsetof(cdc_conf_t, routes),
     "Per-table routes, {\"<table>\" or \"*\": {\"sinks\": [\"redis\", \"search\", "
     "\"warehouse\", \"topic\"], \"include\": [columns], \"exclude\": [columns], \"rename\": "
     "{\"column\": \"name\"}, \"index\": \"<index>\", \"topic\": \"<topic>\"}} (default: every "
     "sink, every column)"},
    {"max.key.bytes", EDDY_PROP_INT, "1024", 1, 65536, offsetof(cdc_conf_t, max_key_bytes),
     "Longest primary key text (its columns joined by ':'); a longer one goes to the "
     "dead-letter topic"},
    {NULL},
};

enum { S_REDIS = 1, S_SEARCH = 2, S_WAREHOUSE = 4, S_TOPIC = 8, S_ALL = 15 };

typedef struct route_s {
        char *table; /* "*": the default route */
        int sinks;
        char **include, **exclude, **from, **to;
        size_t ninclude, nexclude, nrename;
        char *index, *topic; /* NULL: from the prefixes */
} route_t;

/* A growable byte buffer. */
typedef struct buf_s {
        char *p;
        size_t len, cap;
} buf_t;

/* One column of an after-image, as parsed. */
typedef struct col_s {
        const char *name; /* unescaped, in cdc->names when the source had escapes */
        size_t nlen;
        size_t noff; /* offset in cdc->names, when escaped */
        int nesc;
        eddy_json_val_t v;
} col_t;

typedef struct cdc_s {
        const cdc_conf_t *conf;
        int from_source;
        route_t *routes;
        size_t nroutes;
        route_t all; /* when no route names a table and there is no "*" */
        col_t *cols;
        size_t ncols, ccap;
        buf_t names, vals, doc, key, tmp, skey;
        eddy_hfield_t *hf;
        size_t *voff; /* per field: its value's offset in vals */
        size_t hcap;
        int bad_after;
        eddy_counter_t *c_stale, *c_tombstones, *c_truncates;
} cdc_t;

/* Warehouse tables, in this order. */
static const char *const cdc_tables[] = {"cdc_change", NULL};

static void buf_put(buf_t *b, const void *p, size_t n)
{
        if (b->len + n + 1 > b->cap) {
                b->cap = (b->len + n + 1) * 2;
                if (!(b->p = realloc(b->p, b->cap)))
                        abort();
        }
        if (n && p)
                memcpy(b->p + b->len, p, n); /* p NULL: room the caller fills */
        b->len += n;
}

static void buf_str(buf_t *b, const char *s)
{
        buf_put(b, s, strlen(s));
}

/* @p s as a JSON string literal (eddy_json_quote). */
static void buf_json_str(buf_t *b, const char *s, size_t n)
{
        size_t at = b->len;
        buf_put(b, NULL, EDDY_JSON_QUOTED_MAX(n));
        b->len = at + eddy_json_quote(b->p + at, s, n);
}

/* ---- source positions ---- */

#define POS_PG    EDDY_CDC_POS_PG
#define POS_MYSQL EDDY_CDC_POS_MYSQL
typedef eddy_cdc_pos_t pos_t;

#define POS_BYTES 25

static void pos_encode(const pos_t *p, unsigned char *out)
{
        out[0] = (unsigned char)p->kind;
        uint64_t v[3] = {p->a, p->b, p->c};
        for (int k = 0; k < 3; k++)
                for (int i = 0; i < 8; i++)
                        out[1 + 8 * k + i] = (unsigned char)(v[k] >> (56 - 8 * i));
}

static int pos_decode(const unsigned char *in, size_t n, pos_t *p)
{
        if (n < POS_BYTES)
                return -1;
        p->kind = in[0];
        uint64_t v[3] = {0, 0, 0};
        for (int k = 0; k < 3; k++)
                for (int i = 0; i < 8; i++)
                        v[k] = (v[k] << 8) | in[1 + 8 * k + i];
        p->a = v[0];
        p->b = v[1];
        p->c = v[2];
        return 0;
}

/* Positions of different kinds (a connector moved from one database kind to another) compare
 * by kind. */
int eddy__cdc_pos_cmp(const pos_t *x, const pos_t *y)
{
        if (x->kind != y->kind)
                return x->kind < y->kind ? -1 : 1;
        if (x->a != y->a)
                return x->a < y->a ? -1 : 1;
        if (x->b != y->b)
                return x->b < y->b ? -1 : 1;
        if (x->c != y->c)
                return x->c < y->c ? -1 : 1;
        return 0;
}

/* The search version of a position: PostgreSQL its lsn; MySQL file number << 36 | pos. Both
 * grow with the position for the changes of one row (one row changes at most once per binlog
 * event, so the row number is not needed). */
int64_t eddy__cdc_pos_version(const pos_t *p)
{
        if (p->kind == POS_PG)
                return (int64_t)p->a;
        return (int64_t)((p->a << 36) | p->b);
}

static int pos_text(const pos_t *p, const char *file, char *out, size_t n)
{
        if (p->kind == POS_PG)
                return snprintf(out, n, "lsn:%" PRIu64, p->a);
        return snprintf(out, n, "%s:%" PRIu64 ":%" PRIu64, file, p->b, p->c);
}

enum { SRC_LSN, SRC_FILE, SRC_POS, SRC_ROW, SRC_TABLE, SRC_TS, NSRC };
static const char *const src_names[NSRC] = {"lsn", "file", "pos", "row", "table", "ts_ms"};

static int json_u64(const eddy_json_val_t *v, uint64_t *out)
{
        int64_t x;
        if (eddy_json_int64(v, &x) || x < 0)
                return -1;
        *out = (uint64_t)x;
        return 0;
}

/* eddy__cdc_source_pos() of the source object's members @p f. */
static int source_pos(const eddy_json_val_t *f, pos_t *p, char *file, size_t filesz, char *table,
                      size_t tablesz, int64_t *ts_ms, const char **why)
{
        memset(p, 0, sizeof(*p));
        if (file && filesz)
                file[0] = '\0';
        else {
                file = NULL;
        }
        char fbuf[256];
        if (!file) {
                file = fbuf;
                filesz = sizeof(fbuf);
        }
        if (table && tablesz) {
                table[0] = '\0';
                if (f[SRC_TABLE].type == EDDY_JSON_STRING &&
                    eddy_json_unescape(&f[SRC_TABLE], table, tablesz) < 0)
                        table[0] = '\0';
        }
        int64_t ts = 0;
        if (ts_ms && f[SRC_TS].type == EDDY_JSON_NUMBER && !eddy_json_int64(&f[SRC_TS], &ts))
                *ts_ms = ts;
        if (f[SRC_LSN].type != EDDY_JSON_MISSING && f[SRC_LSN].type != EDDY_JSON_NULL) {
                *why = "source.lsn: expected a non-negative integer";
                if (json_u64(&f[SRC_LSN], &p->a))
                        return -1;
                p->kind = POS_PG;
                return 0;
        }
        if (f[SRC_FILE].type == EDDY_JSON_STRING) {
                *why = "source.file: expected a binlog file name of at most 255 bytes";
                ssize_t fl = eddy_json_unescape(&f[SRC_FILE], file, filesz);
                if (fl <= 0)
                        return -1;
                /* mysql-bin.000003: the number after the last '.' */
                const char *dot = strrchr(file, '.');
                const char *d = dot ? dot + 1 : file;
                *why = "source.file: expected a binlog file name ending in a number "
                       "(mysql-bin.000003)";
                if (!*d)
                        return -1;
                uint64_t num = 0;
                for (; *d; d++) {
                        if (*d < '0' || *d > '9' || num > (UINT64_C(1) << 40))
                                return -1;
                        num = num * 10 + (uint64_t)(*d - '0');
                }
                *why = "source.pos: expected a non-negative integer";
                if (json_u64(&f[SRC_POS], &p->b))
                        return -1;
                *why = "source.row: expected a non-negative integer";
                if (f[SRC_ROW].type != EDDY_JSON_MISSING && f[SRC_ROW].type != EDDY_JSON_NULL &&
                    json_u64(&f[SRC_ROW], &p->c))
                        return -1;
                *why = "source: binlog file number >= 2^27 or pos >= 2^36 (the search version "
                       "would overflow)";
                if (num >= (UINT64_C(1) << 27) || p->b >= (UINT64_C(1) << 36))
                        return -1;
                p->a = num;
                p->kind = POS_MYSQL;
                return 0;
        }
        *why = "source: no position (PostgreSQL lsn, or MySQL file and pos)";
        return -1;
}

int eddy__cdc_source_pos(const char *src, size_t len, pos_t *p, char *file, size_t filesz,
                         char *table, size_t tablesz, int64_t *ts_ms, const char **why)
{
        eddy_json_val_t f[NSRC];
        *why = "source: not a JSON object";
        if (eddy_json_object(src, len, src_names, NSRC, f, NULL, 0))
                return -1;
        return source_pos(f, p, file, filesz, table, tablesz, ts_ms, why);
}

/* ---- primary keys ---- */

typedef struct keyw_s {
        buf_t *out;
        int bad, n;
        size_t max;
} keyw_t;

static void key_member(void *opaque, const eddy_json_val_t *name, const eddy_json_val_t *v)
{
        keyw_t *k = opaque;
        if (k->bad)
                return;
        if (v->type == EDDY_JSON_NULL || v->type == EDDY_JSON_OBJECT ||
            v->type == EDDY_JSON_ARRAY) {
                k->bad = 1;
                return;
        }
        if (k->n++)
                buf_put(k->out, ":", 1);
        if (v->type == EDDY_JSON_STRING) {
                size_t at = k->out->len;
                buf_put(k->out, NULL, v->len + 1);
                ssize_t n = eddy_json_unescape(v, k->out->p + at, v->len + 1);
                if (n < 0 || memchr(k->out->p + at, '\0', (size_t)n)) {
                        k->bad = 1;
                        return;
                }
                k->out->len = at + (size_t)n;
        } else {
                buf_put(k->out, v->p, v->len);
        }
        if (k->out->len > k->max)
                k->bad = 1;
}

/* eddy__cdc_pk() into a buffer of ours; @returns 0 or -1. */
static int pk_text(const char *key, size_t len, size_t max, buf_t *out, const char **why)
{
        static const char *const wrap[2] = {"schema", "payload"};
        eddy_json_val_t w[2];
        out->len = 0;
        *why = "record key: not a JSON object";
        if (eddy_json_object(key, len, wrap, 2, w, NULL, 0))
                return -1;
        if (w[0].type != EDDY_JSON_MISSING && w[1].type == EDDY_JSON_OBJECT) {
                key = w[1].p;
                len = w[1].len;
        }
        keyw_t k = {out, 0, 0, max};
        eddy_json_members(key, len, key_member, &k, NULL, 0);
        *why = "record key: expected an object of at least one non-null scalar column, the "
               "text at most max.key.bytes";
        if (k.bad || k.n == 0)
                return -1;
        buf_put(out, "", 0);
        out->p[out->len] = '\0';
        return 0;
}

ssize_t eddy__cdc_pk(const char *key, size_t len, size_t max, char *out, size_t outsz,
                     const char **why)
{
        buf_t b = {NULL, 0, 0};
        ssize_t n = -1;
        if (!pk_text(key, len, max, &b, why)) {
                if (b.len < outsz) {
                        memcpy(out, b.p, b.len + 1);
                        n = (ssize_t)b.len;
                } else {
                        *why = "record key: longer than the buffer";
                }
        }
        free(b.p);
        return n;
}

/* ---- routes ---- */

static int str_list(json_t *a, char ***out, size_t *n, const char *what, char *errstr,
                    size_t errstr_size)
{
        if (!a)
                return 0;
        if (!json_is_array(a)) {
                snprintf(errstr, errstr_size, "cdc-fanout: routes: %s: expected an array", what);
                return -1;
        }
        *n = json_array_size(a);
        *out = calloc(*n + 1, sizeof(char *));
        for (size_t i = 0; i < *n; i++) {
                const char *s = json_string_value(json_array_get(a, i));
                if (!s) {
                        snprintf(errstr, errstr_size,
                                 "cdc-fanout: routes: %s: expected an array of strings", what);
                        return -1;
                }
                (*out)[i] = strdup(s);
        }
        return 0;
}

static int route_parse(const char *table, json_t *r, route_t *rt, char *errstr, size_t errstr_size)
{
        memset(rt, 0, sizeof(*rt));
        rt->table = strdup(table);
        rt->sinks = S_ALL;
        if (!json_is_object(r)) {
                snprintf(errstr, errstr_size, "cdc-fanout: routes.%s: expected an object", table);
                return -1;
        }
        const char *k;
        json_t *v;
        json_object_foreach(r, k, v)
        {
                if (!strcmp(k, "sinks")) {
                        char **s = NULL;
                        size_t n = 0;
                        if (str_list(v, &s, &n, "sinks", errstr, errstr_size))
                                return -1;
                        rt->sinks = 0;
                        int bad = 0;
                        for (size_t i = 0; i < n; i++) {
                                if (!strcmp(s[i], "redis"))
                                        rt->sinks |= S_REDIS;
                                else if (!strcmp(s[i], "search"))
                                        rt->sinks |= S_SEARCH;
                                else if (!strcmp(s[i], "warehouse"))
                                        rt->sinks |= S_WAREHOUSE;
                                else if (!strcmp(s[i], "topic"))
                                        rt->sinks |= S_TOPIC;
                                else if (!bad) {
                                        bad = 1;
                                        snprintf(errstr, errstr_size,
                                                 "cdc-fanout: routes.%s.sinks: unknown sink "
                                                 "\"%s\" (redis, search, warehouse, topic)",
                                                 table, s[i]);
                                }
                                free(s[i]);
                        }
                        free(s);
                        if (bad)
                                return -1;
                } else if (!strcmp(k, "include")) {
                        if (str_list(v, &rt->include, &rt->ninclude, "include", errstr,
                                     errstr_size))
                                return -1;
                } else if (!strcmp(k, "exclude")) {
                        if (str_list(v, &rt->exclude, &rt->nexclude, "exclude", errstr,
                                     errstr_size))
                                return -1;
                } else if (!strcmp(k, "rename")) {
                        if (!json_is_object(v)) {
                                snprintf(errstr, errstr_size,
                                         "cdc-fanout: routes.%s.rename: expected an object", table);
                                return -1;
                        }
                        rt->nrename = json_object_size(v);
                        rt->from = calloc(rt->nrename + 1, sizeof(char *));
                        rt->to = calloc(rt->nrename + 1, sizeof(char *));
                        size_t i = 0;
                        const char *rk;
                        json_t *rv;
                        json_object_foreach(v, rk, rv)
                        {
                                if (!json_is_string(rv) || !*json_string_value(rv)) {
                                        snprintf(errstr, errstr_size,
                                                 "cdc-fanout: routes.%s.rename.%s: expected a "
                                                 "non-empty string",
                                                 table, rk);
                                        return -1;
                                }
                                rt->from[i] = strdup(rk);
                                rt->to[i++] = strdup(json_string_value(rv));
                        }
                } else if (!strcmp(k, "index") || !strcmp(k, "topic")) {
                        if (!json_is_string(v) || !*json_string_value(v)) {
                                snprintf(errstr, errstr_size,
                                         "cdc-fanout: routes.%s.%s: expected a non-empty string",
                                         table, k);
                                return -1;
                        }
                        *(!strcmp(k, "index") ? &rt->index : &rt->topic) =
                            strdup(json_string_value(v));
                } else {
                        snprintf(errstr, errstr_size,
                                 "cdc-fanout: routes.%s: unknown key \"%s\" (sinks, include, "
                                 "exclude, rename, index, topic)",
                                 table, k);
                        return -1;
                }
        }
        if (rt->ninclude && rt->nexclude) {
                snprintf(errstr, errstr_size,
                         "cdc-fanout: routes.%s: include and exclude both given; use one", table);
                return -1;
        }
        return 0;
}

static void strv_free(char **v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(v[i]);
        free(v);
}

static void route_free(route_t *r)
{
        free(r->table);
        strv_free(r->include, r->ninclude);
        strv_free(r->exclude, r->nexclude);
        strv_free(r->from, r->nrename);
        strv_free(r->to, r->nrename);
        free(r->index);
        free(r->topic);
}

static const route_t *route_find(const cdc_t *c, const char *table)
{
        const route_t *star = NULL;
        for (size_t i = 0; i < c->nroutes; i++) {
                if (!strcmp(c->routes[i].table, table))
                        return &c->routes[i];
                if (!strcmp(c->routes[i].table, "*"))
                        star = &c->routes[i];
        }
        return star ? star : &c->all;
}

static int in_list(char *const *v, size_t n, const char *s, size_t sl)
{
        for (size_t i = 0; i < n; i++)
                if (strlen(v[i]) == sl && !memcmp(v[i], s, sl))
                        return (int)i;
        return -1;
}

/* ---- the processor ---- */

static void cdc_close(void *self);

static int cdc_init(eddy_ctx_t *ctx, const void *conf, void **selfp, char *errstr,
                    size_t errstr_size)
{
        const cdc_conf_t *cf = conf;
        cdc_t *c = calloc(1, sizeof(*c));
        if (!c) {
                snprintf(errstr, errstr_size, "cdc-fanout: out of memory");
                return -1;
        }
        c->conf = cf;
        /* Every change becomes a Kafka record: librdkafka allocates each record and its
         * headers on the committer's thread and frees them on its broker thread, and glibc's
         * fastbins fill with those chunks until a large allocation consolidates them all
         * (malloc_consolidate was 4% of the job's CPU). Without fastbins (tcache still serves
         * small allocations): make bench-cdc, five pairs of runs, 118k against 107k changes
         * per CPU-second; the like-counter, which produces nothing, gained nothing from it.
         * One process runs one job, so this is the job's setting. */
        mallopt(M_MXFAST, 0);
        c->all.table = strdup("*");
        c->all.sinks = S_ALL;
        *selfp = c;
        if (!strcmp(cf->table_from, "source"))
                c->from_source = 1;
        else if (strcmp(cf->table_from, "topic")) {
                snprintf(errstr, errstr_size, "table.from: expected topic or source, got \"%s\"",
                         cf->table_from);
                goto fail;
        }
        if (cf->routes && *cf->routes) {
                json_error_t je;
                json_t *r = json_loads(cf->routes, 0, &je);
                if (!json_is_object(r)) {
                        snprintf(errstr, errstr_size,
                                 "routes: expected an object of table name -> route");
                        json_decref(r);
                        goto fail;
                }
                c->routes = calloc(json_object_size(r) + 1, sizeof(route_t));
                const char *k;
                json_t *v;
                json_object_foreach(r, k, v)
                {
                        if (route_parse(k, v, &c->routes[c->nroutes++], errstr, errstr_size)) {
                                json_decref(r);
                                goto fail;
                        }
                }
                json_decref(r);
        }
        c->c_stale = eddy_counter_new(ctx, "cdc_stale",
                                      "Changes skipped: their source position is not newer than "
                                      "the row's last applied one (duplicates, replays, snapshot "
                                      "reads of rows the stream changed)");
        c->c_tombstones = eddy_counter_new(ctx, "cdc_tombstones",
                                           "Tombstones (null values after deletes), ignored");
        c->c_truncates = eddy_counter_new(ctx, "cdc_truncates", "Truncates applied");
        return 0;
fail:
        cdc_close(c);
        *selfp = NULL;
        return -1;
}

static void cdc_close(void *self)
{
        cdc_t *c = self;
        if (!c)
                return;
        for (size_t i = 0; i < c->nroutes; i++)
                route_free(&c->routes[i]);
        free(c->routes);
        route_free(&c->all);
        free(c->cols);
        free(c->names.p);
        free(c->vals.p);
        free(c->doc.p);
        free(c->key.p);
        free(c->tmp.p);
        free(c->skey.p);
        free(c->hf);
        free(c->voff);
        free(c);
}

static void after_member(void *opaque, const eddy_json_val_t *name, const eddy_json_val_t *v)
{
        cdc_t *c = opaque;
        if (c->ncols == c->ccap) {
                c->ccap = c->ccap ? c->ccap * 2 : 32;
                if (!(c->cols = realloc(c->cols, c->ccap * sizeof(*c->cols))))
                        abort();
        }
        col_t *col = &c->cols[c->ncols++];
        col->v = *v;
        col->nesc = name->escaped;
        if (!name->escaped) {
                col->name = name->p;
                col->nlen = name->len;
                return;
        }
        col->noff = c->names.len;
        buf_put(&c->names, NULL, name->len + 1);
        ssize_t n = eddy_json_unescape(name, c->names.p + col->noff, name->len + 1);
        if (n < 0) {
                c->bad_after = 1;
                n = 0;
        }
        c->names.len = col->noff + (size_t)n;
        col->nlen = (size_t)n;
}

/* Projects the after-image's columns by route @p r: c->doc gets the JSON object (nulls kept),
 * c->hf the Redis hash fields (nulls left out); @returns the number of fields. */
static size_t project(cdc_t *c, const route_t *r)
{
        for (size_t i = 0; i < c->ncols; i++)
                if (c->cols[i].nesc)
                        c->cols[i].name = c->names.p + c->cols[i].noff;
        c->doc.len = 0;
        c->vals.len = 0;
        buf_put(&c->doc, "{", 1);
        size_t nf = 0, ndoc = 0;
        if (c->ncols > c->hcap) {
                c->hcap = c->ncols * 2;
                c->hf = realloc(c->hf, c->hcap * sizeof(*c->hf));
                c->voff = realloc(c->voff, c->hcap * sizeof(*c->voff)); /* vals moves: offsets */
                if (!c->hf || !c->voff)
                        abort();
        }
        size_t *voff = c->voff;
        for (size_t i = 0; i < c->ncols; i++) {
                col_t *col = &c->cols[i];
                if (r->ninclude && in_list(r->include, r->ninclude, col->name, col->nlen) < 0)
                        continue;
                if (r->nexclude && in_list(r->exclude, r->nexclude, col->name, col->nlen) >= 0)
                        continue;
                const char *name = col->name;
                size_t nlen = col->nlen;
                int ri = r->nrename ? in_list(r->from, r->nrename, name, nlen) : -1;
                if (ri >= 0) {
                        name = r->to[ri];
                        nlen = strlen(name);
                }
                if (ndoc++)
                        buf_put(&c->doc, ",", 1);
                buf_json_str(&c->doc, name, nlen);
                buf_put(&c->doc, ":", 1);
                const eddy_json_val_t *v = &col->v;
                if (v->type == EDDY_JSON_STRING) {
                        buf_put(&c->doc, v->p - 1, v->len + 2); /* the quotes too */
                } else {
                        buf_put(&c->doc, v->p, v->len);
                }
                if (v->type == EDDY_JSON_NULL)
                        continue;
                eddy_hfield_t *h = &c->hf[nf];
                h->name = name;
                h->nlen = nlen;
                voff[nf] = c->vals.len;
                if (v->type == EDDY_JSON_STRING) {
                        buf_put(&c->vals, NULL, v->len + 1);
                        ssize_t n = eddy_json_unescape(v, c->vals.p + voff[nf], v->len + 1);
                        c->vals.len = voff[nf] + (size_t)(n < 0 ? 0 : n);
                        h->vlen = (size_t)(n < 0 ? 0 : n);
                } else {
                        buf_put(&c->vals, v->p, v->len);
                        h->vlen = v->len;
                }
                nf++;
        }
        buf_put(&c->doc, "}", 1);
        for (size_t i = 0; i < nf; i++)
                c->hf[i].val = c->vals.p + voff[i];
        return nf;
}

/* Names of a table's outputs, in c->tmp: redis key, index, topic (each NUL-terminated). */
typedef struct names_s {
        const char *rkey, *index, *topic;
        size_t rklen;
} names_t;

static void out_names(cdc_t *c, const route_t *r, const char *table, const char *pk, size_t pklen,
                      names_t *n)
{
        const cdc_conf_t *cf = c->conf;
        c->tmp.len = 0;
        buf_str(&c->tmp, cf->redis_prefix ? cf->redis_prefix : "");
        buf_str(&c->tmp, table);
        buf_put(&c->tmp, ":", 1);
        buf_put(&c->tmp, pk, pklen);
        size_t rklen = c->tmp.len;
        buf_put(&c->tmp, "", 1);
        size_t io = c->tmp.len;
        if (r->index) {
                buf_str(&c->tmp, r->index);
        } else {
                buf_str(&c->tmp, cf->index_prefix ? cf->index_prefix : "");
                buf_str(&c->tmp, table);
        }
        buf_put(&c->tmp, "", 1);
        size_t to = c->tmp.len;
        int topics = r->topic || (cf->topic_prefix && *cf->topic_prefix);
        if (r->topic) {
                buf_str(&c->tmp, r->topic);
        } else if (topics) {
                buf_str(&c->tmp, cf->topic_prefix);
                buf_put(&c->tmp, ".", 1);
                buf_str(&c->tmp, table);
        }
        buf_put(&c->tmp, "", 1);
        n->rkey = c->tmp.p;
        n->rklen = rklen;
        n->index = c->tmp.p + io;
        n->topic = topics ? c->tmp.p + to : NULL;
}

static void row_put(eddy_ctx_t *ctx, int32_t p, unsigned char *st, size_t tl, int live,
                    const pos_t *pos)
{
        unsigned char v[1 + POS_BYTES];
        v[0] = (unsigned char)live;
        pos_encode(pos, v + 1);
        eddy_state_put(ctx, p, st, tl, v, sizeof(v));
}

/* A cdc_change row (when the job writes a warehouse). */
static void emit_row(eddy_ctx_t *ctx, int32_t p, int64_t ts, char op, const char *table,
                     const char *pk, size_t pklen, const char *after, size_t alen, const pos_t *pos,
                     const char *file)
{
        eddy_row_t *row = eddy_row_begin(ctx, p, 0, ts);
        if (!row)
                return;
        char postext[320];
        pos_text(pos, file, postext, sizeof(postext));
        int64_t version = eddy__cdc_pos_version(pos);
        eddy_row_string(row, &op, 1);
        eddy_row_string(row, table, strlen(table));
        eddy_row_string(row, pk, pklen);
        if (after)
                eddy_row_string(row, after, alen);
        else
                eddy_row_null(row);
        eddy_row_string(row, postext, strlen(postext));
        eddy_row_long(row, version);
        eddy_row_long(row, ts);
        eddy_row_end(row);
}

/* A deleted row's outputs: Redis DEL, search delete, topic tombstone. */
static void emit_delete(cdc_t *c, eddy_ctx_t *ctx, int32_t p, const route_t *r, const char *table,
                        const char *pk, size_t pklen, int64_t version)
{
        names_t n;
        out_names(c, r, table, pk, pklen, &n);
        if (r->sinks & S_REDIS)
                eddy_out_redis_del(ctx, p, n.rkey, n.rklen);
        if (r->sinks & S_SEARCH)
                eddy_out_search(ctx, p, n.index, pk, pklen, version, NULL, 0);
        if ((r->sinks & S_TOPIC) && n.topic)
                eddy_out_kafka(ctx, p, n.topic, pk, pklen, NULL, 0);
}

typedef struct trunc_scan_s {
        buf_t keys; /* pk '\0' ... of live rows older than the truncate */
        size_t n, plen;
        const pos_t *at;
} trunc_scan_t;

static int trunc_visit(void *opaque, const void *k, size_t kl, const void *v, size_t vl)
{
        trunc_scan_t *t = opaque;
        pos_t old;
        const unsigned char *rv = v;
        if (vl < 1 + POS_BYTES || !rv[0] || pos_decode(rv + 1, vl - 1, &old))
                return 0;
        if (eddy__cdc_pos_cmp(&old, t->at) >= 0)
                return 0; /* changed after the truncate */
        buf_put(&t->keys, (const char *)k + t->plen, kl - t->plen);
        buf_put(&t->keys, "", 1); /* pk texts hold no NUL (pk_text refuses them) */
        t->n++;
        return 0;
}

static int truncate_table(cdc_t *c, eddy_ctx_t *ctx, const eddy_msg_t *msg, const char *table,
                          const pos_t *pos, const char *file, int64_t ts)
{
        int32_t p = msg->partition;
        size_t tl = strlen(table);
        unsigned char *tk = malloc(tl + 2 + POS_BYTES);
        tk[0] = 'T';
        memcpy(tk + 1, table, tl);
        const void *v;
        size_t vl;
        int r = eddy_state_get(ctx, p, tk, 1 + tl, &v, &vl);
        pos_t old;
        if (r < 0) {
                free(tk);
                return -r;
        }
        if (r == 1 && !pos_decode(v, vl, &old) && eddy__cdc_pos_cmp(&old, pos) >= 0) {
                free(tk);
                eddy_counter_add(c->c_stale, 1);
                return 0;
        }
        unsigned char enc[POS_BYTES];
        pos_encode(pos, enc);
        eddy_state_put(ctx, p, tk, 1 + tl, enc, POS_BYTES);
        /* the table's live rows in this partition: 'k' table '\0' */
        tk[0] = 'k';
        tk[1 + tl] = '\0';
        trunc_scan_t scan = {{NULL, 0, 0}, 0, 2 + tl, pos};
        if (eddy_state_scan(ctx, p, tk, 2 + tl, trunc_visit, &scan) < 0) {
                free(tk);
                free(scan.keys.p);
                return EDDY_ERR_STATE;
        }
        const route_t *rt = route_find(c, table);
        int64_t version = eddy__cdc_pos_version(pos);
        buf_t sk = {NULL, 0, 0};
        for (size_t off = 0, i = 0; i < scan.n; i++) {
                const char *pk = scan.keys.p + off;
                size_t pklen = strlen(pk);
                off += pklen + 1;
                sk.len = 0;
                buf_put(&sk, tk, 2 + tl);
                buf_put(&sk, pk, pklen);
                row_put(ctx, p, (unsigned char *)sk.p, sk.len, 0, pos);
                emit_delete(c, ctx, p, rt, table, pk, pklen, version);
        }
        free(sk.p);
        if (rt->sinks & S_WAREHOUSE)
                emit_row(ctx, p, ts, 't', table, "", 0, NULL, 0, pos, file);
        eddy_counter_add(c->c_truncates, 1);
        char postext[320];
        pos_text(pos, file, postext, sizeof(postext));
        eddy_log(ctx, LOG_NOTICE, "CDC",
                 "truncate of %s at %s (%s/%" PRId32 "@%" PRId64 "): %zu rows of partition %" PRId32
                 " deleted from the sinks",
                 table, postext, msg->topic, msg->partition, msg->offset, scan.n, p);
        free(scan.keys.p);
        free(tk);
        return 0;
}

enum { E_SCHEMA, E_PAYLOAD, E_BEFORE, E_AFTER, E_OP, E_SOURCE, E_TS, NENV };
static const char *const env_names[NENV] = {"schema", "payload", "before", "after",
                                            "op",     "source",  "ts_ms"};

/* One walk of an envelope object: its members into e, the after-image's columns (nest[0])
 * into c->cols afresh, source's fields (nest[1]). */
static int envelope_walk(cdc_t *c, const char *buf, size_t len, eddy_json_val_t *e,
                         eddy_json_nest_t *nest, char *err, size_t errsize)
{
        c->ncols = 0;
        c->names.len = 0;
        c->bad_after = 0;
        return eddy_json_object_nested(buf, len, env_names, NENV, e, nest, 2, err, errsize);
}

static int cdc_process(void *self, eddy_ctx_t *ctx, const eddy_msg_t *msg)
{
        cdc_t *c = self;
        if (!msg->value || msg->value_len == 0) {
                eddy_counter_add(c->c_tombstones, 1); /* after a delete, which did the work */
                return 0;
        }
        eddy_json_val_t e[NENV], sf[NSRC];
        char err[160];
        /* the after-image's columns (after_member) and the position's fields of source, in
         * the pass that validates the envelope */
        eddy_json_nest_t nest[2] = {{E_AFTER, NULL, 0, NULL, after_member, c, 0, 0},
                                    {E_SOURCE, src_names, NSRC, sf, NULL, NULL, 0, 0}};
        if (envelope_walk(c, msg->value, msg->value_len, e, nest, err, sizeof(err)))
                return eddy_reject(ctx, "json", "%s", err);
        if (e[E_SCHEMA].type != EDDY_JSON_MISSING && e[E_OP].type == EDDY_JSON_MISSING) {
                /* the JsonConverter's {"schema": ..., "payload": ...} wrapper */
                if (e[E_PAYLOAD].type == EDDY_JSON_NULL) {
                        eddy_counter_add(c->c_tombstones, 1);
                        return 0;
                }
                if (e[E_PAYLOAD].type != EDDY_JSON_OBJECT)
                        return eddy_reject(ctx, "envelope",
                                           "payload: expected the change event object");
                const char *pl = e[E_PAYLOAD].p;
                size_t pll = e[E_PAYLOAD].len;
                if (envelope_walk(c, pl, pll, e, nest, err, sizeof(err)))
                        return eddy_reject(ctx, "envelope", "payload: %s", err);
        }
        if (e[E_OP].type == EDDY_JSON_MISSING || e[E_OP].type == EDDY_JSON_NULL)
                return eddy_reject(ctx, "missing_op", "the change event has no op");
        char op = 0;
        if (e[E_OP].type == EDDY_JSON_STRING && e[E_OP].len == 1 && !e[E_OP].escaped &&
            strchr("cudrt", e[E_OP].p[0]))
                op = e[E_OP].p[0];
        if (!op)
                return eddy_reject(ctx, "unknown_op", "op %.*s: expected c, u, d, r or t",
                                   (int)(e[E_OP].len > 16 ? 16 : e[E_OP].len), e[E_OP].p);
        if (e[E_SOURCE].type != EDDY_JSON_OBJECT)
                return eddy_reject(ctx, "missing_position",
                                   "source: expected the object with the change's position");
        pos_t pos;
        char file[256], stable[256];
        const char *why = "source: a member occurs twice";
        int64_t ts = 0;
        if (nest[1].dup ||
            source_pos(sf, &pos, file, sizeof(file), stable, sizeof(stable), &ts, &why))
                return eddy_reject(ctx, "bad_position", "%s", why);
        if (e[E_TS].type == EDDY_JSON_NUMBER)
                eddy_json_int64(&e[E_TS], &ts);

        char table[256];
        if (c->from_source) {
                if (!stable[0])
                        return eddy_reject(ctx, "missing_table",
                                           "source.table is missing (table.from=source)");
                memcpy(table, stable, sizeof(table)); /* NUL-terminated by the decoder */
        } else {
                const char *dot = strrchr(msg->topic, '.');
                const char *t = dot ? dot + 1 : msg->topic;
                size_t tl = strlen(t);
                if (tl >= sizeof(table))
                        return eddy_reject(ctx, "missing_table", "table name over 255 bytes");
                memcpy(table, t, tl + 1);
        }
        if (!table[0])
                return eddy_reject(ctx, "missing_table", "empty table name");
        if (op == 't')
                return truncate_table(c, ctx, msg, table, &pos, file, ts);

        if (!msg->key || !msg->key_len)
                return eddy_reject(ctx, "missing_key",
                                   "the record has no key (Debezium keys change events by the "
                                   "primary key)");
        if (pk_text(msg->key, msg->key_len, (size_t)c->conf->max_key_bytes, &c->key, &why))
                return eddy_reject(ctx, "bad_key", "%s", why);
        const char *pk = c->key.p;
        size_t pklen = c->key.len;

        if (op != 'd') {
                if (e[E_AFTER].type != EDDY_JSON_OBJECT)
                        return eddy_reject(ctx, "missing_after",
                                           "op %c: after: expected the row's after-image object",
                                           op);
                if (c->bad_after) /* its columns came with the envelope's walk */
                        return eddy_reject(ctx, "missing_after", "after: bad column name");
        }

        /* state key 'k' table '\0' pk */
        size_t tl = strlen(table);
        size_t sl = 2 + tl + pklen;
        c->skey.len = 0;
        buf_put(&c->skey, "k", 1);
        buf_put(&c->skey, table, tl + 1);
        buf_put(&c->skey, pk, pklen);
        unsigned char *sk = (unsigned char *)c->skey.p;
        const void *v;
        size_t vl;
        int r = eddy_state_get(ctx, msg->partition, sk, sl, &v, &vl);
        if (r < 0) {
                return -r;
        }
        pos_t old;
        if (r == 1 && vl >= 1 + POS_BYTES &&
            !pos_decode((const unsigned char *)v + 1, vl - 1, &old) &&
            eddy__cdc_pos_cmp(&old, &pos) >= 0) {
                eddy_counter_add(c->c_stale, 1);
                return 0; /* not newer than what the row has */
        }
        /* a change older than the table's last truncate (a snapshot read or a duplicate of a
         * row the truncate removed before this partition's state knew it) */
        c->tmp.len = 0;
        buf_put(&c->tmp, "T", 1);
        buf_put(&c->tmp, table, tl);
        r = eddy_state_get(ctx, msg->partition, c->tmp.p, c->tmp.len, &v, &vl);
        if (r < 0) {
                return -r;
        }
        if (r == 1 && !pos_decode(v, vl, &old) && eddy__cdc_pos_cmp(&old, &pos) >= 0) {
                eddy_counter_add(c->c_stale, 1);
                return 0;
        }
        row_put(ctx, msg->partition, sk, sl, op != 'd', &pos);

        const route_t *rt = route_find(c, table);
        int64_t version = eddy__cdc_pos_version(&pos);
        int32_t p = msg->partition;
        if (op == 'd') {
                emit_delete(c, ctx, p, rt, table, pk, pklen, version);
                if (rt->sinks & S_WAREHOUSE)
                        emit_row(ctx, p, ts, op, table, pk, pklen, NULL, 0, &pos, file);
                return 0;
        }
        size_t nf = project(c, rt);
        names_t n;
        out_names(c, rt, table, pk, pklen, &n);
        if (rt->sinks & S_REDIS) {
                if (nf)
                        eddy_out_redis_hash(ctx, p, n.rkey, n.rklen, c->hf, nf, 0);
                else
                        eddy_out_redis_del(ctx, p, n.rkey, n.rklen); /* every column null */
        }
        if (rt->sinks & S_SEARCH)
                eddy_out_search(ctx, p, n.index, pk, pklen, version, c->doc.p, c->doc.len);
        if ((rt->sinks & S_TOPIC) && n.topic)
                eddy_out_kafka(ctx, p, n.topic, pk, pklen, c->doc.p, c->doc.len);
        if (rt->sinks & S_WAREHOUSE)
                emit_row(ctx, p, ts, op, table, pk, pklen, c->doc.p, c->doc.len, &pos, file);
        return 0;
}

const eddy_processor_t eddy_cdc_fanout = {
    .abi_version = EDDY_ABI_VERSION,
    .name = "cdc-fanout",
    .summary = "Debezium change events to a Redis row cache, a search index, the warehouse and "
               "per-table topics, in source order per primary key",
    .default_input = "^dbserver1\\.inventory\\..*",
    .props = cdc_props,
    .conf_size = sizeof(cdc_conf_t),
    .init = cdc_init,
    .process = cdc_process,
    .close = cdc_close,
    .tables = cdc_tables,
};
