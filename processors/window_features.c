/* window_features.c: sliding-window features per entity, in event time (docs/window-features.md).
 *
 * State, per input partition (the topic is keyed by the entity):
 *   'C'            ->  the partition's clock (highest accepted ts), 8 bytes big-endian
 *   'V'            ->  fingerprint of the feature layout the state was built with
 *   'e' entity_id  ->  the entity's tiles and last_n lists (encode()/decode() below)
 *
 * Windows of one slide S share tiles: tile t of slide S holds the partial aggregates of every
 * feature that has a window of slide S, over the events with floor(ts / S) == t. An event
 * updates one tile per distinct slide. A window of length L at clock C is the L/S tiles
 * up to floor(C / S). Tiles older than the longest window of their slide are dropped.
 *
 * Time passing changes values, so each entity stores the next clock value at which one of
 * its windows drops something (its due time), and every partition keeps a heap of
 * (due, entity) in memory, rebuilt from the state the first time the partition is seen. At
 * the end of a batch the entities that had events and those whose due time the clock has
 * reached are recomputed at the partition's clock and written whole: what lands in Redis
 * depends only on the events and the clock, never on batch boundaries. */
#include "eddy.h"
#include "json.h"
#include "mem.h"

#include <inttypes.h>
#include <jansson.h>
#include <malloc.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct wf_conf_s {
        char *features;
        char *entity_field;
        int64_t lateness_ms;
        char *late_policy;
        int64_t idle_advance_ms;
        char *prefix;
        int64_t ttl_ms;
        char *output_topic;
        int64_t max_id_bytes;
} wf_conf_t;

#define CONF(f) offsetof(wf_conf_t, f)

static const eddy_prop_t wf_props[] = {
    {"features", EDDY_PROP_JSON, NULL, 0, 0, CONF(features),
     "The features: a JSON array of {name, agg, types, field, windows, n, exact_max} (see "
     "docs/window-features.md)"},
    {"entity.field", EDDY_PROP_STR, "user_id", 0, 0, CONF(entity_field),
     "Field of the event naming the entity (the topic must be keyed by it)"},
    {"allowed.lateness.ms", EDDY_PROP_INT, "60000", 0, INT64_MAX / 4, CONF(lateness_ms),
     "An event with ts below its partition's clock minus this is late"},
    {"late.policy", EDDY_PROP_STR, "dlq", 0, 0, CONF(late_policy),
     "What happens to a late event: dlq (dead-letter topic, reason late) or drop (counted)"},
    {"idle.advance.ms", EDDY_PROP_INT, "0", 0, INT64_MAX / 4, CONF(idle_advance_ms),
     "Advance an idle partition's clock with the wall clock after this long without events "
     "(0: never; makes results depend on the wall clock)"},
    {"redis.prefix", EDDY_PROP_STR, "feat:", 0, 0, CONF(prefix),
     "Redis key of an entity's hash: <prefix><entity_id>"},
    {"redis.ttl.ms", EDDY_PROP_INT, "0", 0, INT64_MAX / 4, CONF(ttl_ms),
     "TTL set on each hash written (0: none)"},
    {"output.topic", EDDY_PROP_STR, NULL, 0, 0, CONF(output_topic),
     "Also send each update as a JSON record to this topic, keyed by entity (default: none)"},
    {"max.id.bytes", EDDY_PROP_INT, "256", 1, 4096, CONF(max_id_bytes),
     "Longest entity or item id accepted; longer ones go to the dead-letter topic"},
    {NULL},
};

/* ---------------------------------------------------------------- the feature layout */

typedef enum { AGG_COUNT, AGG_SUM, AGG_AVG, AGG_MIN, AGG_MAX, AGG_DISTINCT, AGG_LAST_N } agg_t;

static const char *const agg_names[] = {"count", "sum", "avg", "min", "max", "distinct", "last_n"};

typedef struct win_s {
        int64_t len, slide, steps; /* ms, ms, len / slide */
        int res;                   /* its slide's index in wf->res */
        char *hfield;              /* Redis hash field */
} win_t;

typedef struct feat_s {
        char *name;
        agg_t agg;
        char **types;
        size_t ntypes;
        int field; /* index in wf->fields of the field read, -1 for count */
        win_t *wins;
        size_t nwins;
        int64_t n, exact_max;
        int list;  /* last_n: index of its list in an entity */
        int *slot; /* per resolution: index of its aggregate in a tile of that slide, or -1 */
} feat_t;

typedef struct res_s {
        int64_t slide;
        int64_t keep; /* tiles kept: the longest window of this slide, in steps */
        int *feats;   /* features with a window of this slide, in feature order */
        size_t nfeats;
} res_t;

/* ---------------------------------------------------------------- entities */

#define HLL_P               10
#define IDLE_MAX_PARTITIONS 4096 /* idle advance looks at partition numbers below this */
#define HLL_M               (1 << HLL_P)

/* The partial aggregate of one feature in one tile. */
typedef struct cell_s {
        int64_t n;         /* events */
        double v;          /* sum, min or max */
        uint64_t *dh;      /* distinct: sorted item hashes, while exact */
        uint32_t dn, dcap; /* ... */
        uint8_t *hll;      /* distinct: HLL registers, once past exact_max */
} cell_t;

typedef struct tiles_s {
        size_t n, cap;
        int64_t *t;
        cell_t *c; /* n * nfeats of the slide */
} tiles_t;

typedef struct item_s {
        int64_t ts, off;
        char *id;
        uint32_t len;
} item_t;

typedef struct list_s {
        size_t n, cap;
        item_t *it; /* most recent first, at most feat.n */
} list_t;

typedef struct went_s {
        int32_t partition;
        uint32_t idlen;
        char *id;
        uint64_t hash;
        int64_t due, loaded_due; /* -1: none */
        int existed;             /* was in the state when loaded */
        int changed;
        tiles_t *tiles; /* per resolution */
        list_t *lists;  /* per last_n feature */
} went_t;

/* A timer: the entity's id is at ids + off in its partition's id pool. */
typedef struct wtimer_s {
        int64_t due;
        uint32_t off, len;
} wtimer_t;

typedef struct wpart_s {
        int loaded;
        int has_clock;
        int64_t clock;
        int clock_dirty; /* moved in this batch */
        wtimer_t *heap;
        size_t hn, hcap;
        char *ids; /* the timers' ids, back to back; popped ones are garbage until compacted */
        size_t ilen, icap, idead;
        int64_t wall_last, clock_last; /* idle advance: wall time and clock at the last event */
} wpart_t;

/* A bump allocator for what a batch decodes (entities, their tiles, id sets, lists): it is
 * all dropped at once when flush() ends, rather than freed piece by piece. */
#define ARENA_CHUNK (1u << 20)
#define ARENA_KEEP  32 /* chunks kept for the next batch */

typedef struct arena_s {
        char **chunks;
        size_t nchunks, cur, used; /* allocating from chunks[cur], used bytes of it */
        void **big;                /* allocations too large for a chunk */
        size_t nbig, bigcap;
} arena_t;

/* A slot of the batch's entity table: the hash beside the pointer, so probing does not
 * touch the entities. */
typedef struct wslot_s {
        uint64_t hash;
        went_t *e;
} wslot_t;

/* An entity and the first bytes of its key, big-endian, for sorting the batch. */
typedef struct wsort_s {
        uint64_t k0, k1; /* partition and id bytes 0..3; id bytes 4..11 (zero-padded) */
        went_t *e;
} wsort_t;

typedef struct wf_s {
        const wf_conf_t *conf;
        eddy_ctx_t *ctx;
        feat_t *feats;
        size_t nfeats;
        res_t *res;
        size_t nres;
        size_t nlists;
        char **fields; /* JSON fields read: entity, ts, type, then the features' */
        size_t nfields;
        uint64_t fingerprint;
        int late_drop;
        int64_t late_dropped;
        eddy_counter_t *late; /* eddy_late_events_total: dead-lettered or dropped */
        int64_t n_writes, n_deletes, n_timers, n_pops, n_pushes; /* logged at close */

        wpart_t *parts;
        size_t nparts;

        /* the batch's entities: open addressing on (partition, id), allocated in arena */
        arena_t arena;
        wslot_t *map;
        size_t mapcap, mapn;
        wsort_t *order;

        /* scratch */
        eddy_json_val_t *vals;
        char *buf;
        size_t blen, bcap;
        char *enc;
        size_t elen, ecap;
        uint64_t *set; /* distinct: the union of a window's id sets */
        size_t setcap;
        char *rkey; /* the Redis key being written */
        size_t rkcap;
} wf_t;

enum { FLD_ENTITY, FLD_TS, FLD_TYPE, FLD_FIRST };

/* ---------------------------------------------------------------- small helpers */

static void *arena_alloc(arena_t *a, size_t n)
{
        n = (n + 15) & ~(size_t)15;
        if (n > ARENA_CHUNK / 4) {
                if (a->nbig == a->bigcap) {
                        a->bigcap = a->bigcap ? a->bigcap * 2 : 16;
                        a->big = eddy__xrealloc(a->big, a->bigcap * sizeof(*a->big));
                }
                return a->big[a->nbig++] = eddy__xrealloc(NULL, n);
        }
        if (a->cur >= a->nchunks || a->used + n > ARENA_CHUNK) {
                if (a->cur < a->nchunks)
                        a->cur++;
                if (a->cur == a->nchunks) {
                        a->chunks = eddy__xrealloc(a->chunks, (a->nchunks + 1) * sizeof(char *));
                        a->chunks[a->nchunks++] = eddy__xrealloc(NULL, ARENA_CHUNK);
                }
                a->used = 0;
        }
        void *p = a->chunks[a->cur] + a->used;
        a->used += n;
        return p;
}

/* A larger copy of p (old bytes), in the arena; p itself is dropped with the batch. */
static void *arena_grow(arena_t *a, const void *p, size_t old, size_t n)
{
        void *q = arena_alloc(a, n);
        if (old)
                memcpy(q, p, old);
        return q;
}

static char *arena_strndup(arena_t *a, const char *s, size_t n)
{
        char *d = arena_alloc(a, n + 1);
        memcpy(d, s, n);
        d[n] = '\0';
        return d;
}

/* Drops everything allocated; keeps ARENA_KEEP chunks for the next batch. */
static void arena_reset(arena_t *a)
{
        for (size_t i = 0; i < a->nbig; i++)
                free(a->big[i]);
        a->nbig = 0;
        while (a->nchunks > ARENA_KEEP)
                free(a->chunks[--a->nchunks]);
        a->cur = a->used = 0;
}

static void arena_free(arena_t *a)
{
        arena_reset(a);
        for (size_t i = 0; i < a->nchunks; i++)
                free(a->chunks[i]);
        free(a->chunks);
        free(a->big);
}

static int64_t floordiv(int64_t a, int64_t b)
{
        int64_t q = a / b;
        return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

static uint64_t hash_id(const void *p, size_t n, uint64_t seed)
{
        const unsigned char *s = p;
        uint64_t h = 0xcbf29ce484222325ULL ^ seed;
        for (size_t i = 0; i < n; i++)
                h = (h ^ s[i]) * 0x100000001b3ULL;
        /* murmur3's finalizer: every input bit reaches every output bit (HLL needs that) */
        h ^= h >> 33;
        h *= 0xff51afd7ed558ccdULL;
        h ^= h >> 33;
        h *= 0xc4ceb9fe1a85ec53ULL;
        h ^= h >> 33;
        return h;
}

/* The decimal text of @p v into out (at least 21 bytes), NUL-terminated; @returns its length. */
static size_t fmt_i64(int64_t v, char *out)
{
        size_t len = eddy_json_i64(out, v);
        out[len] = '\0';
        return len;
}

/* The shortest decimal text that reads back as @p v (docs/window-features.md, "Values");
 * @returns its length. */
static size_t fmt_num(double v, char *out, size_t size)
{
        if (v == floor(v) && fabs(v) < 1e15)
                return fmt_i64((int64_t)v, out); /* what "%.0f" prints, -0 as 0 */
        for (int p = 1; p <= 17; p++) {
                int n = snprintf(out, size, "%.*g", p, v);
                if (strtod(out, NULL) == v)
                        return (size_t)n;
        }
        return (size_t)snprintf(out, size, "%.17g", v);
}

static void buf_put(char **b, size_t *len, size_t *cap, const void *p, size_t n)
{
        if (*len + n > *cap) {
                *cap = (*len + n) * 2 + 64;
                *b = eddy__xrealloc(*b, *cap);
        }
        memcpy(*b + *len, p, n);
        *len += n;
}

static void out_put(wf_t *wf, const void *p, size_t n)
{
        buf_put(&wf->buf, &wf->blen, &wf->bcap, p, n);
}

static void out_str(wf_t *wf, const char *s)
{
        out_put(wf, s, strlen(s));
}

/* A JSON string literal of bytes @p s (eddy_json_quote). */
static void out_json_str(wf_t *wf, const char *s, size_t n)
{
        size_t max = EDDY_JSON_QUOTED_MAX(n);
        if (wf->blen + max > wf->bcap) { /* features_json() reserves first: s may be in buf */
                wf->bcap = (wf->blen + max) * 2 + 64;
                wf->buf = eddy__xrealloc(wf->buf, wf->bcap);
        }
        wf->blen += eddy_json_quote(wf->buf + wf->blen, s, n);
}

/* ---------------------------------------------------------------- configuration */

/* "5m", "24h", "90s", "1d": whole seconds, as ms. @returns 0 or -1. */
static int parse_dur(const char *s, size_t n, int64_t *ms)
{
        if (n < 2 || n > 12)
                return -1;
        int64_t v = 0;
        for (size_t i = 0; i + 1 < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -1;
                v = v * 10 + (s[i] - '0');
        }
        int64_t unit;
        switch (s[n - 1]) {
        case 's':
                unit = 1000;
                break;
        case 'm':
                unit = 60000;
                break;
        case 'h':
                unit = 3600000;
                break;
        case 'd':
                unit = 86400000;
                break;
        default:
                return -1;
        }
        if (v <= 0 || v > 100LL * 365 * 86400)
                return -1;
        *ms = v * unit;
        return 0;
}

static int field_index(wf_t *wf, const char *name)
{
        for (size_t i = 0; i < wf->nfields; i++)
                if (!strcmp(wf->fields[i], name))
                        return (int)i;
        wf->fields = eddy__xrealloc(wf->fields, (wf->nfields + 1) * sizeof(*wf->fields));
        wf->fields[wf->nfields] = strdup(name);
        return (int)wf->nfields++;
}

static int res_index(wf_t *wf, int64_t slide)
{
        for (size_t i = 0; i < wf->nres; i++)
                if (wf->res[i].slide == slide)
                        return (int)i;
        wf->res = eddy__xrealloc(wf->res, (wf->nres + 1) * sizeof(*wf->res));
        wf->res[wf->nres] = (res_t){.slide = slide};
        return (int)wf->nres++;
}

#define CFG_ERR(...)                                                                               \
        do {                                                                                       \
                snprintf(errstr, errstr_size, __VA_ARGS__);                                        \
                return -1;                                                                         \
        } while (0)

static int parse_window(wf_t *wf, feat_t *f, size_t fi, size_t wi, json_t *jw, char *errstr,
                        size_t errstr_size)
{
        if (!json_is_string(jw))
                CFG_ERR("features[%zu].windows[%zu]: expected a string such as \"5m\" or "
                        "\"1h/5m\"",
                        fi, wi);
        const char *s = json_string_value(jw);
        size_t n = strlen(s);
        const char *slash = memchr(s, '/', n);
        size_t ln = slash ? (size_t)(slash - s) : n;
        win_t *w = &f->wins[wi];
        if (parse_dur(s, ln, &w->len))
                CFG_ERR("features[%zu].windows[%zu]: \"%s\": expected <integer><s|m|h|d>, "
                        "optionally /<slide>, such as \"5m\" or \"24h/10m\"",
                        fi, wi, s);
        if (slash) {
                if (parse_dur(slash + 1, n - ln - 1, &w->slide))
                        CFG_ERR("features[%zu].windows[%zu]: \"%s\": bad slide after '/': "
                                "expected <integer><s|m|h|d>",
                                fi, wi, s);
        } else {
                int64_t secs = w->len / 1000;
                int64_t ss = (secs + 30) / 60; /* L/60 rounded, halves up */
                w->slide = (ss < 1 ? 1 : ss) * 1000;
        }
        if (w->len % w->slide != 0 || w->slide > w->len) {
                int64_t sug = w->slide / 1000;
                while (sug > 1 && (w->len / 1000) % sug)
                        sug--;
                CFG_ERR("features[%zu].windows[%zu]: \"%s\": the length is not a multiple of "
                        "its slide of %" PRId64 "s; give one, e.g. \"%.*s/%" PRId64 "s\"",
                        fi, wi, s, w->slide / 1000, (int)ln, s, sug);
        }
        w->steps = w->len / w->slide;
        if (w->steps > 10000)
                CFG_ERR("features[%zu].windows[%zu]: \"%s\": more than 10000 slides per window; "
                        "use a longer slide",
                        fi, wi, s);
        char hf[512];
        snprintf(hf, sizeof(hf), "%s_%.*s", f->name, (int)ln, s);
        w->hfield = strdup(hf);
        w->res = res_index(wf, w->slide);
        return 0;
}

static int parse_feature(wf_t *wf, size_t fi, json_t *jf, char *errstr, size_t errstr_size)
{
        feat_t *f = &wf->feats[fi];
        f->field = -1;
        if (!json_is_object(jf))
                CFG_ERR("features[%zu]: expected an object {\"name\", \"agg\", ...}", fi);
        const char *k;
        json_t *v;
        json_object_foreach(jf, k, v)
        {
                if (strcmp(k, "name") && strcmp(k, "agg") && strcmp(k, "types") &&
                    strcmp(k, "field") && strcmp(k, "windows") && strcmp(k, "n") &&
                    strcmp(k, "exact_max"))
                        CFG_ERR("features[%zu]: unknown key \"%s\" (expected name, agg, types, "
                                "field, windows, n, exact_max)",
                                fi, k);
        }
        json_t *jn = json_object_get(jf, "name");
        if (!json_is_string(jn) || !*json_string_value(jn))
                CFG_ERR("features[%zu].name: expected a non-empty string", fi);
        const char *name = json_string_value(jn);
        if (strlen(name) > 100 ||
            strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                         "0123456789_") != strlen(name))
                CFG_ERR("features[%zu].name: \"%s\": expected letters, digits and _ (at most "
                        "100)",
                        fi, name);
        f->name = strdup(name);
        json_t *ja = json_object_get(jf, "agg");
        const char *agg = json_is_string(ja) ? json_string_value(ja) : "";
        size_t ai;
        for (ai = 0; ai < sizeof(agg_names) / sizeof(agg_names[0]); ai++)
                if (!strcmp(agg, agg_names[ai]))
                        break;
        if (ai == sizeof(agg_names) / sizeof(agg_names[0]))
                CFG_ERR("features[%zu] (%s).agg: expected count, sum, avg, min, max, distinct or "
                        "last_n",
                        fi, name);
        f->agg = (agg_t)ai;

        json_t *jt = json_object_get(jf, "types");
        if (json_is_string(jt)) {
                f->types = eddy__xrealloc(NULL, sizeof(char *));
                f->types[0] = strdup(json_string_value(jt));
                f->ntypes = 1;
        } else if (json_is_array(jt) && json_array_size(jt) > 0) {
                size_t i;
                json_t *e;
                f->types = eddy__xrealloc(NULL, json_array_size(jt) * sizeof(char *));
                json_array_foreach(jt, i, e)
                {
                        if (!json_is_string(e))
                                CFG_ERR("features[%zu] (%s).types: expected strings", fi, name);
                        f->types[f->ntypes++] = strdup(json_string_value(e));
                }
        } else if (jt) {
                CFG_ERR("features[%zu] (%s).types: expected a string or a non-empty array of "
                        "strings",
                        fi, name);
        }

        json_t *jfl = json_object_get(jf, "field");
        if (jfl && !json_is_string(jfl))
                CFG_ERR("features[%zu] (%s).field: expected a string", fi, name);
        if (f->agg == AGG_COUNT) {
                if (jfl)
                        CFG_ERR("features[%zu] (%s).field: count reads no field", fi, name);
        } else {
                const char *fl =
                    jfl ? json_string_value(jfl)
                        : (f->agg == AGG_DISTINCT || f->agg == AGG_LAST_N ? "item_id" : "value");
                if (!*fl)
                        CFG_ERR("features[%zu] (%s).field: expected a field name", fi, name);
                f->field = field_index(wf, fl);
        }

        json_t *jnn = json_object_get(jf, "n");
        f->n = 10;
        if (jnn) {
                if (f->agg != AGG_LAST_N)
                        CFG_ERR("features[%zu] (%s).n: only for last_n", fi, name);
                if (!json_is_integer(jnn) || json_integer_value(jnn) < 1 ||
                    json_integer_value(jnn) > 1000)
                        CFG_ERR("features[%zu] (%s).n: expected an integer from 1 to 1000", fi,
                                name);
                f->n = json_integer_value(jnn);
        }
        json_t *jx = json_object_get(jf, "exact_max");
        f->exact_max = 1000;
        if (jx) {
                if (f->agg != AGG_DISTINCT)
                        CFG_ERR("features[%zu] (%s).exact_max: only for distinct", fi, name);
                if (!json_is_integer(jx) || json_integer_value(jx) < 0 ||
                    json_integer_value(jx) > 100000)
                        CFG_ERR("features[%zu] (%s).exact_max: expected an integer from 0 to "
                                "100000",
                                fi, name);
                f->exact_max = json_integer_value(jx);
        }

        json_t *jw = json_object_get(jf, "windows");
        if (jw && (!json_is_array(jw) || json_array_size(jw) > 64))
                CFG_ERR("features[%zu] (%s).windows: expected an array of window strings", fi,
                        name);
        f->nwins = jw ? json_array_size(jw) : 0;
        if (f->nwins == 0 && f->agg != AGG_LAST_N)
                CFG_ERR("features[%zu] (%s).windows: expected at least one window, such as "
                        "[\"5m\", \"1h\"]",
                        fi, name);
        f->wins = eddy__xrealloc(NULL, (f->nwins ? f->nwins : 1) * sizeof(*f->wins));
        memset(f->wins, 0, (f->nwins ? f->nwins : 1) * sizeof(*f->wins));
        for (size_t i = 0; i < f->nwins; i++)
                if (parse_window(wf, f, fi, i, json_array_get(jw, i), errstr, errstr_size))
                        return -1;
        if (f->agg == AGG_LAST_N)
                f->list = (int)wf->nlists++;
        return 0;
}

static void feats_free(wf_t *wf)
{
        for (size_t i = 0; i < wf->nfeats; i++) {
                feat_t *f = &wf->feats[i];
                free(f->name);
                for (size_t j = 0; j < f->ntypes; j++)
                        free(f->types[j]);
                free(f->types);
                for (size_t j = 0; j < f->nwins; j++)
                        free(f->wins[j].hfield);
                free(f->wins);
                free(f->slot);
        }
        free(wf->feats);
        for (size_t i = 0; i < wf->nres; i++)
                free(wf->res[i].feats);
        free(wf->res);
        for (size_t i = 0; i < wf->nfields; i++)
                free(wf->fields[i]);
        free(wf->fields);
}

/* Builds the layout from the features JSON. */
static int layout(wf_t *wf, char *errstr, size_t errstr_size)
{
        const wf_conf_t *c = wf->conf;
        if (!c->features || !*c->features)
                CFG_ERR("features: expected a JSON array of features, e.g. [{\"name\": "
                        "\"clicks\", \"agg\": \"count\", \"types\": \"click\", \"windows\": "
                        "[\"5m\", \"1h\"]}]");
        json_error_t jerr;
        json_t *root = json_loads(c->features, JSON_DECODE_ANY, &jerr);
        if (!json_is_array(root) || json_array_size(root) == 0 || json_array_size(root) > 256) {
                json_decref(root);
                CFG_ERR("features: expected a non-empty JSON array of at most 256 features");
        }
        field_index(wf, c->entity_field);
        field_index(wf, "ts");
        field_index(wf, "type");
        if (wf->nfields != FLD_FIRST) {
                json_decref(root);
                CFG_ERR("entity.field: \"%s\" can not be ts or type", c->entity_field);
        }
        wf->nfeats = json_array_size(root);
        wf->feats = eddy__xrealloc(NULL, wf->nfeats * sizeof(*wf->feats));
        memset(wf->feats, 0, wf->nfeats * sizeof(*wf->feats));
        for (size_t i = 0; i < wf->nfeats; i++)
                if (parse_feature(wf, i, json_array_get(root, i), errstr, errstr_size)) {
                        json_decref(root);
                        return -1;
                }
        json_decref(root);

        /* hash fields must be unique */
        for (size_t i = 0; i < wf->nfeats; i++)
                for (size_t a = 0; a < wf->nfeats; a++) {
                        feat_t *f = &wf->feats[i], *g = &wf->feats[a];
                        size_t nf = f->nwins ? f->nwins : 1, ng = g->nwins ? g->nwins : 1;
                        for (size_t x = 0; x < nf; x++)
                                for (size_t y = 0; y < ng; y++) {
                                        if (i == a && x == y)
                                                continue;
                                        const char *hf = f->nwins ? f->wins[x].hfield : f->name;
                                        const char *hg = g->nwins ? g->wins[y].hfield : g->name;
                                        if (!strcmp(hf, hg))
                                                CFG_ERR("features: two values would be named "
                                                        "\"%s\" (features[%zu] and "
                                                        "features[%zu]); rename one",
                                                        hf, i, a);
                                }
                }

        /* which features each slide's tiles carry; the longest window per slide */
        for (size_t i = 0; i < wf->nfeats; i++) {
                feat_t *f = &wf->feats[i];
                f->slot = eddy__xrealloc(NULL, (wf->nres ? wf->nres : 1) * sizeof(int));
                for (size_t r = 0; r < wf->nres; r++)
                        f->slot[r] = -1;
                for (size_t w = 0; w < f->nwins; w++) {
                        res_t *r = &wf->res[f->wins[w].res];
                        if (f->wins[w].steps > r->keep)
                                r->keep = f->wins[w].steps;
                        if (f->agg == AGG_LAST_N || f->slot[f->wins[w].res] >= 0)
                                continue;
                        f->slot[f->wins[w].res] = (int)r->nfeats;
                        r->feats = eddy__xrealloc(r->feats, (r->nfeats + 1) * sizeof(int));
                        r->feats[r->nfeats++] = (int)i;
                }
        }

        /* a fingerprint of the configuration the stored state depends on: a job restarted
         * with other features must not read tiles laid out for the old ones */
        wf->fingerprint = hash_id(c->features, strlen(c->features),
                                  hash_id(c->entity_field, strlen(c->entity_field), 1));
        return 0;
}

/* ---------------------------------------------------------------- cells and HLL */

static void hll_add(uint8_t *reg, uint64_t h)
{
        uint32_t idx = (uint32_t)(h >> (64 - HLL_P));
        uint64_t rest = h << HLL_P;
        uint8_t rank = rest ? (uint8_t)(__builtin_clzll(rest) + 1) : (uint8_t)(64 - HLL_P + 1);
        if (rank > reg[idx])
                reg[idx] = rank;
}

static int64_t hll_estimate(const uint8_t *reg)
{
        double sum = 0;
        int zeros = 0;
        for (int i = 0; i < HLL_M; i++) {
                sum += ldexp(1.0, -reg[i]);
                zeros += reg[i] == 0;
        }
        double m = HLL_M, alpha = 0.7213 / (1 + 1.079 / m);
        double e = alpha * m * m / sum;
        if (e <= 2.5 * m && zeros > 0)
                e = m * log(m / zeros);
        return (int64_t)(e + 0.5);
}

/* Adds item hash @p h to a distinct cell, going to HLL registers past @p exact_max. */
static void distinct_add(arena_t *a, cell_t *c, uint64_t h, int64_t exact_max)
{
        if (c->hll) {
                hll_add(c->hll, h);
                return;
        }
        uint32_t lo = 0, hi = c->dn;
        while (lo < hi) {
                uint32_t mid = (lo + hi) / 2;
                if (c->dh[mid] < h)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        if (lo < c->dn && c->dh[lo] == h)
                return;
        if ((int64_t)c->dn + 1 > exact_max) {
                c->hll = arena_alloc(a, HLL_M);
                memset(c->hll, 0, HLL_M);
                for (uint32_t i = 0; i < c->dn; i++)
                        hll_add(c->hll, c->dh[i]);
                hll_add(c->hll, h);
                c->dh = NULL;
                c->dn = c->dcap = 0;
                return;
        }
        if (c->dn == c->dcap) {
                c->dcap = c->dcap ? c->dcap * 2 : 4;
                c->dh = arena_grow(a, c->dh, c->dn * sizeof(*c->dh), c->dcap * sizeof(*c->dh));
        }
        memmove(c->dh + lo + 1, c->dh + lo, (c->dn - lo) * sizeof(*c->dh));
        c->dh[lo] = h;
        c->dn++;
}

/* ---------------------------------------------------------------- entity encoding */

static void enc_reserve(wf_t *wf, size_t n)
{
        if (wf->elen + n > wf->ecap) {
                wf->ecap = (wf->elen + n) * 2 + 256;
                wf->enc = eddy__xrealloc(wf->enc, wf->ecap);
        }
}

static void enc_varint(wf_t *wf, uint64_t v)
{
        enc_reserve(wf, 10);
        unsigned char *b = (unsigned char *)wf->enc + wf->elen;
        size_t n = 0;
        while (v >= 0x80) {
                b[n++] = (unsigned char)(v | 0x80);
                v >>= 7;
        }
        b[n++] = (unsigned char)v;
        wf->elen += n;
}

static void enc_u64(wf_t *wf, uint64_t u)
{
        enc_reserve(wf, 8);
        unsigned char *b = (unsigned char *)wf->enc + wf->elen;
        for (int i = 0; i < 8; i++)
                b[i] = (unsigned char)(u >> (8 * i));
        wf->elen += 8;
}

/* A sum, min or max: an integer below 2^52 in magnitude as the varint of its zigzag
 * shifted left once (even), any other double as 1 then its 8 bytes. */
static void enc_number(wf_t *wf, double d)
{
        if (d == floor(d) && fabs(d) < 4503599627370496.0 && !(d == 0 && signbit(d))) {
                int64_t i = (int64_t)d;
                enc_varint(wf, ((uint64_t)i << 1 ^ (uint64_t)(i >> 63)) << 1);
                return;
        }
        uint64_t u;
        memcpy(&u, &d, 8);
        enc_varint(wf, 1);
        enc_u64(wf, u);
}

typedef struct dec_s {
        const unsigned char *p, *end;
        int bad;
} dec_t;

static uint64_t dec_varint(dec_t *d)
{
        uint64_t v = 0;
        for (int shift = 0; shift < 64; shift += 7) {
                if (d->p >= d->end) {
                        d->bad = 1;
                        return 0;
                }
                unsigned char b = *d->p++;
                v |= (uint64_t)(b & 0x7f) << shift;
                if (!(b & 0x80))
                        return v;
        }
        d->bad = 1;
        return 0;
}

static uint64_t dec_u64(dec_t *d)
{
        if (d->end - d->p < 8) {
                d->bad = 1;
                return 0;
        }
        uint64_t u = 0;
        for (int i = 0; i < 8; i++)
                u |= (uint64_t)d->p[i] << (8 * i);
        d->p += 8;
        return u;
}

static double dec_double(dec_t *d)
{
        uint64_t u = dec_u64(d);
        double v;
        memcpy(&v, &u, 8);
        return v;
}

/* enc_number()'s inverse. */
static double dec_number(dec_t *d)
{
        uint64_t z = dec_varint(d);
        if (z == 1)
                return dec_double(d);
        if (z & 1) {
                d->bad = 1;
                return 0;
        }
        z >>= 1;
        return (double)(int64_t)(z >> 1 ^ (0 - (z & 1)));
}

static const unsigned char *dec_bytes(dec_t *d, size_t n)
{
        if ((size_t)(d->end - d->p) < n) {
                d->bad = 1;
                return NULL;
        }
        const unsigned char *p = d->p;
        d->p += n;
        return p;
}

#define ENC_VERSION 2 /* 1: hashes as varints, numbers as 8-byte doubles (still read) */

/* Encoding: version, due + 1 (0: none); per slide: ntiles, then per tile the delta of its
 * number and, per feature of the slide, n and (n > 0) its value: enc_number() for sum,
 * avg, min, max; for distinct dn + 1 then dn 8-byte hashes (exact) or 0 then HLL_M
 * registers. Per last_n list: n, then per item ts, offset, length, bytes. Varints
 * elsewhere. */
static void encode(wf_t *wf, const went_t *e)
{
        wf->elen = 0;
        enc_varint(wf, ENC_VERSION);
        enc_varint(wf, e->due < 0 ? 0 : (uint64_t)e->due + 1);
        for (size_t r = 0; r < wf->nres; r++) {
                const tiles_t *ts = &e->tiles[r];
                size_t nf = wf->res[r].nfeats;
                enc_varint(wf, ts->n);
                int64_t prev = 0;
                for (size_t i = 0; i < ts->n; i++) {
                        enc_varint(wf, (uint64_t)(ts->t[i] - prev));
                        prev = ts->t[i];
                        for (size_t j = 0; j < nf; j++) {
                                const cell_t *c = &ts->c[i * nf + j];
                                enc_varint(wf, (uint64_t)c->n);
                                if (c->n == 0)
                                        continue;
                                switch (wf->feats[wf->res[r].feats[j]].agg) {
                                case AGG_COUNT:
                                        break;
                                case AGG_DISTINCT:
                                        if (c->hll) {
                                                enc_varint(wf, 0);
                                                buf_put(&wf->enc, &wf->elen, &wf->ecap, c->hll,
                                                        HLL_M);
                                        } else {
                                                enc_varint(wf, (uint64_t)c->dn + 1);
                                                for (uint32_t k = 0; k < c->dn; k++)
                                                        enc_u64(wf, c->dh[k]);
                                        }
                                        break;
                                default:
                                        enc_number(wf, c->v);
                                }
                        }
                }
        }
        for (size_t l = 0; l < wf->nlists; l++) {
                const list_t *ls = &e->lists[l];
                enc_varint(wf, ls->n);
                for (size_t i = 0; i < ls->n; i++) {
                        enc_varint(wf, (uint64_t)ls->it[i].ts);
                        enc_varint(wf, (uint64_t)ls->it[i].off);
                        enc_varint(wf, ls->it[i].len);
                        buf_put(&wf->enc, &wf->elen, &wf->ecap, ls->it[i].id, ls->it[i].len);
                }
        }
}

/* A new entity of the batch, in the arena (dropped with the batch). */
static went_t *ent_new(wf_t *wf, int32_t p, const char *id, size_t len, uint64_t h)
{
        size_t nr = wf->nres ? wf->nres : 1, nl = wf->nlists ? wf->nlists : 1;
        went_t *e = arena_alloc(&wf->arena, sizeof(*e));
        memset(e, 0, sizeof(*e));
        e->partition = p;
        e->id = arena_strndup(&wf->arena, id, len);
        e->idlen = (uint32_t)len;
        e->hash = h;
        e->due = e->loaded_due = -1;
        e->tiles = arena_alloc(&wf->arena, nr * sizeof(*e->tiles));
        memset(e->tiles, 0, nr * sizeof(*e->tiles));
        e->lists = arena_alloc(&wf->arena, nl * sizeof(*e->lists));
        memset(e->lists, 0, nl * sizeof(*e->lists));
        return e;
}

/* Room for n tiles: exactly n when the tiles are empty (decoding), else twice as many. */
static void tiles_reserve(arena_t *a, tiles_t *ts, size_t nf, size_t n)
{
        if (n <= ts->cap)
                return;
        size_t cap = ts->cap ? ts->cap * 2 : n;
        while (cap < n)
                cap *= 2;
        nf = nf ? nf : 1;
        ts->t = arena_grow(a, ts->t, ts->n * sizeof(*ts->t), cap * sizeof(*ts->t));
        ts->c = arena_grow(a, ts->c, ts->n * nf * sizeof(*ts->c), cap * nf * sizeof(*ts->c));
        ts->cap = cap;
}

/* @p spare: room for one more tile per slide and one more id per set (an event is coming).
 * @returns 0, or -1 if the value is not a valid encoding. */
static int decode(wf_t *wf, went_t *e, const void *v, size_t vl, size_t spare)
{
        dec_t d = {v, (const unsigned char *)v + vl, 0};
        uint64_t version = dec_varint(&d);
        if (version != 1 && version != ENC_VERSION)
                return -1;
        uint64_t due = dec_varint(&d);
        e->due = e->loaded_due = due == 0 ? -1 : (int64_t)(due - 1);
        for (size_t r = 0; r < wf->nres && !d.bad; r++) {
                tiles_t *ts = &e->tiles[r];
                size_t nf = wf->res[r].nfeats;
                uint64_t n = dec_varint(&d);
                if (n > 1000000 || n > (uint64_t)(d.end - d.p))
                        return -1;
                if (n + spare)
                        tiles_reserve(&wf->arena, ts, nf, n + spare);
                int64_t prev = 0;
                for (size_t i = 0; i < n && !d.bad; i++) {
                        ts->t[i] = prev + (int64_t)dec_varint(&d);
                        prev = ts->t[i];
                        memset(&ts->c[i * nf], 0, nf * sizeof(cell_t));
                        ts->n = i + 1;
                        for (size_t j = 0; j < nf && !d.bad; j++) {
                                cell_t *c = &ts->c[i * nf + j];
                                c->n = (int64_t)dec_varint(&d);
                                if (c->n == 0)
                                        continue;
                                switch (wf->feats[wf->res[r].feats[j]].agg) {
                                case AGG_COUNT:
                                        break;
                                case AGG_DISTINCT: {
                                        uint64_t dn = dec_varint(&d);
                                        if (dn == 0) {
                                                const unsigned char *reg = dec_bytes(&d, HLL_M);
                                                if (!reg)
                                                        return -1;
                                                c->hll = arena_alloc(&wf->arena, HLL_M);
                                                memcpy(c->hll, reg, HLL_M);
                                        } else {
                                                dn--;
                                                if (dn > (uint64_t)(d.end - d.p))
                                                        return -1;
                                                c->dh = arena_alloc(&wf->arena, (dn + spare) * 8);
                                                c->dcap = (uint32_t)(dn + spare);
                                                for (uint64_t k = 0; k < dn; k++)
                                                        c->dh[k] = version == 1 ? dec_varint(&d)
                                                                                : dec_u64(&d);
                                                c->dn = (uint32_t)dn;
                                        }
                                        break;
                                }
                                default:
                                        c->v = version == 1 ? dec_double(&d) : dec_number(&d);
                                }
                        }
                }
        }
        for (size_t l = 0; l < wf->nlists && !d.bad; l++) {
                list_t *ls = &e->lists[l];
                uint64_t n = dec_varint(&d);
                if (n > 1000)
                        return -1;
                ls->it = arena_alloc(&wf->arena, (n + 1) * sizeof(item_t));
                ls->cap = n + 1;
                for (size_t i = 0; i < n && !d.bad; i++) {
                        item_t *it = &ls->it[i];
                        it->ts = (int64_t)dec_varint(&d);
                        it->off = (int64_t)dec_varint(&d);
                        uint64_t len = dec_varint(&d);
                        const unsigned char *b = len <= 4096 ? dec_bytes(&d, len) : NULL;
                        if (!b)
                                return -1;
                        it->id = arena_strndup(&wf->arena, (const char *)b, len);
                        it->len = (uint32_t)len;
                        ls->n = i + 1;
                }
        }
        return d.bad || d.p != d.end ? -1 : 0;
}

/* ---------------------------------------------------------------- partitions and timers */

static wpart_t *part_of(wf_t *wf, int32_t p)
{
        if ((size_t)p >= wf->nparts) {
                size_t n = (size_t)p + 1 > wf->nparts * 2 ? (size_t)p + 1 : wf->nparts * 2;
                wf->parts = eddy__xrealloc(wf->parts, n * sizeof(*wf->parts));
                memset(wf->parts + wf->nparts, 0, (n - wf->nparts) * sizeof(*wf->parts));
                wf->nparts = n;
        }
        return &wf->parts[p];
}

static void heap_push(wpart_t *wp, int64_t due, const char *id, size_t len)
{
        if (wp->hn == wp->hcap) {
                wp->hcap = wp->hcap ? wp->hcap + wp->hcap / 2 : 64;
                wp->heap = eddy__xrealloc(wp->heap, wp->hcap * sizeof(*wp->heap));
        }
        if (wp->ilen + len > wp->icap) {
                wp->icap = (wp->ilen + len) * 3 / 2 + 256;
                wp->ids = eddy__xrealloc(wp->ids, wp->icap);
        }
        memcpy(wp->ids + wp->ilen, id, len);
        size_t i = wp->hn++;
        wtimer_t t = {due, (uint32_t)wp->ilen, (uint32_t)len};
        wp->ilen += len;
        while (i > 0) {
                size_t up = (i - 1) / 2;
                if (wp->heap[up].due <= due)
                        break;
                wp->heap[i] = wp->heap[up];
                i = up;
        }
        wp->heap[i] = t;
}

/* Removes the earliest timer into *out; its id stays at wp->ids + out->off until the next
 * heap_compact(). */
static void heap_pop(wpart_t *wp, wtimer_t *out)
{
        *out = wp->heap[0];
        wp->idead += out->len;
        wtimer_t last = wp->heap[--wp->hn];
        size_t i = 0, n = wp->hn;
        for (;;) {
                size_t c = 2 * i + 1;
                if (c >= n)
                        break;
                if (c + 1 < n && wp->heap[c + 1].due < wp->heap[c].due)
                        c++;
                if (wp->heap[c].due >= last.due)
                        break;
                wp->heap[i] = wp->heap[c];
                i = c;
        }
        if (n)
                wp->heap[i] = last;
}

/* Drops the ids of popped timers from the pool once they are a quarter of it. */
static void heap_compact(wpart_t *wp)
{
        if (wp->idead < 65536 || wp->idead * 4 < wp->ilen)
                return;
        size_t live = wp->ilen - wp->idead;
        char *ids = eddy__xrealloc(NULL, live * 3 / 2 + 256);
        size_t n = 0;
        for (size_t i = 0; i < wp->hn; i++) {
                memcpy(ids + n, wp->ids + wp->heap[i].off, wp->heap[i].len);
                wp->heap[i].off = (uint32_t)n;
                n += wp->heap[i].len;
        }
        free(wp->ids);
        wp->ids = ids;
        wp->ilen = n;
        wp->icap = live * 3 / 2 + 256;
        wp->idead = 0;
}

struct load_scan {
        wf_t *wf;
        wpart_t *wp;
        int bad;
};

static int load_timer(void *opaque, const void *k, size_t kl, const void *v, size_t vl)
{
        struct load_scan *ls = opaque;
        dec_t d = {v, (const unsigned char *)v + vl, 0};
        uint64_t version = dec_varint(&d);
        if (version != 1 && version != ENC_VERSION) {
                ls->bad = 1;
                return 1;
        }
        uint64_t due = dec_varint(&d);
        if (d.bad) {
                ls->bad = 1;
                return 1;
        }
        if (due)
                heap_push(ls->wp, (int64_t)(due - 1), (const char *)k + 1, kl - 1);
        return 0;
}

static void put_be64(unsigned char *p, uint64_t v)
{
        for (int i = 7; i >= 0; i--, v >>= 8)
                p[i] = (unsigned char)v;
}

static uint64_t get_be64(const void *p)
{
        const unsigned char *s = p;
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
                v = (v << 8) | s[i];
        return v;
}

/* The first time this process sees partition p: its clock, layout check and timers. Nothing
 * of p has been written by this process yet, so the committed state is all of p's state and
 * eddy_state_scan() sees every entity. @returns 0 or an eddy_err_t. */
static int part_load(wf_t *wf, eddy_ctx_t *ctx, int32_t p, wpart_t *wp)
{
        const void *v;
        size_t vl;
        int r = eddy_state_get(ctx, p, "V", 1, &v, &vl);
        if (r < 0)
                return EDDY_ERR_STATE;
        if (r == 1 && (vl != 8 || get_be64(v) != wf->fingerprint)) {
                eddy_log(ctx, LOG_ERR, "STATE",
                         "partition %" PRId32 ": state.dir was built with another features "
                         "layout; use a new state.dir (and replay) for the new features",
                         p);
                return EDDY_ERR_USAGE;
        }
        if (r == 0) {
                unsigned char b[8];
                put_be64(b, wf->fingerprint);
                eddy_state_put(ctx, p, "V", 1, b, 8);
        }
        r = eddy_state_get(ctx, p, "C", 1, &v, &vl);
        if (r < 0)
                return EDDY_ERR_STATE;
        if (r == 1 && vl == 8) {
                wp->has_clock = 1;
                wp->clock = (int64_t)get_be64(v);
        }
        struct load_scan ls = {wf, wp, 0};
        if (eddy_state_scan(ctx, p, "e", 1, load_timer, &ls) < 0 || ls.bad) {
                eddy_log(ctx, LOG_ERR, "STATE", "partition %" PRId32 ": unreadable entity state",
                         p);
                return EDDY_ERR_STATE;
        }
        wp->loaded = 1;
        wp->clock_last = wp->clock;
        return 0;
}

/* ---------------------------------------------------------------- the batch's entities */

static void map_grow(wf_t *wf)
{
        size_t cap = wf->mapcap ? wf->mapcap * 2 : 1024;
        wslot_t *m = eddy__xrealloc(NULL, cap * sizeof(*m));
        memset(m, 0, cap * sizeof(*m));
        for (size_t i = 0; i < wf->mapcap; i++) {
                if (!wf->map[i].e)
                        continue;
                size_t j = wf->map[i].hash & (cap - 1);
                while (m[j].e)
                        j = (j + 1) & (cap - 1);
                m[j] = wf->map[i];
        }
        free(wf->map);
        wf->map = m;
        wf->mapcap = cap;
}

/* The batch's entity (partition p, id), loaded from the state on first use (with room for
 * @p spare more tiles and ids, see decode()). NULL on error. */
static went_t *ent_get(wf_t *wf, eddy_ctx_t *ctx, int32_t p, const char *id, size_t len,
                       size_t spare)
{
        if ((wf->mapn + 1) * 2 > wf->mapcap)
                map_grow(wf);
        uint64_t h = hash_id(id, len, (uint64_t)(uint32_t)p);
        size_t i = h & (wf->mapcap - 1);
        for (;; i = (i + 1) & (wf->mapcap - 1)) {
                went_t *e = wf->map[i].e;
                if (!e)
                        break;
                if (wf->map[i].hash == h && e->partition == p && e->idlen == len &&
                    !memcmp(e->id, id, len))
                        return e;
        }
        went_t *e = ent_new(wf, p, id, len, h);
        char kb[4100];
        kb[0] = 'e';
        memcpy(kb + 1, id, len);
        const void *v;
        size_t vl;
        int r = eddy_state_get(ctx, p, kb, len + 1, &v, &vl);
        if (r < 0 || (r == 1 && decode(wf, e, v, vl, spare) != 0)) {
                if (r == 1)
                        eddy_log(ctx, LOG_ERR, "STATE",
                                 "partition %" PRId32 ": entity %.*s: unreadable state", p,
                                 (int)len, id);
                return NULL;
        }
        e->existed = r == 1;
        wf->map[i] = (wslot_t){h, e};
        wf->mapn++;
        return e;
}

/* ---------------------------------------------------------------- updates */

static int type_matches(const feat_t *f, const char *type, ssize_t tl)
{
        if (f->ntypes == 0)
                return 1;
        if (tl < 0)
                return 0;
        for (size_t i = 0; i < f->ntypes; i++)
                if (strlen(f->types[i]) == (size_t)tl && !memcmp(f->types[i], type, (size_t)tl))
                        return 1;
        return 0;
}

/* The tile of number t in ts, inserted (zeroed) where it belongs if absent. */
static cell_t *tile_at(arena_t *a, tiles_t *ts, size_t nf, int64_t t)
{
        size_t i = ts->n;
        if (i > 0 && ts->t[i - 1] == t)
                return &ts->c[(i - 1) * nf];
        while (i > 0 && ts->t[i - 1] > t)
                i--;
        if (i > 0 && ts->t[i - 1] == t)
                return &ts->c[(i - 1) * nf];
        tiles_reserve(a, ts, nf, ts->n + 1);
        memmove(ts->t + i + 1, ts->t + i, (ts->n - i) * sizeof(*ts->t));
        memmove(ts->c + (i + 1) * nf, ts->c + i * nf, (ts->n - i) * nf * sizeof(cell_t));
        ts->t[i] = t;
        memset(&ts->c[i * nf], 0, nf * sizeof(cell_t));
        ts->n++;
        return &ts->c[i * nf];
}

static int item_newer(int64_t ts, int64_t off, const item_t *b)
{
        return ts > b->ts || (ts == b->ts && off > b->off);
}

static void list_add(arena_t *a, list_t *ls, size_t nmax, const char *id, size_t len, int64_t ts,
                     int64_t off)
{
        size_t at = ls->n;
        for (size_t i = 0; i < ls->n; i++)
                if (ls->it[i].len == len && !memcmp(ls->it[i].id, id, len)) {
                        at = i;
                        break;
                }
        item_t it;
        if (at < ls->n) {
                if (!item_newer(ts, off, &ls->it[at]))
                        return;
                it = ls->it[at];
                memmove(ls->it + at, ls->it + at + 1, (ls->n - at - 1) * sizeof(item_t));
                ls->n--;
        } else {
                if (ls->n == nmax && !item_newer(ts, off, &ls->it[ls->n - 1]))
                        return;
                if (ls->n == nmax)
                        ls->n--;
                it.id = arena_strndup(a, id, len);
                it.len = (uint32_t)len;
        }
        it.ts = ts;
        it.off = off;
        size_t i = 0;
        while (i < ls->n && !item_newer(ts, off, &ls->it[i]))
                i++;
        if (ls->n == ls->cap) {
                ls->cap = ls->cap ? ls->cap * 2 : 4;
                ls->it = arena_grow(a, ls->it, ls->n * sizeof(item_t), ls->cap * sizeof(item_t));
        }
        memmove(ls->it + i + 1, ls->it + i, (ls->n - i) * sizeof(item_t));
        ls->it[i] = it;
        ls->n++;
}

/* Lowest tile number inside window w at clock c. */
static int64_t win_lo(const win_t *w, int64_t c)
{
        return floordiv(c, w->slide) - w->steps + 1;
}

static int wf_process(void *self, eddy_ctx_t *ctx, const eddy_msg_t *msg)
{
        wf_t *wf = self;
        eddy_json_val_t *fv = wf->vals;
        char err[160];
        if (eddy_json_object(msg->value, msg->value_len, (const char *const *)wf->fields,
                             wf->nfields, fv, err, sizeof(err)))
                return eddy_reject(ctx, "json", "%s", err);
        const wf_conf_t *c = wf->conf;
        size_t maxid = (size_t)c->max_id_bytes;
        if (fv[FLD_ENTITY].type == EDDY_JSON_MISSING || fv[FLD_ENTITY].type == EDDY_JSON_NULL)
                return eddy_reject(ctx, "missing_field", "field \"%s\" is missing",
                                   c->entity_field);
        char ent[4097];
        ssize_t el = eddy_json_id(&fv[FLD_ENTITY], ent, maxid + 1);
        if (el <= 0 || (size_t)el > maxid)
                return eddy_reject(ctx, "bad_field",
                                   "%s: expected a non-empty string or integer of at most %zu "
                                   "bytes without NUL",
                                   c->entity_field, maxid);
        if (fv[FLD_TS].type == EDDY_JSON_MISSING || fv[FLD_TS].type == EDDY_JSON_NULL)
                return eddy_reject(ctx, "missing_field", "field \"ts\" is missing");
        int64_t ts;
        if (eddy_json_int64(&fv[FLD_TS], &ts) != 0 || ts < 0)
                return eddy_reject(ctx, "bad_field", "ts: expected an integer >= 0 (epoch ms)");
        char type[256];
        ssize_t tl = -1;
        if (fv[FLD_TYPE].type != EDDY_JSON_MISSING && fv[FLD_TYPE].type != EDDY_JSON_NULL) {
                tl = fv[FLD_TYPE].type == EDDY_JSON_STRING
                         ? eddy_json_unescape(&fv[FLD_TYPE], type, sizeof(type))
                         : -1;
                if (tl < 0)
                        return eddy_reject(ctx, "bad_field",
                                           "type: expected a string of at most 255 bytes");
        }

        /* check every field a matching feature reads before changing anything */
        uint8_t match[256];
        double num[256];
        for (size_t i = 0; i < wf->nfeats; i++) {
                const feat_t *f = &wf->feats[i];
                match[i] = (uint8_t)type_matches(f, type, tl);
                if (!match[i] || f->field < 0)
                        continue;
                const eddy_json_val_t *v = &fv[f->field];
                if (v->type == EDDY_JSON_MISSING || v->type == EDDY_JSON_NULL)
                        return eddy_reject(ctx, "missing_field",
                                           "field \"%s\" is missing (feature %s)",
                                           wf->fields[f->field], f->name);
                if (f->agg == AGG_DISTINCT || f->agg == AGG_LAST_N) {
                        char id[4097];
                        ssize_t il = eddy_json_id(v, id, maxid + 1);
                        if (il <= 0 || (size_t)il > maxid)
                                return eddy_reject(ctx, "bad_field",
                                                   "%s: expected a non-empty string or integer "
                                                   "of at most %zu bytes without NUL (feature "
                                                   "%s)",
                                                   wf->fields[f->field], maxid, f->name);
                } else if (eddy_json_double(v, &num[i]) != 0) {
                        return eddy_reject(ctx, "bad_field", "%s: expected a number (feature %s)",
                                           wf->fields[f->field], f->name);
                }
        }

        int32_t p = msg->partition;
        wpart_t *wp = part_of(wf, p);
        if (!wp->loaded) {
                int rc = part_load(wf, ctx, p, wp);
                if (rc)
                        return rc;
        }
        if (wp->has_clock && ts < wp->clock - c->lateness_ms) {
                eddy_counter_add(wf->late, 1);
                if (!wf->late_drop)
                        return eddy_reject(ctx, "late",
                                           "ts %" PRId64
                                           " is more than allowed.lateness.ms=%" PRId64
                                           " behind the partition's clock %" PRId64,
                                           ts, c->lateness_ms, wp->clock);
                wf->late_dropped++;
                return 0;
        }
        if (!wp->has_clock || ts > wp->clock) {
                wp->clock = ts;
                wp->has_clock = 1;
                wp->clock_dirty = 1;
        }
        if (c->idle_advance_ms > 0) {
                struct timespec now;
                clock_gettime(CLOCK_REALTIME, &now);
                wp->wall_last = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
                wp->clock_last = wp->clock;
        }

        int any = 0;
        for (size_t i = 0; i < wf->nfeats; i++)
                any |= match[i];
        if (!any)
                return 0; /* accepted (it moved the clock), but no feature reads it */
        went_t *e = ent_get(wf, ctx, p, ent, (size_t)el, 1);
        if (!e)
                return EDDY_ERR_STATE;
        e->changed = 1;
        for (size_t r = 0; r < wf->nres; r++) {
                const res_t *rs = &wf->res[r];
                int64_t t = floordiv(ts, rs->slide);
                if (t < floordiv(wp->clock, rs->slide) - rs->keep + 1)
                        continue; /* outside every window of this slide, now and later */
                cell_t *cells = NULL;
                for (size_t j = 0; j < rs->nfeats; j++) {
                        const feat_t *f = &wf->feats[rs->feats[j]];
                        if (!match[rs->feats[j]])
                                continue;
                        if (!cells)
                                cells = tile_at(&wf->arena, &e->tiles[r], rs->nfeats, t);
                        cell_t *cl = &cells[j];
                        double x = num[rs->feats[j]];
                        switch (f->agg) {
                        case AGG_COUNT:
                                break;
                        case AGG_SUM:
                        case AGG_AVG:
                                cl->v = cl->n ? cl->v + x : x;
                                break;
                        case AGG_MIN:
                                cl->v = cl->n && cl->v <= x ? cl->v : x;
                                break;
                        case AGG_MAX:
                                cl->v = cl->n && cl->v >= x ? cl->v : x;
                                break;
                        case AGG_DISTINCT: {
                                char id[4097];
                                ssize_t il = eddy_json_id(&fv[f->field], id, sizeof(id));
                                distinct_add(&wf->arena, cl, hash_id(id, (size_t)il, 0),
                                             f->exact_max);
                                break;
                        }
                        case AGG_LAST_N:
                                break;
                        }
                        cl->n++;
                }
        }
        for (size_t i = 0; i < wf->nfeats; i++) {
                const feat_t *f = &wf->feats[i];
                if (f->agg != AGG_LAST_N || !match[i])
                        continue;
                int inside = f->nwins == 0;
                for (size_t w = 0; w < f->nwins && !inside; w++)
                        inside = floordiv(ts, f->wins[w].slide) >= win_lo(&f->wins[w], wp->clock);
                if (!inside)
                        continue;
                char id[4097];
                ssize_t il = eddy_json_id(&fv[f->field], id, sizeof(id));
                list_add(&wf->arena, &e->lists[f->list], (size_t)f->n, id, (size_t)il, ts,
                         msg->offset);
        }
        return 0;
}

/* ---------------------------------------------------------------- values at the clock */

/* Drops what no window can see any more at clock c, and computes the due time. */
static void settle(wf_t *wf, went_t *e, int64_t c)
{
        for (size_t r = 0; r < wf->nres; r++) {
                tiles_t *ts = &e->tiles[r];
                size_t nf = wf->res[r].nfeats;
                int64_t lo = floordiv(c, wf->res[r].slide) - wf->res[r].keep + 1;
                size_t k = 0;
                while (k < ts->n && ts->t[k] < lo)
                        k++;
                if (k) {
                        memmove(ts->t, ts->t + k, (ts->n - k) * sizeof(*ts->t));
                        memmove(ts->c, ts->c + k * nf, (ts->n - k) * nf * sizeof(cell_t));
                        ts->n -= k;
                }
        }
        int64_t due = -1;
        for (size_t i = 0; i < wf->nfeats; i++) {
                const feat_t *f = &wf->feats[i];
                if (f->agg == AGG_LAST_N) {
                        list_t *ls = &e->lists[f->list];
                        if (f->nwins == 0)
                                continue;
                        /* keep the items some window still shows */
                        size_t keep = 0;
                        for (size_t j = 0; j < ls->n; j++) {
                                int in = 0;
                                for (size_t w = 0; w < f->nwins && !in; w++)
                                        in = floordiv(ls->it[j].ts, f->wins[w].slide) >=
                                             win_lo(&f->wins[w], c);
                                if (in)
                                        keep = j + 1;
                        }
                        ls->n = keep;
                        for (size_t w = 0; w < f->nwins; w++) {
                                const win_t *wn = &f->wins[w];
                                int64_t lo = win_lo(wn, c);
                                for (size_t j = ls->n; j-- > 0;) {
                                        int64_t t = floordiv(ls->it[j].ts, wn->slide);
                                        if (t < lo)
                                                continue;
                                        int64_t d = (t + wn->steps) * wn->slide;
                                        if (due < 0 || d < due)
                                                due = d;
                                        break;
                                }
                        }
                        continue;
                }
                for (size_t w = 0; w < f->nwins; w++) {
                        const win_t *wn = &f->wins[w];
                        const tiles_t *ts = &e->tiles[wn->res];
                        size_t nf = wf->res[wn->res].nfeats;
                        int slot = f->slot[wn->res];
                        int64_t lo = win_lo(wn, c);
                        for (size_t k = 0; k < ts->n; k++) {
                                if (ts->t[k] < lo || ts->c[k * nf + (size_t)slot].n == 0)
                                        continue;
                                int64_t d = (ts->t[k] + wn->steps) * wn->slide;
                                if (due < 0 || d < due)
                                        due = d;
                                break;
                        }
                }
        }
        e->due = due;
}

static int u64_cmp(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
}

/* Sorts a few hashes by insertion (a window's union is mostly a handful), more by qsort. */
static void u64_sort(uint64_t *a, size_t n)
{
        if (n > 32) {
                qsort(a, n, sizeof(*a), u64_cmp);
                return;
        }
        for (size_t i = 1; i < n; i++) {
                uint64_t x = a[i];
                size_t j = i;
                for (; j > 0 && a[j - 1] > x; j--)
                        a[j] = a[j - 1];
                a[j] = x;
        }
}

typedef struct hf_s {
        size_t noff, nlen, voff, vlen;
} hf_t;

/* Computes the entity's fields at clock c into wf->buf; @returns the number of fields, 0 if
 * every window is empty. fields[] gets offsets into wf->buf. */
static size_t values(wf_t *wf, const went_t *e, int64_t c, hf_t *fields)
{
        size_t nf = 0;
        int nonempty = 0;
        wf->blen = 0;
        for (size_t i = 0; i < wf->nfeats; i++) {
                const feat_t *f = &wf->feats[i];
                size_t nw = f->nwins ? f->nwins : 1;
                for (size_t w = 0; w < nw; w++) {
                        const win_t *wn = f->nwins ? &f->wins[w] : NULL;
                        const char *hname = wn ? wn->hfield : f->name;
                        char num[64];
                        const char *val = num;
                        size_t vlen = 0, voff = 0;
                        int have = 1, inbuf = 0;
                        if (f->agg == AGG_LAST_N) {
                                const list_t *ls = &e->lists[f->list];
                                int64_t lo = wn ? win_lo(wn, c) : 0;
                                voff = wf->blen;
                                out_str(wf, "[");
                                size_t k = 0;
                                for (size_t j = 0; j < ls->n && k < (size_t)f->n; j++) {
                                        if (wn && floordiv(ls->it[j].ts, wn->slide) < lo)
                                                continue;
                                        if (k++)
                                                out_str(wf, ",");
                                        out_json_str(wf, ls->it[j].id, ls->it[j].len);
                                }
                                out_str(wf, "]");
                                vlen = wf->blen - voff;
                                inbuf = 1;
                                nonempty |= k > 0;
                        } else {
                                const tiles_t *ts = &e->tiles[wn->res];
                                size_t tf = wf->res[wn->res].nfeats;
                                int slot = f->slot[wn->res];
                                int64_t lo = win_lo(wn, c), hi = floordiv(c, wn->slide);
                                int64_t n = 0;
                                double v = 0;
                                size_t sn = 0;
                                uint8_t hll[HLL_M];
                                int use_hll = 0;
                                for (size_t k = 0; k < ts->n; k++) {
                                        if (ts->t[k] < lo || ts->t[k] > hi)
                                                continue;
                                        const cell_t *cl = &ts->c[k * tf + (size_t)slot];
                                        if (cl->n == 0)
                                                continue;
                                        if (f->agg == AGG_SUM || f->agg == AGG_AVG)
                                                v = n ? v + cl->v : cl->v;
                                        else if (f->agg == AGG_MIN)
                                                v = n && v <= cl->v ? v : cl->v;
                                        else if (f->agg == AGG_MAX)
                                                v = n && v >= cl->v ? v : cl->v;
                                        else if (f->agg == AGG_DISTINCT) {
                                                if (cl->hll && !use_hll) {
                                                        use_hll = 1;
                                                        memset(hll, 0, sizeof(hll));
                                                        for (size_t q = 0; q < sn; q++)
                                                                hll_add(hll, wf->set[q]);
                                                }
                                                if (use_hll) {
                                                        if (cl->hll)
                                                                for (int q = 0; q < HLL_M; q++)
                                                                        hll[q] = hll[q] > cl->hll[q]
                                                                                     ? hll[q]
                                                                                     : cl->hll[q];
                                                        else
                                                                for (uint32_t q = 0; q < cl->dn;
                                                                     q++)
                                                                        hll_add(hll, cl->dh[q]);
                                                } else {
                                                        if (sn + cl->dn > wf->setcap) {
                                                                wf->setcap = (sn + cl->dn) * 2;
                                                                wf->set = eddy__xrealloc(
                                                                    wf->set, wf->setcap * 8);
                                                        }
                                                        memcpy(wf->set + sn, cl->dh, cl->dn * 8);
                                                        sn += cl->dn;
                                                }
                                        }
                                        n += cl->n;
                                }
                                nonempty |= n > 0;
                                switch (f->agg) {
                                case AGG_COUNT:
                                        vlen = fmt_i64(n, num);
                                        break;
                                case AGG_SUM:
                                        vlen = fmt_num(n ? v : 0.0, num, sizeof(num));
                                        break;
                                case AGG_AVG:
                                        have = n > 0;
                                        if (have)
                                                vlen = fmt_num(v / (double)n, num, sizeof(num));
                                        break;
                                case AGG_MIN:
                                case AGG_MAX:
                                        have = n > 0;
                                        if (have)
                                                vlen = fmt_num(v, num, sizeof(num));
                                        break;
                                case AGG_DISTINCT: {
                                        int64_t dc = 0;
                                        if (!use_hll) {
                                                /* the union of the tiles' exact sets */
                                                uint64_t *set = wf->set;
                                                u64_sort(set, sn);
                                                for (size_t a = 0; a < sn; a++)
                                                        dc += a == 0 || set[a] != set[a - 1];
                                                if (dc > f->exact_max) {
                                                        use_hll = 1;
                                                        memset(hll, 0, sizeof(hll));
                                                        for (size_t q = 0; q < sn; q++)
                                                                hll_add(hll, set[q]);
                                                }
                                        }
                                        if (use_hll)
                                                dc = hll_estimate(hll);
                                        vlen = fmt_i64(dc, num);
                                        break;
                                }
                                case AGG_LAST_N:
                                        break;
                                }
                                if (have && !strchr("0123456789-", num[0]))
                                        have = 0; /* inf or nan: not a value */
                        }
                        if (!have)
                                continue;
                        hf_t *h = &fields[nf++];
                        h->noff = wf->blen;
                        out_str(wf, hname);
                        h->nlen = wf->blen - h->noff;
                        if (inbuf) {
                                h->voff = voff;
                        } else {
                                h->voff = wf->blen;
                                out_put(wf, val, vlen);
                        }
                        h->vlen = vlen;
                }
        }
        return nonempty ? nf : 0;
}

static size_t nfields_max(const wf_t *wf)
{
        size_t n = 0;
        for (size_t i = 0; i < wf->nfeats; i++)
                n += wf->feats[i].nwins ? wf->feats[i].nwins : 1;
        return n;
}

/* Big-endian bytes from..from+n of the id, zero-padded: with the partition in front, the
 * keys order entities as ent_cmp() does, up to ties (ids have no NUL, and a shorter id
 * whose bytes prefix another sorts first either way). */
static uint64_t id_be(const went_t *e, size_t from, size_t n)
{
        uint64_t k = 0;
        for (size_t i = from; i < from + n; i++)
                k = k << 8 | (i < e->idlen ? (unsigned char)e->id[i] : 0);
        return k;
}

static int ent_cmp(const void *a, const void *b)
{
        const wsort_t *sx = a, *sy = b;
        if (sx->k0 != sy->k0)
                return sx->k0 < sy->k0 ? -1 : 1;
        if (sx->k1 != sy->k1)
                return sx->k1 < sy->k1 ? -1 : 1;
        const went_t *x = sx->e, *y = sy->e;
        size_t n = x->idlen < y->idlen ? x->idlen : y->idlen;
        int c = memcmp(x->id, y->id, n);
        if (c)
                return c;
        return x->idlen < y->idlen ? -1 : x->idlen > y->idlen;
}

/* {"entity":..,"ts":..,"features":{..}} (with @p whole) or just the features object, built
 * in buf after the hash fields; @returns its offset in buf (it ends at wf->blen). */
static size_t features_json(wf_t *wf, const went_t *e, int64_t c, const hf_t *hf, size_t n,
                            int whole)
{
        /* The fields' names and values are copied from buf itself: make room for the worst
         * case first (every byte escaped as \u00XX), so that buf does not move under them. */
        size_t need = 64 + 6 * e->idlen;
        for (size_t i = 0; i < n; i++)
                need += 4 + 6 * hf[i].nlen + hf[i].vlen;
        if (wf->blen + need > wf->bcap) {
                wf->bcap = (wf->blen + need) * 2;
                wf->buf = eddy__xrealloc(wf->buf, wf->bcap);
        }
        size_t start = wf->blen;
        if (whole) {
                char num[32];
                out_str(wf, "{\"entity\":");
                out_json_str(wf, e->id, e->idlen);
                snprintf(num, sizeof(num), ",\"ts\":%" PRId64 ",\"features\":", c);
                out_str(wf, num);
        }
        out_str(wf, "{");
        for (size_t i = 0; i < n; i++) {
                if (i)
                        out_str(wf, ",");
                out_json_str(wf, wf->buf + hf[i].noff, hf[i].nlen);
                out_str(wf, ":");
                out_put(wf, wf->buf + hf[i].voff, hf[i].vlen);
        }
        out_str(wf, whole ? "}}" : "}");
        return start;
}

/* The warehouse row of an entity's update (feature_update), if the job writes one. */
static void feature_row(wf_t *wf, eddy_ctx_t *ctx, const went_t *e, int64_t c, const hf_t *hf,
                        size_t n)
{
        eddy_row_t *row = eddy_row_begin(ctx, e->partition, 0, c);
        if (!row)
                return;
        size_t start = features_json(wf, e, c, hf, n, 0);
        eddy_row_string(row, e->id, e->idlen);
        eddy_row_long(row, c);
        eddy_row_bool(row, n == 0);
        eddy_row_string(row, wf->buf + start, wf->blen - start);
        eddy_row_end(row);
        wf->blen = start;
}

/* Writes one entity: state, Redis, the output topic and the warehouse. */
static void emit(wf_t *wf, eddy_ctx_t *ctx, went_t *e, int64_t c, hf_t *hf, eddy_hfield_t *ef)
{
        const wf_conf_t *cf = wf->conf;
        settle(wf, e, c);
        size_t n = values(wf, e, c, hf);
        char kb[4100];
        kb[0] = 'e';
        memcpy(kb + 1, e->id, e->idlen);
        size_t plen = strlen(cf->prefix);
        if (plen + e->idlen > wf->rkcap) {
                wf->rkcap = (plen + e->idlen) * 2;
                wf->rkey = eddy__xrealloc(wf->rkey, wf->rkcap);
        }
        char *rk = wf->rkey;
        memcpy(rk, cf->prefix, plen);
        memcpy(rk + plen, e->id, e->idlen);
        if (n == 0) {
                wf->n_deletes++;
                if (e->existed)
                        eddy_state_del(ctx, e->partition, kb, e->idlen + 1);
                eddy_out_redis_del(ctx, e->partition, rk, plen + e->idlen);
                if (cf->output_topic && *cf->output_topic && e->existed)
                        eddy_out_kafka(ctx, e->partition, cf->output_topic, e->id, e->idlen, NULL,
                                       0);
                if (e->existed)
                        feature_row(wf, ctx, e, c, hf, 0);
                return;
        }
        for (size_t i = 0; i < n; i++)
                ef[i] = (eddy_hfield_t){wf->buf + hf[i].noff, hf[i].nlen, wf->buf + hf[i].voff,
                                        hf[i].vlen};
        eddy_out_redis_hash(ctx, e->partition, rk, plen + e->idlen, ef, n, cf->ttl_ms);
        wf->n_writes++;
        if (cf->output_topic && *cf->output_topic) {
                size_t start = features_json(wf, e, c, hf, n, 1);
                eddy_out_kafka(ctx, e->partition, cf->output_topic, e->id, e->idlen,
                               wf->buf + start, wf->blen - start);
        }
        feature_row(wf, ctx, e, c, hf, n);
        encode(wf, e);
        eddy_state_put(ctx, e->partition, kb, e->idlen + 1, wf->enc, wf->elen);
        if (e->due >= 0 && (!e->existed || e->due != e->loaded_due)) {
                wpart_t *wp = part_of(wf, e->partition);
                heap_push(wp, e->due, e->id, e->idlen);
                wf->n_pushes++;
        }
}

static int wf_flush(void *self, eddy_ctx_t *ctx)
{
        wf_t *wf = self;
        const wf_conf_t *cf = wf->conf;
        int64_t wall = 0;
        if (cf->idle_advance_ms > 0) {
                struct timespec now;
                clock_gettime(CLOCK_REALTIME, &now);
                wall = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
        }
        /* idle advance: an assigned partition not seen since the start idles from the start */
        for (int32_t p = 0; cf->idle_advance_ms > 0 && p < IDLE_MAX_PARTITIONS; p++) {
                wpart_t *wp = part_of(wf, p);
                if (wp->loaded || !eddy_partition_assigned(ctx, p))
                        continue;
                int rc = part_load(wf, ctx, p, wp);
                if (rc)
                        return -1;
                wp->wall_last = wall;
        }
        for (size_t p = 0; p < wf->nparts; p++) {
                wpart_t *wp = &wf->parts[p];
                if (!wp->loaded)
                        continue;
                if (cf->idle_advance_ms > 0 && wp->has_clock && wp->wall_last > 0 &&
                    wall - wp->wall_last >= cf->idle_advance_ms &&
                    eddy_partition_assigned(ctx, (int32_t)p)) {
                        int64_t c = wp->clock_last + (wall - wp->wall_last);
                        if (c > wp->clock) {
                                wp->clock = c;
                                wp->clock_dirty = 1;
                        }
                }
                if (!wp->clock_dirty)
                        continue;
                /* timers the clock has reached */
                while (wp->hn > 0 && wp->heap[0].due <= wp->clock) {
                        wtimer_t t;
                        heap_pop(wp, &t);
                        wf->n_pops++;
                        went_t *e = ent_get(wf, ctx, (int32_t)p, wp->ids + t.off, t.len, 0);
                        if (!e)
                                return -1;
                        if (e->existed && e->loaded_due == t.due) {
                                e->changed = 1;
                                wf->n_timers++;
                        }
                }
                heap_compact(wp);
                unsigned char b[8];
                put_be64(b, (uint64_t)wp->clock);
                eddy_state_put(ctx, (int32_t)p, "C", 1, b, 8);
                wp->clock_dirty = 0;
        }
        /* the batch's entities, in (partition, id) order: the outbox is the same bytes
         * whatever the hash table's order */
        size_t n = 0;
        wf->order = eddy__xrealloc(wf->order, (wf->mapn ? wf->mapn : 1) * sizeof(*wf->order));
        for (size_t i = 0; i < wf->mapcap; i++) {
                went_t *e = wf->map[i].e;
                if (e)
                        wf->order[n++] =
                            (wsort_t){(uint64_t)(uint32_t)e->partition << 32 | id_be(e, 0, 4),
                                      id_be(e, 4, 8), e};
        }
        qsort(wf->order, n, sizeof(*wf->order), ent_cmp);
        size_t nmax = nfields_max(wf);
        hf_t *hf = eddy__xrealloc(NULL, nmax * sizeof(*hf));
        eddy_hfield_t *ef = eddy__xrealloc(NULL, nmax * sizeof(*ef));
        for (size_t i = 0; i < n; i++) {
                went_t *e = wf->order[i].e;
                if (e->changed)
                        emit(wf, ctx, e, wf->parts[e->partition].clock, hf, ef);
        }
        free(hf);
        free(ef);
        if (wf->mapcap)
                memset(wf->map, 0, wf->mapcap * sizeof(*wf->map));
        wf->mapn = 0;
        arena_reset(&wf->arena);
        return 0;
}

/* ---------------------------------------------------------------- life cycle */

static void wf_close(void *self)
{
        wf_t *wf = self;
        if (!wf)
                return;
        if (wf->late_dropped && wf->ctx)
                eddy_log(wf->ctx, LOG_NOTICE, "LATE",
                         "dropped %" PRId64 " late events (late.policy=drop)", wf->late_dropped);
        if (wf->ctx && (wf->n_writes || wf->n_deletes))
                eddy_log(wf->ctx, LOG_INFO, "PROC",
                         "entities written %" PRId64 ", deleted %" PRId64 ", woken by their "
                         "windows sliding %" PRId64 " (timers set %" PRId64 ", fired %" PRId64 ")",
                         wf->n_writes, wf->n_deletes, wf->n_timers, wf->n_pushes, wf->n_pops);
        arena_free(&wf->arena);
        free(wf->map);
        free(wf->order);
        for (size_t p = 0; p < wf->nparts; p++) {
                free(wf->parts[p].heap);
                free(wf->parts[p].ids);
        }
        free(wf->parts);
        feats_free(wf);
        free(wf->vals);
        free(wf->buf);
        free(wf->enc);
        free(wf->set);
        free(wf->rkey);
        free(wf);
}

static int wf_init(eddy_ctx_t *ctx, const void *conf, void **selfp, char *errstr,
                   size_t errstr_size)
{
        wf_t *wf = calloc(1, sizeof(*wf));
        if (!wf) {
                snprintf(errstr, errstr_size, "window-features: out of memory");
                return -1;
        }
        wf->conf = conf;
        wf->ctx = ctx;
        /* Each batch makes a few buffers of tens of MiB (its outbox entry, its RocksDB write
         * batch) between a million small, long-lived state cache entries. glibc serves such
         * buffers with mmap until one is freed, then raises its threshold to that size and
         * carves them out of the heap, where the holes they leave stay resident: 150 MiB of
         * the bench's peak RSS. A fixed threshold keeps them mapped and returned on free
         * (no CPU cost measured). One process runs one job, so this is the job's setting. */
        mallopt(M_MMAP_THRESHOLD, 4 << 20);
        const wf_conf_t *c = conf;
        if (!strcmp(c->late_policy, "drop"))
                wf->late_drop = 1;
        else if (strcmp(c->late_policy, "dlq")) {
                snprintf(errstr, errstr_size, "late.policy: expected dlq or drop, got \"%s\"",
                         c->late_policy);
                wf_close(wf);
                return -1;
        }
        if (!c->entity_field || !*c->entity_field) {
                snprintf(errstr, errstr_size, "entity.field: expected a field name");
                wf_close(wf);
                return -1;
        }
        if (layout(wf, errstr, errstr_size)) {
                wf->ctx = NULL;
                wf_close(wf);
                return -1;
        }
        wf->vals = eddy__xrealloc(NULL, wf->nfields * sizeof(*wf->vals));
        wf->late = eddy_counter_new(ctx, "late_events",
                                    "Events more than allowed.lateness.ms behind their partition's "
                                    "clock (dead-lettered with reason late, or dropped)");
        *selfp = wf;
        return 0;
}

/* Warehouse tables: the feature log (docs/warehouse.md). */
static const char *const wf_tables[] = {"feature_update", NULL};

static const char *const wf_inputs[] = {"activity_event", NULL};

/* Two runtime defaults, for memory (the bench's 1M entities within 512 MiB):
 * - kafka.queued.max.messages.kbytes: librdkafka 2.0.2 checks it against the partition's
 *   fetch queue, and rd_kafka_q_size() of a forwarded queue is the size of the consumer's
 *   queue, so it bounds the prefetch of all partitions together, payload only: at 16 MiB
 *   librdkafka held ~65 MiB (its per-record ops and the fetch buffers) in an arena of
 *   ~80 MiB. 8 MiB (~60k events, about two seconds of work here) kept the job fed in the
 *   bench; 4 MiB doubled its wait in poll, 2 MiB starved it.
 * - batch.max.events: a batch's working set is per written entity, not per event: the
 *   decoded entities (~1 KiB each in the arena), the outbox entry (a 12-field hash each)
 *   and the RocksDB write batch, and up to three batches are alive at once (the one being
 *   built, two queued for the committer). In the bench 20000 events made ~45k entity
 *   writes and these buffers ~165 MiB at the peak; 10000, ~90 MiB, at no CPU cost measured:
 *   the committer (Redis) sets the pace, the main thread waited for it half of the time
 *   either way. */
static const char *const wf_runtime_defaults[] = {"kafka.queued.max.messages.kbytes", "8192",
                                                  "batch.max.events", "10000", NULL};

const eddy_processor_t eddy_window_features = {
    .abi_version = EDDY_ABI_VERSION,
    .name = "window-features",
    .summary = "sliding-window features per entity in event time into Redis (feat:<entity>)",
    .default_input = "activity",
    .props = wf_props,
    .conf_size = sizeof(wf_conf_t),
    .init = wf_init,
    .process = wf_process,
    .flush = wf_flush,
    .close = wf_close,
    .tables = wf_tables,
    .runtime_defaults = wf_runtime_defaults,
    .input_schemas = wf_inputs,
    .output_schema = "feature_output",
};
