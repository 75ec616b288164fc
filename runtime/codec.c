/* codec.c: the runtime's decoding of inputs and encoding of outputs (docs/schemas.md).
 *
 * A processor parses JSON. For an Avro input (plain, or in the Confluent wire format) the
 * runtime resolves the writer schema against the processor's input schema (its reader schema)
 * and hands the processor the JSON text of the resolved datum, so processors stay unaware of
 * formats and evolution. Writer schemas of Confluent records come from the registry, one
 * request per schema id, cached with the reader built for each input topic. Outputs go the
 * other way: the JSON a processor emits is encoded with the output schema. */
#include "codec.h"

#include "avro_codec.h"
#include "mem.h"
#include "schema_registry.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Generated from the .avsc files of schemas/ by the Makefile. */
typedef struct eddy__schema_src_s {
        const char *name, *json;
} eddy__schema_src_t;
extern const eddy__schema_src_t eddy__schemas[];

enum { FMT_JSON, FMT_AVRO, FMT_CONFLUENT };

#define NEG_TTL_MS 30000 /* an id the registry does not know is asked for again after this */

/* A schema id of the registry, with the readers built from it per input topic. */
typedef struct sid_s {
        int32_t id;
        int state;     /* 0 ok; else EDDY_SR_NOTFOUND, or -4 the schema does not parse */
        int64_t until; /* NOTFOUND: ask again after this */
        char detail[600];
        eddy_avro_schema_t *w;
        eddy_avro_reader_t **rd; /* per topic, built on first use */
        char **rd_err;           /* per topic: why the reader could not be built */
} sid_t;

typedef struct intopic_s {
        int fmt;
        eddy_avro_schema_t *w, *r; /* avro: writer; both: reader (NULL: as written) */
        eddy_avro_reader_t *rd;    /* avro */
        sid_t *last;               /* confluent: the id of the last record */
} intopic_t;

typedef struct outtopic_s {
        char *topic;
        int32_t id;
} outtopic_t;

struct eddy_codec_s {
        const eddy_rtconf_t *rt;
        intopic_t *in;
        int nin;
        eddy_sr_t *sr;
        sid_t **ids;
        size_t nids, idcap;
        int64_t failing_since;
        int64_t next_attempt; /* while failing: no request before this */
        char last_err[512];
        eddy_wbuf_t buf;  /* the JSON of the input being processed */
        eddy_wbuf_t obuf; /* an encoded output: apart, as process() may emit while it reads */
        int out_fmt;
        eddy_avro_schema_t *out_schema;
        outtopic_t *outs;
        size_t nouts;
};

int64_t eddy__codec_now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int fmt_parse(const char *s)
{
        return !strcmp(s, "json")        ? FMT_JSON
               : !strcmp(s, "avro")      ? FMT_AVRO
               : !strcmp(s, "confluent") ? FMT_CONFLUENT
                                         : -1;
}

/* A schema given as a name of schemas/, JSON text, or a file. */
static eddy_avro_schema_t *schema_load(const char *key, const char *spec, char *errstr,
                                       size_t errstr_size)
{
        char e[512];
        const char *text = NULL;
        char *file = NULL;
        for (const eddy__schema_src_t *s = eddy__schemas; s->name && !text; s++)
                if (!strcmp(s->name, spec))
                        text = s->json;
        if (!text && (spec[0] == '{' || spec[0] == '[' || spec[0] == '"'))
                text = spec;
        if (!text) {
                FILE *fp = fopen(spec, "rb");
                if (!fp) {
                        snprintf(errstr, errstr_size,
                                 "%s: \"%s\" is neither a schema of schemas/, nor JSON, nor a "
                                 "readable file (%s)",
                                 key, spec, strerror(errno));
                        return NULL;
                }
                eddy_wbuf_t b = {0};
                char chunk[4096];
                size_t n;
                while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
                        eddy_wbuf_put(&b, chunk, n);
                fclose(fp);
                eddy_wbuf_put(&b, "", 1);
                file = (char *)b.p;
                text = file;
        }
        eddy_avro_schema_t *s = eddy_avro_schema_parse(text, strlen(text), e, sizeof(e));
        if (!s)
                snprintf(errstr, errstr_size, "%s: %s: %s", key, spec, e);
        free(file);
        return s;
}

/* The list entry of topic @p i: one for all, or one per topic. */
static const char *per_topic(const eddy_strlist_t *l, int i)
{
        if (l->n == 0)
                return NULL;
        return l->v[l->n == 1 ? 0 : (size_t)i];
}

static int list_fits(const char *key, const eddy_strlist_t *l, size_t ntopics, char *errstr,
                     size_t errstr_size)
{
        if (l->n <= 1 || l->n == ntopics)
                return 0;
        snprintf(errstr, errstr_size,
                 "%s: expected one value, or one per input topic (%zu), got %zu", key, ntopics,
                 l->n);
        return -1;
}

eddy_codec_t *eddy__codec_new(const eddy_rtconf_t *rt, const eddy_processor_t *proc, char *errstr,
                              size_t errstr_size)
{
        eddy_codec_t *c = calloc(1, sizeof(*c));
        if (!c)
                abort();
        c->rt = rt;
        c->nin = (int)rt->input_topics.n;
        c->in = calloc((size_t)c->nin + 1, sizeof(*c->in));
        if (!c->in)
                abort();
        const char *const *ins = proc->abi_version >= 2 ? proc->input_schemas : NULL;
        const char *outs = proc->abi_version >= 2 ? proc->output_schema : NULL;
        int need_sr = 0;
        if (list_fits("input.format", &rt->input_format, rt->input_topics.n, errstr, errstr_size) ||
            list_fits("input.avro.schema", &rt->input_avro_schema, rt->input_topics.n, errstr,
                      errstr_size) ||
            list_fits("input.avro.reader.schema", &rt->input_reader_schema, rt->input_topics.n,
                      errstr, errstr_size))
                goto fail;
        for (int i = 0; i < c->nin; i++) {
                intopic_t *t = &c->in[i];
                const char *f = per_topic(&rt->input_format, i);
                t->fmt = fmt_parse(f ? f : "json");
                if (t->fmt < 0) {
                        snprintf(errstr, errstr_size,
                                 "input.format: expected json, avro or confluent, got \"%s\"", f);
                        goto fail;
                }
                if (t->fmt == FMT_JSON)
                        continue;
                /* the reader schema: configured, else the processor's for this topic */
                const char *rs = per_topic(&rt->input_reader_schema, i);
                if (!rs && ins) {
                        int k = 0;
                        while (ins[k] && ins[k + 1] && k < i)
                                k++;
                        rs = ins[k];
                }
                if (rs && strcmp(rs, "none") &&
                    !(t->r = schema_load("input.avro.reader.schema", rs, errstr, errstr_size)))
                        goto fail;
                if (t->fmt == FMT_CONFLUENT) {
                        need_sr = 1;
                        continue;
                }
                const char *ws = per_topic(&rt->input_avro_schema, i);
                if (!ws) {
                        snprintf(errstr, errstr_size,
                                 "input.avro.schema: input.format=avro needs the writer schema "
                                 "of topic %s",
                                 rt->input_topics.v[i]);
                        goto fail;
                }
                if (!(t->w = schema_load("input.avro.schema", ws, errstr, errstr_size)))
                        goto fail;
                char e[512];
                if (!(t->rd = eddy_avro_reader_new(t->w, t->r, e, sizeof(e)))) {
                        snprintf(errstr, errstr_size,
                                 "input.avro.schema %s can not be read as the reader schema %s: %s",
                                 ws, rs, e);
                        goto fail;
                }
        }
        c->out_fmt = fmt_parse(rt->output_format ? rt->output_format : "json");
        if (c->out_fmt < 0) {
                snprintf(errstr, errstr_size,
                         "output.format: expected json, avro or confluent, got \"%s\"",
                         rt->output_format);
                goto fail;
        }
        if (c->out_fmt != FMT_JSON) {
                const char *os = rt->output_avro_schema && *rt->output_avro_schema
                                     ? rt->output_avro_schema
                                     : outs;
                if (!os) {
                        snprintf(errstr, errstr_size,
                                 "output.avro.schema: %s has no output schema: name one",
                                 proc->name);
                        goto fail;
                }
                if (!(c->out_schema = schema_load("output.avro.schema", os, errstr, errstr_size)))
                        goto fail;
                need_sr |= c->out_fmt == FMT_CONFLUENT;
        }
        if (need_sr) {
                if (!rt->sr_url || !*rt->sr_url) {
                        snprintf(errstr, errstr_size,
                                 "schema.registry.url: the confluent format needs the registry");
                        goto fail;
                }
                eddy_sr_conf_t sc = {rt->sr_url, rt->sr_user, rt->sr_password,
                                     rt->sr_request_timeout_ms};
                if (!(c->sr = eddy_sr_new(&sc, errstr, errstr_size)))
                        goto fail;
        }
        return c;
fail:
        eddy__codec_destroy(c);
        return NULL;
}

static void sid_free(sid_t *s, int nin)
{
        if (!s)
                return;
        for (int i = 0; s->rd && i < nin; i++) {
                eddy_avro_reader_destroy(s->rd[i]);
                free(s->rd_err[i]);
        }
        free(s->rd);
        free(s->rd_err);
        eddy_avro_schema_destroy(s->w);
        free(s);
}

static void ids_clear(eddy_codec_t *c)
{
        for (size_t i = 0; i < c->nids; i++)
                sid_free(c->ids[i], c->nin);
        c->nids = 0;
        for (int i = 0; i < c->nin; i++)
                c->in[i].last = NULL;
}

void eddy__codec_destroy(eddy_codec_t *c)
{
        if (!c)
                return;
        ids_clear(c);
        free(c->ids);
        for (int i = 0; i < c->nin; i++) {
                eddy_avro_reader_destroy(c->in[i].rd);
                eddy_avro_schema_destroy(c->in[i].w);
                eddy_avro_schema_destroy(c->in[i].r);
        }
        free(c->in);
        eddy_sr_destroy(c->sr);
        eddy_avro_schema_destroy(c->out_schema);
        for (size_t i = 0; i < c->nouts; i++)
                free(c->outs[i].topic);
        free(c->outs);
        eddy_wbuf_free(&c->buf);
        eddy_wbuf_free(&c->obuf);
        free(c);
}

int eddy__codec_decodes(const eddy_codec_t *c, int ti)
{
        return c && ti >= 0 && ti < c->nin && c->in[ti].fmt != FMT_JSON;
}

int eddy__codec_encodes(const eddy_codec_t *c)
{
        return c && c->out_fmt != FMT_JSON;
}

int64_t eddy__codec_failing_since(const eddy_codec_t *c)
{
        return c ? c->failing_since : 0;
}

static void registry_ok(eddy_codec_t *c)
{
        c->failing_since = 0;
}

static void registry_failed(eddy_codec_t *c)
{
        if (!c->failing_since)
                c->failing_since = eddy__codec_now_ms();
}

/* The cached id, or a new entry from the registry; NULL with EDDY_CODEC_WAIT in *rc. */
static sid_t *sid_get(eddy_codec_t *c, int32_t id, int *rc, char *detail, size_t detail_size)
{
        for (size_t i = 0; i < c->nids; i++)
                if (c->ids[i]->id == id) {
                        sid_t *s = c->ids[i];
                        if (s->state != EDDY_SR_NOTFOUND || eddy__codec_now_ms() < s->until)
                                return s;
                        sid_free(s, c->nin); /* ask again */
                        c->ids[i] = c->ids[--c->nids];
                        for (int k = 0; k < c->nin; k++)
                                if (c->in[k].last == s)
                                        c->in[k].last = NULL;
                        break;
                }
        /* While it fails, at most one request per schema.registry.backoff.ms, however many
         * records ask (after the timeout, each of them goes to the dead-letter topic). */
        int64_t now = eddy__codec_now_ms();
        if (c->failing_since && now < c->next_attempt) {
                snprintf(detail, detail_size, "%s", c->last_err);
                *rc = EDDY_CODEC_WAIT;
                return NULL;
        }
        char *text = NULL;
        char e[512];
        int r = eddy_sr_schema(c->sr, id, &text, e, sizeof(e));
        if (r == EDDY_SR_RETRY || r == EDDY_SR_FATAL) {
                registry_failed(c);
                c->next_attempt = eddy__codec_now_ms() + c->rt->sr_backoff_ms;
                snprintf(c->last_err, sizeof(c->last_err), "%s", e);
                snprintf(detail, detail_size, "%s", e);
                *rc = EDDY_CODEC_WAIT;
                return NULL;
        }
        registry_ok(c);
        if ((int64_t)c->nids >= c->rt->sr_cache_max)
                ids_clear(c);
        sid_t *s = calloc(1, sizeof(*s));
        if (!s)
                abort();
        s->id = id;
        s->rd = calloc((size_t)c->nin, sizeof(*s->rd));
        s->rd_err = calloc((size_t)c->nin, sizeof(*s->rd_err));
        if (!s->rd || !s->rd_err)
                abort();
        if (r == EDDY_SR_NOTFOUND) {
                s->state = EDDY_SR_NOTFOUND;
                s->until = eddy__codec_now_ms() + NEG_TTL_MS;
                snprintf(s->detail, sizeof(s->detail), "%s", e);
        } else if (!(s->w = eddy_avro_schema_parse(text, strlen(text), e, sizeof(e)))) {
                s->state = -4;
                snprintf(s->detail, sizeof(s->detail), "schema id %" PRId32 ": %s", id, e);
        }
        free(text);
        if (c->nids == c->idcap) {
                c->idcap = c->idcap ? c->idcap * 2 : 16;
                c->ids = eddy__xrealloc(c->ids, c->idcap * sizeof(*c->ids));
        }
        c->ids[c->nids++] = s;
        return s;
}

#define BAD(r, ...)                                                                                \
        do {                                                                                       \
                snprintf(reason, reason_size, "%s", r);                                            \
                snprintf(detail, detail_size, __VA_ARGS__);                                        \
                return EDDY_CODEC_BAD;                                                             \
        } while (0)

int eddy__codec_decode(eddy_codec_t *c, int ti, const void *val, size_t len, const void **out,
                       size_t *olen, char *reason, size_t reason_size, char *detail,
                       size_t detail_size)
{
        if (c->rt->input_max_bytes > 0 && (int64_t)len > c->rt->input_max_bytes)
                BAD("too_large", "a value of %zu bytes, above input.max.bytes=%" PRId64, len,
                    c->rt->input_max_bytes);
        intopic_t *t = ti >= 0 && ti < c->nin ? &c->in[ti] : NULL;
        if (!t || t->fmt == FMT_JSON) {
                *out = val;
                *olen = len;
                return EDDY_CODEC_OK;
        }
        const eddy_avro_reader_t *rd = t->rd;
        const void *body = val;
        size_t blen = len;
        if (t->fmt == FMT_CONFLUENT) {
                int32_t id = 0;
                int r = eddy_avro_confluent(val, len, &id, &body, &blen);
                if (r)
                        BAD(eddy_avro_reason(r), "%s",
                            r == EDDY_AVRO_MAGIC ? "not the Confluent wire format (magic byte "
                                                   "is not 0)"
                                                 : "shorter than the 5-byte Confluent header");
                sid_t *s = t->last && t->last->id == id ? t->last : NULL;
                if (!s) {
                        int rc = 0;
                        if (!(s = sid_get(c, id, &rc, detail, detail_size)))
                                return rc;
                        t->last = s;
                }
                if (s->state == EDDY_SR_NOTFOUND)
                        BAD("avro_unknown_schema", "%s", s->detail);
                if (s->state)
                        BAD("avro_schema", "%s", s->detail);
                if (!s->rd[ti] && !s->rd_err[ti]) {
                        char e[512];
                        if (!(s->rd[ti] = eddy_avro_reader_new(s->w, t->r, e, sizeof(e)))) {
                                size_t n = strlen(e) + 1;
                                s->rd_err[ti] = eddy__xrealloc(NULL, n);
                                memcpy(s->rd_err[ti], e, n);
                        }
                }
                if (!s->rd[ti])
                        BAD("avro_schema",
                            "writer schema id %" PRId32 " does not resolve to the reader schema: "
                            "%s",
                            id, s->rd_err[ti]);
                rd = s->rd[ti];
        }
        char e[256];
        c->buf.len = 0;
        /* The JSON of a datum: at most 6x its bytes for strings, a few bytes per item for
         * zero-byte items (their number is bounded by the decoder); this bounds the rest. */
        size_t max_out =
            32 * (c->rt->input_max_bytes > 0 ? (size_t)c->rt->input_max_bytes : len) + 65536;
        int r = eddy_avro_to_json(rd, body, blen, max_out, &c->buf, e, sizeof(e));
        if (r)
                BAD(eddy_avro_reason(r), "%s", e);
        *out = c->buf.p;
        *olen = c->buf.len;
        return EDDY_CODEC_OK;
}

int eddy__codec_encode(eddy_codec_t *c, const char *topic, const void *val, size_t len,
                       const void **out, size_t *olen, char *errstr, size_t errstr_size)
{
        c->obuf.len = 0;
        if (c->out_fmt == FMT_CONFLUENT) {
                outtopic_t *o = NULL;
                for (size_t i = 0; i < c->nouts && !o; i++)
                        if (!strcmp(c->outs[i].topic, topic))
                                o = &c->outs[i];
                if (!o) {
                        char subject[1024];
                        int32_t id = 0;
                        snprintf(subject, sizeof(subject), "%s-value", topic);
                        int r =
                            eddy_sr_register(c->sr, subject, eddy_avro_schema_text(c->out_schema),
                                             &id, errstr, errstr_size);
                        if (r) {
                                registry_failed(c);
                                return r == EDDY_SR_RETRY ? EDDY_CODEC_WAIT : EDDY_CODEC_FAIL;
                        }
                        registry_ok(c);
                        c->outs = eddy__xrealloc(c->outs, (c->nouts + 1) * sizeof(*c->outs));
                        o = &c->outs[c->nouts++];
                        size_t n = strlen(topic) + 1;
                        o->topic = eddy__xrealloc(NULL, n);
                        memcpy(o->topic, topic, n);
                        o->id = id;
                }
                eddy_avro_confluent_header(&c->obuf, o->id);
        }
        char e[512];
        if (eddy_avro_from_json(c->out_schema, val, len, &c->obuf, e, sizeof(e))) {
                snprintf(errstr, errstr_size, "output to %s does not fit output.avro.schema: %s",
                         topic, e);
                return EDDY_CODEC_FAIL;
        }
        *out = c->obuf.p;
        *olen = c->obuf.len;
        return EDDY_CODEC_OK;
}
