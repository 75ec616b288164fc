/* ips_samples.c: impressions joined with engagements into IPS-weighted training samples
 * (docs/ips-samples.md).
 *
 * Input topics, by position in input.topics: [0] impressions, [1] engagements, co-partitioned
 * by user_id (the runtime checks the partition counts: .copartitioned). State, per input
 * partition number (shared by the two topics):
 *   'K'                   ->  the two topic clocks (highest accepted ts), 2 x 8 bytes
 *   'i' rid               ->  the request's impressions: each pending (its labels so far) or
 *                             a done marker (see imp_get())
 *   'h' rid '\0' iid      ->  engagements held: no impression of theirs counted them yet
 *   'P' position (BE 16)  ->  exploration counts of the estimator: impressions, clicks
 *
 * Each topic has its own clock and judges its own records late, and windows close on the
 * watermark min(impression clock, engagement clock) - allowed.lateness.ms. The two topics
 * reach process() interleaved by fetch timing, not by anything in the data; these rules
 * make every output depend only on each topic's own record order (the argument is in
 * docs/ips-samples.md). Three in-memory heaps per partition, rebuilt by one scan of its
 * state the first time this process sees it, say when something is due: pending impressions
 * by window end, held engagements by ts, requests with done markers by the end of the
 * retention of their earliest one.
 * A heap entry that no longer matches the state is stale and skipped. Due samples are
 * emitted in (window end, ts, request_id, item_id) order from process(), at the record that
 * moved the watermark. */
#include "ips_samples.h"
#include "eddy.h"
#include "json.h"
#include "mem.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ip_conf_s {
        int64_t window_ms;
        int64_t lateness_ms;
        int64_t retention_ms;
        char *source;
        char *table;
        char *smoothing;
        int64_t min_count;
        int64_t max_position;
        char *clip;
        char *keep_rate;
        char *model_tag;
        char *output_topic;
        int orphans_to_dlq;
        int64_t max_id_bytes;
} ip_conf_t;

#define CONF(f) offsetof(ip_conf_t, f)
#define TS_MAX  (INT64_MAX / 4)

static const eddy_prop_t ip_props[] = {
    {"attribution.window.ms", EDDY_PROP_INT, "1800000", 0, TS_MAX, CONF(window_ms),
     "Engagements with ts in [impression ts, impression ts + this] count for the impression"},
    {"allowed.lateness.ms", EDDY_PROP_INT, "60000", 0, TS_MAX, CONF(lateness_ms),
     "A record with ts below its topic's clock in the partition minus this is late "
     "(dead-lettered, reason late); windows close this far behind the watermark"},
    {"dedupe.retention.ms", EDDY_PROP_INT, "86400000", 0, TS_MAX, CONF(retention_ms),
     "An impression of an already seen (request_id, item_id) with ts up to first ts + "
     "attribution.window.ms + this is a duplicate (dropped, counted)"},
    {"propensity.source", EDDY_PROP_STR, "event", 0, 0, CONF(source),
     "Where a position's propensity comes from: event (the impression's propensity field, "
     "else the table), table (propensity.table) or estimate (online, from explore=true "
     "impressions; the table until estimator.min.count)"},
    {"propensity.table", EDDY_PROP_JSON, "[1]", 0, 0, CONF(table),
     "Propensity by position: a JSON array, element k-1 for position k, the last element for "
     "positions past its end; each in (0, 1]"},
    {"estimator.smoothing", EDDY_PROP_STR, "1", 0, 0, CONF(smoothing),
     "Additive smoothing s of the estimator: ctr(k) = (clicks_k + s) / (impressions_k + 2s)"},
    {"estimator.min.count", EDDY_PROP_INT, "1000", 1, INT64_MAX / 4, CONF(min_count),
     "Explore impressions needed at position k and at position 1 before the estimate of k "
     "replaces the table"},
    {"estimator.max.position", EDDY_PROP_INT, "50", 1, 1000, CONF(max_position),
     "Highest position the estimator counts; positions past it use the table"},
    {"weight.clip", EDDY_PROP_STR, "0.01", 0, 0, CONF(clip),
     "weight = 1 / max(propensity, this) (times 1 / negative.keep.rate for a kept "
     "negative); a number in (0, 1]"},
    {"negative.keep.rate", EDDY_PROP_STR, "1", 0, 0, CONF(keep_rate),
     "Share of negatives (not clicked, watch_frac 0) kept, by a hash of (request_id, item_id); "
     "a number in (0, 1]"},
    {"model.tag", EDDY_PROP_STR, NULL, 0, 0, CONF(model_tag),
     "Model/version tag written into every sample (default: empty)"},
    {"output.topic", EDDY_PROP_STR, NULL, 0, 0, CONF(output_topic),
     "Also send each sample as a JSON record to this topic, keyed by user_id (default: none)"},
    {"orphans.to.dlq", EDDY_PROP_BOOL, "false", 0, 1, CONF(orphans_to_dlq),
     "Send engagements that counted for no impression to the dead-letter topic (reason "
     "orphan); they are counted either way"},
    {"max.id.bytes", EDDY_PROP_INT, "256", 1, 4096, CONF(max_id_bytes),
     "Longest request_id / user_id / item_id accepted; longer ones go to the dead-letter "
     "topic"},
    {NULL},
};

/* ---------------------------------------------------------------- types */

typedef struct tent_s {
        int64_t due;
        char *key; /* 'i' or 'h' rid '\0' iid */
        uint32_t len;
} tent_t;

typedef struct theap_s {
        tent_t *v;
        size_t n, cap;
} theap_t;

enum { H_IMP, H_HELD, H_DONE, NHEAPS };

#define NO_CLOCK INT64_MIN

/* A counting set of 64-bit hashes (open addressing, backward-shift deletion): the keys that
 * have held engagements, so that an impression looks for them only when there may be some. */
typedef struct hset_s {
        uint64_t *k; /* 0: empty */
        uint32_t *c;
        size_t cap, n;
} hset_t;

typedef struct ipart_s {
        int loaded;
        hset_t held;      /* hashes of the 'h' keys in the state */
        int64_t clock[2]; /* impressions, engagements; NO_CLOCK until the first record */
        int dirty;        /* clocks changed since the last flush */
        int64_t *cnt;     /* estimator: explore impressions and clicks per position, 2 each */
        uint8_t *cdirty;  /* ... changed since the last flush, per position */
        int cany;
        theap_t h[NHEAPS]; /* dues: window end, engagement ts, end of dedupe retention */
} ipart_t;

typedef enum { SRC_EVENT, SRC_TABLE, SRC_ESTIMATE } src_t;
static const char *const src_names[] = {"event", "table", "estimate"};

/* A pending impression as stored under its 'i' key. */
typedef struct imp_s {
        int done;
        int64_t ts;
        int32_t position;
        int explore, has_prop, clicked;
        double prop, wfrac;
        int64_t offset;
        const char *topic, *user; /* point into the stored value */
        size_t tlen, ulen;
} imp_t;

/* One held engagement, as stored in an 'h' value. */
typedef struct heng_s {
        int64_t ts;
        int watch;
        double frac;
        int64_t offset;
        int raw; /* the record itself follows (orphans.to.dlq) */
        const char *topic, *key, *value;
        size_t tlen, klen, vlen;
        int has_key;
} heng_t;

typedef struct ip_s {
        const ip_conf_t *conf;
        src_t source;
        double *table;
        size_t ntable;
        double smoothing, clip, keep_rate;
        const char *tag;
        ipart_t *parts;
        size_t nparts;
        eddy_counter_t *c_samples, *c_negdrop, *c_dups, *c_orphans, *c_late;
        char *buf; /* scratch: output JSON, encoded values */
        size_t blen, bcap;
        char *val; /* scratch: a state value being rewritten */
        size_t vlen, vcap;
        char *req; /* scratch: a request's value being rebuilt */
        size_t rcap;
} ip_t;

enum {
        F_REQUEST_ID,
        F_USER_ID,
        F_ITEM_ID,
        F_TS,
        F_POSITION,
        F_PROPENSITY,
        F_EXPLORE,
        F_TYPE,
        F_WATCH_TIME,
        F_DURATION,
        NFIELDS
};
static const char *const fields[NFIELDS] = {"request_id", "user_id",    "item_id", "ts",
                                            "position",   "propensity", "explore", "type",
                                            "watch_time", "duration"};

/* ---------------------------------------------------------------- pure functions */

uint64_t eddy__ips_hash(const char *rid, size_t rlen, const char *iid, size_t ilen)
{
        uint64_t h = 0xcbf29ce484222325ULL;
        for (size_t i = 0; i < rlen; i++)
                h = (h ^ (unsigned char)rid[i]) * 0x100000001b3ULL;
        h = (h ^ 0) * 0x100000001b3ULL;
        for (size_t i = 0; i < ilen; i++)
                h = (h ^ (unsigned char)iid[i]) * 0x100000001b3ULL;
        h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
        h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
        return h ^ (h >> 31);
}

int eddy__ips_keep(uint64_t h, double rate)
{
        return (double)(h >> 11) * 0x1.0p-53 < rate;
}

double eddy__ips_estimate(int64_t imps_k, int64_t clicks_k, int64_t imps_1, int64_t clicks_1,
                          double s, int64_t min_count)
{
        if (imps_k < min_count || imps_1 < min_count)
                return -1;
        double ck = ((double)clicks_k + s) / ((double)imps_k + 2 * s);
        double c1 = ((double)clicks_1 + s) / ((double)imps_1 + 2 * s);
        if (!(c1 > 0))
                return -1;
        double e = ck / c1;
        return e > 1 ? 1 : e;
}

/* ---------------------------------------------------------------- encoding */

static void put64(char *p, uint64_t v)
{
        for (int i = 7; i >= 0; i--, v >>= 8)
                p[i] = (char)(unsigned char)v;
}

static uint64_t get64(const char *p)
{
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
                v = (v << 8) | (unsigned char)p[i];
        return v;
}

static uint64_t dbits(double d)
{
        uint64_t u;
        memcpy(&u, &d, 8);
        return u;
}

static double bitsd(uint64_t u)
{
        double d;
        memcpy(&d, &u, 8);
        return d;
}

static void val_put(ip_t *ip, const void *p, size_t n)
{
        if (ip->vlen + n > ip->vcap) {
                ip->vcap = (ip->vlen + n) * 2 + 64;
                ip->val = eddy__xrealloc(ip->val, ip->vcap);
        }
        memcpy(ip->val + ip->vlen, p, n);
        ip->vlen += n;
}

static void val_u64(ip_t *ip, uint64_t v)
{
        char b[8];
        put64(b, v);
        val_put(ip, b, 8);
}

static void val_u32(ip_t *ip, uint32_t v)
{
        char b[4] = {(char)(v >> 24), (char)(v >> 16), (char)(v >> 8), (char)v};
        val_put(ip, b, 4);
}

static uint32_t get32(const char *p)
{
        const unsigned char *s = (const unsigned char *)p;
        return (uint32_t)s[0] << 24 | (uint32_t)s[1] << 16 | (uint32_t)s[2] << 8 | s[3];
}

/* pending: 'p' ts(8) position(4) flags(1) prop(8) wfrac(8) offset(8) tlen(4) topic ulen(4)
 * user; done: 'd' ts(8). flags: 1 explore, 2 has propensity, 4 clicked. */
static void imp_encode(ip_t *ip, const imp_t *im)
{
        ip->vlen = 0;
        val_put(ip, im->done ? "d" : "p", 1);
        val_u64(ip, (uint64_t)im->ts);
        if (im->done)
                return;
        val_u32(ip, (uint32_t)im->position);
        char fl = (char)((im->explore ? 1 : 0) | (im->has_prop ? 2 : 0) | (im->clicked ? 4 : 0));
        val_put(ip, &fl, 1);
        val_u64(ip, dbits(im->prop));
        val_u64(ip, dbits(im->wfrac));
        val_u64(ip, (uint64_t)im->offset);
        val_u32(ip, (uint32_t)im->tlen);
        val_put(ip, im->topic, im->tlen);
        val_u32(ip, (uint32_t)im->ulen);
        val_put(ip, im->user, im->ulen);
}

/* @returns 0, or -1 if the value is not one imp_encode() wrote. */
static int imp_decode(const char *v, size_t vl, imp_t *im)
{
        memset(im, 0, sizeof(*im));
        if (vl < 9 || (v[0] != 'p' && v[0] != 'd'))
                return -1;
        im->done = v[0] == 'd';
        im->ts = (int64_t)get64(v + 1);
        if (im->done)
                return vl == 9 ? 0 : -1;
        if (vl < 9 + 4 + 1 + 24 + 4)
                return -1;
        const char *p = v + 9;
        im->position = (int32_t)get32(p);
        int fl = (unsigned char)p[4];
        im->explore = fl & 1;
        im->has_prop = (fl & 2) != 0;
        im->clicked = (fl & 4) != 0;
        im->prop = bitsd(get64(p + 5));
        im->wfrac = bitsd(get64(p + 13));
        im->offset = (int64_t)get64(p + 21);
        p += 29;
        size_t left = vl - (size_t)(p - v);
        im->tlen = get32(p);
        if (left < 8 + im->tlen)
                return -1;
        im->topic = p + 4;
        p += 4 + im->tlen;
        im->ulen = get32(p);
        if (left != 8 + im->tlen + im->ulen)
                return -1;
        im->user = p + 4;
        return 0;
}

/* ---------------------------------------------------------------- impressions, by request
 *
 * The impressions of one request live in one state value, 'i' request_id, so that the
 * impressions a request shows together cost one state write, not one each. The value is a
 * sequence of items: u32 n (bytes that follow), u16 item_id length, item_id, then the record
 * imp_encode() writes. Everything else addresses an impression by its full key,
 * 'i' request_id '\0' item_id. */

typedef struct islot_s {
        const char *v; /* the request's value (NULL: none) */
        size_t vl;
        size_t start, end; /* the item's span in v; start == end == vl when absent */
        const char *rec;   /* the item's record, when found */
        size_t rlen;
} islot_t;

/* The request key's length within a full key: 'i' + request_id. */
static size_t req_klen(const char *key)
{
        return 1 + strlen(key + 1);
}

/* Finds the impression of full key @p key. @returns 1 found, 0 not, <0 error (negated). */
static int imp_get(eddy_ctx_t *ctx, int32_t p, const char *key, size_t klen, islot_t *s)
{
        size_t rk = req_klen(key);
        const char *iid = key + rk + 1;
        size_t il = klen - rk - 1;
        const void *v = NULL;
        size_t vl = 0;
        memset(s, 0, sizeof(*s));
        int r = eddy_state_get(ctx, p, key, rk, &v, &vl);
        if (r < 0)
                return r;
        if (r == 0)
                return 0;
        s->v = v;
        s->vl = vl;
        s->start = s->end = vl;
        for (size_t at = 0; at + 6 <= vl;) {
                size_t n = get32(s->v + at);
                size_t l = (size_t)(unsigned char)s->v[at + 4] << 8 | (unsigned char)s->v[at + 5];
                if (n < 2 + l || at + 4 + n > vl)
                        return -EDDY_ERR_STATE;
                if (l == il && !memcmp(s->v + at + 6, iid, il)) {
                        s->start = at;
                        s->end = at + 4 + n;
                        s->rec = s->v + at + 6 + il;
                        s->rlen = n - 2 - il;
                        return 1;
                }
                at += 4 + n;
        }
        return 0;
}

/* The earliest end of retention among the done markers of a request's value, or -1. */
static int64_t req_done_due(const ip_conf_t *c, const char *v, size_t vl)
{
        int64_t due = -1;
        for (size_t at = 0; at + 6 <= vl;) {
                size_t n = get32(v + at);
                size_t il = (size_t)(unsigned char)v[at + 4] << 8 | (unsigned char)v[at + 5];
                imp_t im;
                if (n < 2 + il || at + 4 + n > vl)
                        break;
                if (imp_decode(v + at + 6 + il, n - 2 - il, &im) == 0 && im.done) {
                        int64_t d = im.ts + c->window_ms + c->retention_ms;
                        if (due < 0 || d < due)
                                due = d;
                }
                at += 4 + n;
        }
        return due;
}

/* Replaces (or adds, or with @p rec NULL removes) the impression @p s found, writing the
 * request's value. @p rec must not point into s->v. */
static void imp_set(ip_t *ip, eddy_ctx_t *ctx, int32_t p, const char *key, size_t klen,
                    const islot_t *s, const char *rec, size_t rlen)
{
        size_t rk = req_klen(key);
        const char *iid = key + rk + 1;
        size_t il = klen - rk - 1;
        size_t item = rec ? 6 + il + rlen : 0;
        size_t n = s->start + item + (s->vl - s->end);
        if (n == 0) {
                eddy_state_del(ctx, p, key, rk);
                return;
        }
        if (n > ip->rcap) {
                ip->rcap = n * 2;
                ip->req = eddy__xrealloc(ip->req, ip->rcap);
        }
        char *b = ip->req;
        if (s->start)
                memcpy(b, s->v, s->start);
        b += s->start;
        if (rec) {
                uint32_t len = (uint32_t)(2 + il + rlen);
                b[0] = (char)(len >> 24);
                b[1] = (char)(len >> 16);
                b[2] = (char)(len >> 8);
                b[3] = (char)len;
                b[4] = (char)(il >> 8);
                b[5] = (char)il;
                memcpy(b + 6, iid, il);
                memcpy(b + 6 + il, rec, rlen);
                b += item;
        }
        if (s->vl > s->end)
                memcpy(b, s->v + s->end, s->vl - s->end);
        eddy_state_put(ctx, p, key, rk, ip->req, n);
}

/* held entry: ts(8) watch(1) frac(8) offset(8) raw(1) [tlen(4) topic haskey(1) klen(4) key
 * vlen(4) value] */
static void heng_encode(ip_t *ip, const heng_t *e)
{
        val_u64(ip, (uint64_t)e->ts);
        char w = (char)e->watch, r = (char)e->raw, hk = (char)e->has_key;
        val_put(ip, &w, 1);
        val_u64(ip, dbits(e->frac));
        val_u64(ip, (uint64_t)e->offset);
        val_put(ip, &r, 1);
        if (!e->raw)
                return;
        val_u32(ip, (uint32_t)e->tlen);
        val_put(ip, e->topic, e->tlen);
        val_put(ip, &hk, 1);
        val_u32(ip, (uint32_t)e->klen);
        val_put(ip, e->key, e->klen);
        val_u32(ip, (uint32_t)e->vlen);
        val_put(ip, e->value, e->vlen);
}

/* Decodes the entry at *pos of an 'h' value; @returns 1, 0 at the end, -1 if corrupt. */
static int heng_next(const char *v, size_t vl, size_t *pos, heng_t *e)
{
        memset(e, 0, sizeof(*e));
        if (*pos == vl)
                return 0;
        const char *p = v + *pos;
        size_t left = vl - *pos;
        if (left < 26)
                return -1;
        e->ts = (int64_t)get64(p);
        e->watch = p[8] != 0;
        e->frac = bitsd(get64(p + 9));
        e->offset = (int64_t)get64(p + 17);
        e->raw = p[25] != 0;
        size_t n = 26;
        if (e->raw) {
                if (left < n + 4)
                        return -1;
                e->tlen = get32(p + n);
                n += 4;
                if (left < n + e->tlen + 5)
                        return -1;
                e->topic = p + n;
                n += e->tlen;
                e->has_key = p[n] != 0;
                e->klen = get32(p + n + 1);
                n += 5;
                if (left < n + e->klen + 4)
                        return -1;
                e->key = p + n;
                n += e->klen;
                e->vlen = get32(p + n);
                n += 4;
                if (left < n + e->vlen)
                        return -1;
                e->value = p + n;
                n += e->vlen;
        }
        *pos += n;
        return 1;
}

/* ---------------------------------------------------------------- heaps */

static int tent_less(const tent_t *a, const tent_t *b)
{
        if (a->due != b->due)
                return a->due < b->due;
        size_t n = a->len < b->len ? a->len : b->len;
        int c = memcmp(a->key, b->key, n);
        return c ? c < 0 : a->len < b->len;
}

static void heap_push(theap_t *h, int64_t due, const char *key, size_t len)
{
        if (h->n == h->cap) {
                h->cap = h->cap ? h->cap * 2 : 64;
                h->v = eddy__xrealloc(h->v, h->cap * sizeof(*h->v));
        }
        tent_t t = {due, eddy__xrealloc(NULL, len ? len : 1), (uint32_t)len};
        memcpy(t.key, key, len);
        size_t i = h->n++;
        while (i > 0) {
                size_t up = (i - 1) / 2;
                if (!tent_less(&t, &h->v[up]))
                        break;
                h->v[i] = h->v[up];
                i = up;
        }
        h->v[i] = t;
}

/* Removes the least entry into *out (out->key is the caller's to free). */
static void heap_pop(theap_t *h, tent_t *out)
{
        *out = h->v[0];
        tent_t last = h->v[--h->n];
        size_t i = 0;
        for (;;) {
                size_t l = 2 * i + 1, m = i;
                const tent_t *best = &last;
                if (l < h->n && tent_less(&h->v[l], best)) {
                        m = l;
                        best = &h->v[l];
                }
                if (l + 1 < h->n && tent_less(&h->v[l + 1], best))
                        m = l + 1;
                if (m == i)
                        break;
                h->v[i] = h->v[m];
                i = m;
        }
        if (h->n > 0)
                h->v[i] = last;
}

static void heap_free(theap_t *h)
{
        for (size_t i = 0; i < h->n; i++)
                free(h->v[i].key);
        free(h->v);
        memset(h, 0, sizeof(*h));
}

/* ---------------------------------------------------------------- held-key set */

static uint64_t key_hash(const char *key, size_t klen)
{
        uint64_t h = 0xcbf29ce484222325ULL;
        for (size_t i = 1; i < klen; i++)
                h = (h ^ (unsigned char)key[i]) * 0x100000001b3ULL;
        h ^= h >> 33;
        h *= 0xff51afd7ed558ccdULL;
        h ^= h >> 33;
        return h ? h : 1;
}

static size_t hs_slot(const hset_t *s, uint64_t h)
{
        size_t i = (size_t)h & (s->cap - 1);
        while (s->k[i] && s->k[i] != h)
                i = (i + 1) & (s->cap - 1);
        return i;
}

static int hs_has(const hset_t *s, uint64_t h)
{
        return s->n && s->k[hs_slot(s, h)] == h;
}

static void hs_add(hset_t *s, uint64_t h)
{
        if (2 * (s->n + 1) > s->cap) {
                hset_t b = {NULL, NULL, s->cap ? s->cap * 2 : 64, 0};
                b.k = calloc(b.cap, sizeof(*b.k));
                b.c = calloc(b.cap, sizeof(*b.c));
                if (!b.k || !b.c)
                        abort();
                for (size_t i = 0; i < s->cap; i++)
                        if (s->k[i]) {
                                size_t j = hs_slot(&b, s->k[i]);
                                b.k[j] = s->k[i];
                                b.c[j] = s->c[i];
                                b.n++;
                        }
                free(s->k);
                free(s->c);
                *s = b;
        }
        size_t i = hs_slot(s, h);
        if (s->k[i] != h) {
                s->k[i] = h;
                s->c[i] = 0;
                s->n++;
        }
        s->c[i]++;
}

static void hs_del(hset_t *s, uint64_t h)
{
        if (!s->n)
                return;
        size_t i = hs_slot(s, h);
        if (s->k[i] != h || --s->c[i] > 0)
                return;
        s->k[i] = 0;
        s->n--;
        /* backward shift: re-seat the entries after i that probed past it */
        for (size_t j = (i + 1) & (s->cap - 1); s->k[j]; j = (j + 1) & (s->cap - 1)) {
                size_t home = (size_t)s->k[j] & (s->cap - 1);
                if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
                        s->k[i] = s->k[j];
                        s->c[i] = s->c[j];
                        s->k[j] = 0;
                        i = j;
                }
        }
}

static void hs_free(hset_t *s)
{
        free(s->k);
        free(s->c);
        memset(s, 0, sizeof(*s));
}

/* ---------------------------------------------------------------- partitions */

static ipart_t *part_of(ip_t *ip, int32_t p)
{
        if ((size_t)p >= ip->nparts) {
                size_t n = (size_t)p + 1;
                ip->parts = eddy__xrealloc(ip->parts, n * sizeof(*ip->parts));
                memset(ip->parts + ip->nparts, 0, (n - ip->nparts) * sizeof(*ip->parts));
                ip->nparts = n;
        }
        return &ip->parts[p];
}

typedef struct load_s {
        ip_t *ip;
        ipart_t *pp;
        int bad;
} load_t;

static int load_imp(void *opaque, const void *k, size_t kl, const void *v, size_t vl)
{
        load_t *l = opaque;
        const ip_conf_t *c = l->ip->conf;
        const char *s = v;
        char key[8200];
        if (kl + 1 > sizeof(key) / 2) {
                l->bad = 1;
                return 1;
        }
        memcpy(key, k, kl);
        key[kl] = '\0';
        for (size_t at = 0; at < vl;) {
                imp_t im;
                size_t n = at + 6 <= vl ? get32(s + at) : 0;
                size_t il = at + 6 <= vl
                                ? (size_t)(unsigned char)s[at + 4] << 8 | (unsigned char)s[at + 5]
                                : 0;
                if (n < 2 + il || at + 4 + n > vl || il + kl + 1 > sizeof(key) ||
                    imp_decode(s + at + 6 + il, n - 2 - il, &im)) {
                        l->bad = 1;
                        return 1;
                }
                memcpy(key + kl + 1, s + at + 6, il);
                if (!im.done)
                        heap_push(&l->pp->h[H_IMP], im.ts + c->window_ms, key, kl + 1 + il);
                at += 4 + n;
        }
        int64_t due = req_done_due(c, v, vl);
        if (due >= 0) /* one timer per request for its done markers */
                heap_push(&l->pp->h[H_DONE], due, k, kl);
        return 0;
}

static int load_counts(void *opaque, const void *k, size_t kl, const void *v, size_t vl)
{
        load_t *l = opaque;
        const unsigned char *key = k;
        size_t pos = kl == 3 ? (size_t)key[1] << 8 | key[2] : 0;
        if (pos < 1 || pos > (size_t)l->ip->conf->max_position || vl != 16)
                return 0; /* a position past estimator.max.position: not used any more */
        l->pp->cnt[2 * pos] = (int64_t)get64(v);
        l->pp->cnt[2 * pos + 1] = (int64_t)get64((const char *)v + 8);
        return 0;
}

static int load_held(void *opaque, const void *k, size_t kl, const void *v, size_t vl)
{
        load_t *l = opaque;
        size_t pos = 0;
        heng_t e;
        int r;
        hs_add(&l->pp->held, key_hash(k, kl));
        while ((r = heng_next(v, vl, &pos, &e)) == 1)
                heap_push(&l->pp->h[H_HELD], e.ts, k, kl);
        if (r < 0) {
                l->bad = 1;
                return 1;
        }
        return 0;
}

/* The partition's clocks and heaps from its state. Called the first time this process sees
 * the partition, before it has written anything of it: the committed state is all of it. */
static int part_load(ip_t *ip, eddy_ctx_t *ctx, int32_t p, ipart_t *pp)
{
        const void *v;
        size_t vl;
        int r = eddy_state_get(ctx, p, "K", 1, &v, &vl);
        if (r < 0)
                return -r;
        pp->clock[0] = pp->clock[1] = NO_CLOCK;
        if (r == 1 && vl == 16) {
                pp->clock[0] = (int64_t)get64(v);
                pp->clock[1] = (int64_t)get64((const char *)v + 8);
        }
        load_t l = {ip, pp, 0};
        size_t npos = (size_t)ip->conf->max_position + 1;
        pp->cnt = calloc(2 * npos, sizeof(*pp->cnt));
        pp->cdirty = calloc(npos, 1);
        if (!pp->cnt || !pp->cdirty)
                abort();
        if (ip->source == SRC_ESTIMATE && eddy_state_scan(ctx, p, "P", 1, load_counts, &l) < 0)
                return EDDY_ERR_STATE;
        if (eddy_state_scan(ctx, p, "i", 1, load_imp, &l) < 0 ||
            eddy_state_scan(ctx, p, "h", 1, load_held, &l) < 0)
                return EDDY_ERR_STATE;
        if (l.bad) {
                eddy_log(ctx, LOG_ERR, "STATE",
                         "partition %" PRId32 ": a stored impression or engagement does not "
                         "decode (state written by another processor?)",
                         p);
                return EDDY_ERR_STATE;
        }
        pp->loaded = 1;
        return 0;
}

/* ---------------------------------------------------------------- output */

static void out_put(ip_t *ip, const void *p, size_t n)
{
        if (ip->blen + n > ip->bcap) {
                ip->bcap = (ip->blen + n) * 2 + 256;
                ip->buf = eddy__xrealloc(ip->buf, ip->bcap);
        }
        memcpy(ip->buf + ip->blen, p, n);
        ip->blen += n;
}

static void out_fmt(ip_t *ip, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_fmt(ip_t *ip, const char *fmt, ...)
{
        char b[128];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b, sizeof(b), fmt, ap);
        va_end(ap);
        out_put(ip, b, n < 0 ? 0 : (size_t)n < sizeof(b) ? (size_t)n : sizeof(b) - 1);
}

static void out_json_str(ip_t *ip, const char *s, size_t n)
{
        size_t max = EDDY_JSON_QUOTED_MAX(n);
        if (ip->blen + max > ip->bcap) {
                ip->bcap = (ip->blen + max) * 2 + 256;
                ip->buf = eddy__xrealloc(ip->buf, ip->bcap);
        }
        ip->blen += eddy_json_quote(ip->buf + ip->blen, s, n);
}

/* ---------------------------------------------------------------- propensity */

static double table_at(const ip_t *ip, int32_t position)
{
        size_t k = (size_t)position;
        return ip->table[k <= ip->ntable ? k - 1 : ip->ntable - 1];
}

static void counts_put(eddy_ctx_t *ctx, int32_t p, int32_t position, int64_t n, int64_t c)
{
        char k[3] = {'P', (char)(position >> 8), (char)position}, v[16];
        put64(v, (uint64_t)n);
        put64(v + 8, (uint64_t)c);
        eddy_state_put(ctx, p, k, 3, v, 16);
}

/* The propensity of an impression's position and its source; counts an explore impression
 * into the estimator after reading the estimate (a sample never sees its own click). */
static double propensity(ip_t *ip, ipart_t *pp, const imp_t *im, src_t *src)
{
        if (ip->source == SRC_EVENT && im->has_prop) {
                *src = SRC_EVENT;
                return im->prop;
        }
        *src = SRC_TABLE;
        double prop = table_at(ip, im->position);
        if (ip->source != SRC_ESTIMATE || im->position > ip->conf->max_position)
                return prop;
        /* the counts live in memory (loaded with the partition), written back at flush() */
        int64_t *ck = &pp->cnt[2 * im->position];
        double e = eddy__ips_estimate(ck[0], ck[1], pp->cnt[2], pp->cnt[3], ip->smoothing,
                                      ip->conf->min_count);
        if (e >= 0) {
                *src = SRC_ESTIMATE;
                prop = e;
        }
        if (im->explore) {
                ck[0]++;
                ck[1] += im->clicked ? 1 : 0;
                pp->cdirty[im->position] = 1;
                pp->cany = 1;
        }
        return prop;
}

/* ---------------------------------------------------------------- emission */

/* The sample of the impression under @p key (rid '\0' iid after the 'i'), then its done
 * marker. */
static void emit(ip_t *ip, eddy_ctx_t *ctx, int32_t p, const char *key, size_t klen,
                 const islot_t *sl, const imp_t *im)
{
        const ip_conf_t *c = ip->conf;
        const char *rid = key + 1;
        size_t rl = strlen(rid);
        const char *iid = rid + rl + 1;
        size_t il = klen - 2 - rl;
        src_t src;
        double prop = propensity(ip, part_of(ip, p), im, &src);
        int negative = !im->clicked && im->wfrac == 0;
        double rate = negative ? ip->keep_rate : 1;
        if (negative && rate < 1 && !eddy__ips_keep(eddy__ips_hash(rid, rl, iid, il), rate)) {
                eddy_counter_add(ip->c_negdrop, 1);
        } else {
                double weight = 1 / (prop > ip->clip ? prop : ip->clip) / rate;
                eddy_row_t *row = eddy_row_begin(ctx, p, 0, im->ts);
                eddy_row_string(row, rid, rl);
                eddy_row_string(row, im->user, im->ulen);
                eddy_row_string(row, iid, il);
                eddy_row_long(row, im->position);
                eddy_row_long(row, im->ts);
                eddy_row_long(row, im->clicked);
                eddy_row_double(row, im->wfrac);
                eddy_row_double(row, prop);
                eddy_row_string(row, src_names[src], strlen(src_names[src]));
                eddy_row_double(row, ip->clip);
                eddy_row_double(row, weight);
                eddy_row_double(row, rate);
                eddy_row_bool(row, im->explore);
                eddy_row_string(row, ip->tag, strlen(ip->tag));
                eddy_row_string(row, im->topic, im->tlen);
                eddy_row_long(row, p);
                eddy_row_long(row, im->offset);
                eddy_row_end(row);
                if (c->output_topic && *c->output_topic) {
                        ip->blen = 0;
                        out_put(ip, "{\"request_id\":", 14);
                        out_json_str(ip, rid, rl);
                        out_put(ip, ",\"user_id\":", 11);
                        out_json_str(ip, im->user, im->ulen);
                        out_put(ip, ",\"item_id\":", 11);
                        out_json_str(ip, iid, il);
                        out_fmt(ip,
                                ",\"position\":%" PRId32 ",\"ts\":%" PRId64
                                ",\"clicked\":%d,\"watch_frac\":%.17g",
                                im->position, im->ts, im->clicked, im->wfrac);
                        out_fmt(ip, ",\"propensity\":%.17g,\"propensity_source\":\"%s\"", prop,
                                src_names[src]);
                        out_fmt(ip, ",\"clip\":%.17g,\"weight\":%.17g,\"keep_rate\":%.17g",
                                ip->clip, weight, rate);
                        out_fmt(ip,
                                ",\"explore\":%s,\"model_tag\":", im->explore ? "true" : "false");
                        out_json_str(ip, ip->tag, strlen(ip->tag));
                        out_put(ip, ",\"imp_topic\":", 13);
                        out_json_str(ip, im->topic, im->tlen);
                        out_fmt(ip, ",\"imp_partition\":%" PRId32 ",\"imp_offset\":%" PRId64 "}", p,
                                im->offset);
                        eddy_out_kafka(ctx, p, c->output_topic, im->user, im->ulen, ip->buf,
                                       ip->blen);
                }
                eddy_counter_add(ip->c_samples, 1);
        }
        /* sl and im still point into the request's value: nothing wrote that key since */
        if (c->retention_ms == 0) {
                /* a repeat with ts <= the window's end is late now; no marker is needed */
                imp_set(ip, ctx, p, key, klen, sl, NULL, 0);
                return;
        }
        /* one timer per request for its done markers: the first marker sets it */
        int first = req_done_due(c, sl->v, sl->vl) < 0;
        imp_t done = {.done = 1, .ts = im->ts};
        imp_encode(ip, &done);
        imp_set(ip, ctx, p, key, klen, sl, ip->val, ip->vlen);
        if (first)
                heap_push(&part_of(ip, p)->h[H_DONE], im->ts + c->window_ms + c->retention_ms, key,
                          req_klen(key));
}

/* Engagements of @p key ('h' rid '\0' iid) held with ts == @p due: orphans now. */
static int expire_held(ip_t *ip, eddy_ctx_t *ctx, int32_t p, const char *key, size_t klen,
                       int64_t due)
{
        const void *v;
        size_t vl;
        int r = eddy_state_get(ctx, p, key, klen, &v, &vl);
        if (r < 0)
                return -r;
        if (r == 0)
                return 0; /* stale: counted by an impression since */
        /* copy: dead letters and the rewrite below must not read a value the put replaces */
        char *copy = eddy__xrealloc(NULL, vl ? vl : 1);
        memcpy(copy, v, vl);
        size_t pos = 0, start = 0;
        heng_t e;
        ip->vlen = 0;
        int changed = 0;
        while ((r = heng_next(copy, vl, &pos, &e)) == 1) {
                if (e.ts != due) {
                        val_put(ip, copy + start, pos - start);
                } else {
                        changed = 1;
                        eddy_counter_add(ip->c_orphans, 1);
                        if (e.raw) {
                                char rid[4097], iid[4097];
                                const char *k = key + 1;
                                size_t rl = strlen(k);
                                snprintf(rid, sizeof(rid), "%s", k);
                                snprintf(iid, sizeof(iid), "%.*s", (int)(klen - 2 - rl),
                                         k + rl + 1);
                                char topic[512];
                                snprintf(topic, sizeof(topic), "%.*s", (int)e.tlen, e.topic);
                                eddy_msg_t m = {.topic = topic,
                                                .topic_index = 1,
                                                .partition = p,
                                                .offset = e.offset,
                                                .timestamp = -1,
                                                .key = e.has_key ? e.key : NULL,
                                                .key_len = e.klen,
                                                .value = e.value,
                                                .value_len = e.vlen};
                                char detail[256];
                                snprintf(detail, sizeof(detail),
                                         "no impression of request_id %.80s item_id %.80s counted "
                                         "this engagement (ts %" PRId64 ") by the watermark",
                                         rid, iid, e.ts);
                                eddy_out_dead_letter(ctx, &m, "orphan", detail);
                        }
                }
                start = pos;
        }
        if (r < 0) {
                free(copy);
                eddy_log(ctx, LOG_ERR, "STATE",
                         "partition %" PRId32 ": held engagements do not decode", p);
                return EDDY_ERR_STATE;
        }
        if (changed) {
                if (ip->vlen) {
                        eddy_state_put(ctx, p, key, klen, ip->val, ip->vlen);
                } else {
                        eddy_state_del(ctx, p, key, klen);
                        hs_del(&part_of(ip, p)->held, key_hash(key, klen));
                }
        }
        free(copy);
        return 0;
}

/* Drops the done markers of request key @p rkey whose retention ended before @p thr and
 * re-arms the request's timer for the markers left. A request normally has one timer; in the
 * rare case of two (a marker replaced by a later reuse of its key, then a new first marker),
 * both purge and re-arm, which is harmless. */
static int purge_done(ip_t *ip, eddy_ctx_t *ctx, int32_t p, ipart_t *pp, const char *rkey,
                      size_t rklen, int64_t thr)
{
        const ip_conf_t *c = ip->conf;
        const void *vv;
        size_t vl;
        int r = eddy_state_get(ctx, p, rkey, rklen, &vv, &vl);
        if (r <= 0)
                return r < 0 ? -r : 0;
        const char *v = vv;
        if (vl > ip->rcap) {
                ip->rcap = vl * 2;
                ip->req = eddy__xrealloc(ip->req, ip->rcap);
        }
        size_t n = 0;
        for (size_t at = 0; at < vl;) {
                size_t len = at + 6 <= vl ? get32(v + at) : 0;
                size_t il = at + 6 <= vl
                                ? (size_t)(unsigned char)v[at + 4] << 8 | (unsigned char)v[at + 5]
                                : 0;
                imp_t im;
                if (len < 2 + il || at + 4 + len > vl ||
                    imp_decode(v + at + 6 + il, len - 2 - il, &im))
                        return EDDY_ERR_STATE;
                if (!(im.done && im.ts + c->window_ms + c->retention_ms < thr)) {
                        memcpy(ip->req + n, v + at, 4 + len);
                        n += 4 + len;
                }
                at += 4 + len;
        }
        if (n < vl) {
                if (n)
                        eddy_state_put(ctx, p, rkey, rklen, ip->req, n);
                else
                        eddy_state_del(ctx, p, rkey, rklen);
        }
        if (n) {
                int64_t next = req_done_due(c, ip->req, n);
                if (next >= 0)
                        heap_push(&pp->h[H_DONE], next, rkey, rklen);
        }
        return 0;
}

/* Everything due before the watermark of partition @p p: samples, orphans, purges. */
static int advance(ip_t *ip, eddy_ctx_t *ctx, int32_t p, ipart_t *pp)
{
        if (pp->clock[0] == NO_CLOCK || pp->clock[1] == NO_CLOCK)
                return 0;
        const ip_conf_t *c = ip->conf;
        int64_t wm = pp->clock[0] < pp->clock[1] ? pp->clock[0] : pp->clock[1];
        int64_t thr = wm - c->lateness_ms;
        tent_t t;
        while (pp->h[H_IMP].n && pp->h[H_IMP].v[0].due < thr) {
                heap_pop(&pp->h[H_IMP], &t);
                islot_t sl;
                imp_t im;
                int r = imp_get(ctx, p, t.key, t.len, &sl);
                if (r < 0) {
                        free(t.key);
                        return -r;
                }
                if (r == 1 && imp_decode(sl.rec, sl.rlen, &im) == 0 && !im.done &&
                    im.ts + c->window_ms == t.due)
                        emit(ip, ctx, p, t.key, t.len, &sl, &im);
                free(t.key);
        }
        while (pp->h[H_HELD].n && pp->h[H_HELD].v[0].due < thr) {
                heap_pop(&pp->h[H_HELD], &t);
                int r = expire_held(ip, ctx, p, t.key, t.len, t.due);
                free(t.key);
                if (r)
                        return r;
        }
        while (pp->h[H_DONE].n && pp->h[H_DONE].v[0].due < thr) {
                heap_pop(&pp->h[H_DONE], &t);
                int r = purge_done(ip, ctx, p, pp, t.key, t.len, thr);
                free(t.key);
                if (r)
                        return r;
        }
        return 0;
}

/* ---------------------------------------------------------------- input */

static int get_id(ip_t *ip, eddy_ctx_t *ctx, const eddy_json_val_t *f, int which, char *dst,
                  size_t *len)
{
        size_t maxid = (size_t)ip->conf->max_id_bytes;
        ssize_t n = eddy_json_id(&f[which], dst, maxid + 1);
        if (n <= 0 || (size_t)n > maxid)
                return eddy_reject(ctx, "bad_field",
                                   "%s: expected a non-empty string or integer of at most %zu "
                                   "bytes without NUL",
                                   fields[which], maxid);
        *len = (size_t)n;
        return 0;
}

static int present(const eddy_json_val_t *v)
{
        return v->type != EDDY_JSON_MISSING && v->type != EDDY_JSON_NULL;
}

/* A record of topic @p which (0 impressions, 1 engagements) at @p ts against that topic's clock
 * in the partition: late (a dead letter), or admitted, the clock moved up to it. */
static int clock_admit(ip_t *ip, eddy_ctx_t *ctx, ipart_t *pp, int which, int64_t ts)
{
        static const char *const what[2][2] = {{"impression", "impressions'"},
                                               {"engagement", "engagements'"}};
        int64_t lateness = ip->conf->lateness_ms;
        if (pp->clock[which] != NO_CLOCK && ts < pp->clock[which] - lateness) {
                eddy_counter_add(ip->c_late, 1);
                return eddy_reject(ctx, "late",
                                   "%s ts %" PRId64 " is more than allowed.lateness.ms=%" PRId64
                                   " behind the %s clock %" PRId64,
                                   what[which][0], ts, lateness, what[which][1], pp->clock[which]);
        }
        if (pp->clock[which] == NO_CLOCK || ts > pp->clock[which]) {
                pp->clock[which] = ts;
                pp->dirty = 1;
        }
        return 0;
}

static int on_impression(ip_t *ip, eddy_ctx_t *ctx, const eddy_msg_t *msg, const eddy_json_val_t *f,
                         const char *key, size_t klen, const char *user, size_t ul, int64_t ts)
{
        const ip_conf_t *c = ip->conf;
        int64_t pos;
        if (!present(&f[F_POSITION]))
                return eddy_reject(ctx, "missing_field", "field \"position\" is missing");
        if (eddy_json_int64(&f[F_POSITION], &pos) != 0 || pos < 1 || pos > 65535)
                return eddy_reject(ctx, "bad_field", "position: expected an integer 1..65535");
        imp_t im = {.ts = ts, .position = (int32_t)pos, .offset = msg->offset};
        if (present(&f[F_PROPENSITY])) {
                if (eddy_json_double(&f[F_PROPENSITY], &im.prop) != 0 || !(im.prop > 0) ||
                    im.prop > 1)
                        return eddy_reject(ctx, "bad_field",
                                           "propensity: expected a number in (0, 1]");
                im.has_prop = 1;
        }
        if (present(&f[F_EXPLORE])) {
                if (f[F_EXPLORE].type != EDDY_JSON_TRUE && f[F_EXPLORE].type != EDDY_JSON_FALSE)
                        return eddy_reject(ctx, "bad_field", "explore: expected true or false");
                im.explore = f[F_EXPLORE].type == EDDY_JSON_TRUE;
        }
        int32_t p = msg->partition;
        ipart_t *pp = part_of(ip, p);
        int rc = clock_admit(ip, ctx, pp, 0, ts);
        if (rc)
                return rc;
        const void *v;
        size_t vl;
        islot_t sl;
        int r = imp_get(ctx, p, key, klen, &sl);
        if (r < 0)
                return -r;
        imp_t old;
        if (r == 1 && imp_decode(sl.rec, sl.rlen, &old) == 0 &&
            (!old.done || ts <= old.ts + c->window_ms + c->retention_ms)) {
                eddy_counter_add(ip->c_dups, 1);
                return 0; /* the first one stands */
        }
        im.topic = msg->topic;
        im.tlen = strlen(msg->topic);
        im.user = user;
        im.ulen = ul;
        /* engagements that came first */
        char hk[8200];
        memcpy(hk, key, klen);
        hk[0] = 'h';
        uint64_t hh = key_hash(key, klen);
        r = hs_has(&pp->held, hh) ? eddy_state_get(ctx, p, hk, klen, &v, &vl) : 0;
        if (r < 0)
                return -r;
        if (r == 1) {
                char *copy = eddy__xrealloc(NULL, vl ? vl : 1);
                memcpy(copy, v, vl);
                size_t at = 0, start = 0;
                heng_t e;
                size_t keep = 0;
                char *rest = eddy__xrealloc(NULL, vl ? vl : 1);
                while ((r = heng_next(copy, vl, &at, &e)) == 1) {
                        if (e.ts >= ts && e.ts <= ts + c->window_ms) {
                                if (e.watch) {
                                        if (e.frac > im.wfrac)
                                                im.wfrac = e.frac;
                                } else {
                                        im.clicked = 1;
                                }
                        } else {
                                memcpy(rest + keep, copy + start, at - start);
                                keep += at - start;
                        }
                        start = at;
                }
                if (r == 0 && keep < vl) {
                        if (keep) {
                                eddy_state_put(ctx, p, hk, klen, rest, keep);
                        } else {
                                eddy_state_del(ctx, p, hk, klen);
                                hs_del(&pp->held, hh);
                        }
                }
                free(copy);
                free(rest);
                if (r < 0)
                        return EDDY_ERR_STATE;
        }
        imp_encode(ip, &im);
        /* the held engagements' key is another key: sl still points at the request's value */
        imp_set(ip, ctx, p, key, klen, &sl, ip->val, ip->vlen);
        heap_push(&pp->h[H_IMP], ts + c->window_ms, key, klen);
        return 0;
}

static int on_engagement(ip_t *ip, eddy_ctx_t *ctx, const eddy_msg_t *msg, const eddy_json_val_t *f,
                         char *key, size_t klen, int64_t ts)
{
        const ip_conf_t *c = ip->conf;
        char type[8];
        ssize_t tl = f[F_TYPE].type == EDDY_JSON_STRING
                         ? eddy_json_unescape(&f[F_TYPE], type, sizeof(type))
                         : -1;
        if (!present(&f[F_TYPE]))
                return eddy_reject(ctx, "missing_field", "field \"type\" is missing");
        int watch;
        if (tl == 5 && !memcmp(type, "click", 5))
                watch = 0;
        else if (tl == 5 && !memcmp(type, "watch", 5))
                watch = 1;
        else
                return eddy_reject(ctx, "bad_field", "type: expected \"click\" or \"watch\"");
        double frac = 0;
        if (watch) {
                double wt, du;
                if (!present(&f[F_WATCH_TIME]))
                        return eddy_reject(ctx, "missing_field",
                                           "field \"watch_time\" is missing (type watch)");
                if (!present(&f[F_DURATION]))
                        return eddy_reject(ctx, "missing_field",
                                           "field \"duration\" is missing (type watch)");
                if (eddy_json_double(&f[F_WATCH_TIME], &wt) != 0 || !(wt >= 0))
                        return eddy_reject(ctx, "bad_field", "watch_time: expected a number >= 0");
                if (eddy_json_double(&f[F_DURATION], &du) != 0 || !(du > 0))
                        return eddy_reject(ctx, "bad_field", "duration: expected a number > 0");
                frac = wt / du;
                if (!(frac <= 1))
                        frac = 1;
        }
        int32_t p = msg->partition;
        ipart_t *pp = part_of(ip, p);
        int rc = clock_admit(ip, ctx, pp, 1, ts);
        if (rc)
                return rc;
        const void *v;
        size_t vl;
        islot_t sl;
        int r = imp_get(ctx, p, key, klen, &sl);
        if (r < 0)
                return -r;
        imp_t im;
        if (r == 1 && imp_decode(sl.rec, sl.rlen, &im) == 0 && !im.done && ts >= im.ts &&
            ts <= im.ts + c->window_ms) {
                int changed = 0;
                if (watch && frac > im.wfrac) {
                        im.wfrac = frac;
                        changed = 1;
                } else if (!watch && !im.clicked) {
                        im.clicked = 1;
                        changed = 1;
                }
                if (changed) {
                        imp_encode(ip, &im); /* im points into the value: encode first */
                        imp_set(ip, ctx, p, key, klen, &sl, ip->val, ip->vlen);
                }
                return 0;
        }
        /* no impression counts it yet: hold it until one does or the watermark passes it */
        key[0] = 'h';
        r = eddy_state_get(ctx, p, key, klen, &v, &vl);
        if (r < 0)
                return -r;
        ip->vlen = 0;
        if (r == 1)
                val_put(ip, v, vl);
        else
                hs_add(&pp->held, key_hash(key, klen));
        heng_t e = {.ts = ts, .watch = watch, .frac = frac, .offset = msg->offset};
        if (c->orphans_to_dlq) {
                e.raw = 1;
                e.topic = msg->topic;
                e.tlen = strlen(msg->topic);
                e.has_key = msg->key != NULL;
                e.key = msg->key;
                e.klen = msg->key ? msg->key_len : 0;
                e.value = msg->value;
                e.vlen = msg->value_len;
        }
        heng_encode(ip, &e);
        eddy_state_put(ctx, p, key, klen, ip->val, ip->vlen);
        heap_push(&pp->h[H_HELD], ts, key, klen);
        return 0;
}

static int ip_process(void *self, eddy_ctx_t *ctx, const eddy_msg_t *msg)
{
        ip_t *ip = self;
        if (msg->topic_index > 1) {
                eddy_log(ctx, LOG_ERR, "CONFIG",
                         "ips-samples reads two topics, impressions then engagements "
                         "(input.topics), not %s",
                         msg->topic);
                return EDDY_ERR_USAGE;
        }
        eddy_json_val_t f[NFIELDS];
        char err[160];
        if (eddy_json_object(msg->value, msg->value_len, fields, NFIELDS, f, err, sizeof(err)))
                return eddy_reject(ctx, "json", "%s", err);
        static const int ids[] = {F_REQUEST_ID, F_USER_ID, F_ITEM_ID, F_TS};
        for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
                if (!present(&f[ids[i]]))
                        return eddy_reject(ctx, "missing_field", "field \"%s\" is missing",
                                           fields[ids[i]]);
        /* key: 'i' request_id '\0' item_id */
        char key[8200], user[4097];
        size_t rl = 0, il = 0, ul = 0;
        int r;
        if ((r = get_id(ip, ctx, f, F_REQUEST_ID, key + 1, &rl)) ||
            (r = get_id(ip, ctx, f, F_USER_ID, user, &ul)) ||
            (r = get_id(ip, ctx, f, F_ITEM_ID, key + 2 + rl, &il)))
                return r;
        key[0] = 'i';
        size_t klen = 2 + rl + il;
        int64_t ts;
        if (eddy_json_int64(&f[F_TS], &ts) != 0 || ts < 0 || ts > TS_MAX)
                return eddy_reject(ctx, "bad_field", "ts: expected an integer >= 0 (epoch ms)");
        ipart_t *pp = part_of(ip, msg->partition);
        if (!pp->loaded && (r = part_load(ip, ctx, msg->partition, pp)))
                return r;
        r = msg->topic_index == 0 ? on_impression(ip, ctx, msg, f, key, klen, user, ul, ts)
                                  : on_engagement(ip, ctx, msg, f, key, klen, ts);
        if (r)
                return r;
        return advance(ip, ctx, msg->partition, pp);
}

static int ip_flush(void *self, eddy_ctx_t *ctx)
{
        ip_t *ip = self;
        for (size_t p = 0; p < ip->nparts; p++) {
                ipart_t *pp = &ip->parts[p];
                for (int64_t k = 1; pp->cany && k <= ip->conf->max_position; k++)
                        if (pp->cdirty[k]) {
                                counts_put(ctx, (int32_t)p, (int32_t)k, pp->cnt[2 * k],
                                           pp->cnt[2 * k + 1]);
                                pp->cdirty[k] = 0;
                        }
                pp->cany = 0;
                if (!pp->dirty)
                        continue;
                char v[16];
                put64(v, (uint64_t)pp->clock[0]);
                put64(v + 8, (uint64_t)pp->clock[1]);
                eddy_state_put(ctx, (int32_t)p, "K", 1, v, 16);
                pp->dirty = 0;
        }
        return 0;
}

/* ---------------------------------------------------------------- life cycle */

static void ip_close(void *self)
{
        ip_t *ip = self;
        if (!ip)
                return;
        for (size_t p = 0; p < ip->nparts; p++) {
                for (int h = 0; h < NHEAPS; h++)
                        heap_free(&ip->parts[p].h[h]);
                hs_free(&ip->parts[p].held);
                free(ip->parts[p].cnt);
                free(ip->parts[p].cdirty);
        }
        free(ip->parts);
        free(ip->table);
        free(ip->buf);
        free(ip->val);
        free(ip->req);
        free(ip);
}

/* A number from a string property; @returns 0, or -1 with errstr. */
static int conf_num(const char *name, const char *s, double lo, int lo_open, double hi, double *out,
                    char *errstr, size_t errstr_size)
{
        char *end;
        double d = s ? strtod(s, &end) : 0;
        if (!s || !*s || *end || !isfinite(d) || (lo_open ? !(d > lo) : !(d >= lo)) || d > hi) {
                snprintf(errstr, errstr_size, "%s: expected a number in %c%g, %g], got \"%s\"",
                         name, lo_open ? '(' : '[', lo, hi, s ? s : "");
                return -1;
        }
        *out = d;
        return 0;
}

static int ip_init(eddy_ctx_t *ctx, const void *conf, void **selfp, char *errstr,
                   size_t errstr_size)
{
        const ip_conf_t *c = conf;
        ip_t *ip = calloc(1, sizeof(*ip));
        if (!ip) {
                snprintf(errstr, errstr_size, "ips-samples: out of memory");
                return -1;
        }
        ip->conf = c;
        ip->tag = c->model_tag ? c->model_tag : "";
        if (!strcmp(c->source, "event"))
                ip->source = SRC_EVENT;
        else if (!strcmp(c->source, "table"))
                ip->source = SRC_TABLE;
        else if (!strcmp(c->source, "estimate"))
                ip->source = SRC_ESTIMATE;
        else {
                snprintf(errstr, errstr_size,
                         "propensity.source: expected event, table or estimate, got \"%s\"",
                         c->source);
                goto fail;
        }
        json_error_t jerr;
        json_t *jt = json_loads(c->table ? c->table : "[1]", JSON_DECODE_ANY, &jerr);
        if (!json_is_array(jt) || json_array_size(jt) == 0 || json_array_size(jt) > 65535) {
                json_decref(jt);
                snprintf(errstr, errstr_size,
                         "propensity.table: expected a JSON array of 1..65535 numbers in (0, 1]");
                goto fail;
        }
        ip->ntable = json_array_size(jt);
        ip->table = eddy__xrealloc(NULL, ip->ntable * sizeof(double));
        for (size_t i = 0; i < ip->ntable; i++) {
                json_t *e = json_array_get(jt, i);
                double d = json_is_number(e) ? json_number_value(e) : -1;
                if (!(d > 0) || d > 1) {
                        json_decref(jt);
                        snprintf(errstr, errstr_size,
                                 "propensity.table: element %zu (position %zu): expected a "
                                 "number in (0, 1]",
                                 i, i + 1);
                        goto fail;
                }
                ip->table[i] = d;
        }
        json_decref(jt);
        if (conf_num("estimator.smoothing", c->smoothing, 0, 1, 1e9, &ip->smoothing, errstr,
                     errstr_size) ||
            conf_num("weight.clip", c->clip, 0, 1, 1, &ip->clip, errstr, errstr_size) ||
            conf_num("negative.keep.rate", c->keep_rate, 0, 1, 1, &ip->keep_rate, errstr,
                     errstr_size))
                goto fail;
        ip->c_samples = eddy_counter_new(ctx, "samples", "Training samples emitted");
        ip->c_negdrop =
            eddy_counter_new(ctx, "negatives_dropped", "Negatives left out by negative.keep.rate");
        ip->c_dups = eddy_counter_new(ctx, "duplicate_impressions",
                                      "Impressions of an already seen (request_id, item_id)");
        ip->c_orphans = eddy_counter_new(ctx, "orphan_engagements",
                                         "Engagements that counted for no impression");
        ip->c_late =
            eddy_counter_new(ctx, "late_events",
                             "Records more than allowed.lateness.ms behind their "
                             "topic's clock in the partition (dead-lettered, reason late)");
        *selfp = ip;
        return 0;
fail:
        ip_close(ip);
        return -1;
}

/* Warehouse tables: the samples (schemas/training_sample.avsc). */
static const char *const ip_tables[] = {"training_sample", NULL};

/* Reader schemas of Avro inputs, in input.topics order (docs/schemas.md). */
static const char *const ip_inputs[] = {"impression", "engagement", NULL};

/* Most state lives for an attribution window, and the lake's waiting rows until their file
 * rolls: a 64 MiB memtable lets much of it be written and deleted before a flush (make
 * bench-ips: 223k events per CPU-second with 8 MiB, 264k with 64 MiB, one run each). */
static const char *const ip_runtime_defaults[] = {"state.write.buffer.mb", "64", NULL};

const eddy_processor_t eddy_ips_samples = {
    .abi_version = EDDY_ABI_VERSION,
    .name = "ips-samples",
    .summary = "impressions joined with engagements into IPS-weighted training samples "
               "(warehouse table training_sample, optional output topic)",
    .default_input = "impressions,engagements",
    .props = ip_props,
    .conf_size = sizeof(ip_conf_t),
    .init = ip_init,
    .process = ip_process,
    .flush = ip_flush,
    .close = ip_close,
    .tables = ip_tables,
    .copartitioned = 1,
    .runtime_defaults = ip_runtime_defaults,
    .input_schemas = ip_inputs,
};
