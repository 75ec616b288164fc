/* avro_codec.c: Avro binary <-> JSON text, driven by parsed schemas, with schema resolution.
 *
 * eddy's processors parse JSON; an Avro input is turned into the same JSON text they would
 * get from a JSON producer, so they stay format-agnostic. Rather than avro-c's generic values
 * (an allocation per datum and a second walk to print it), a reader compiles the
 * (writer, reader) pair once into a plan of decoding steps, and decoding walks the bytes
 * once, writing JSON as it goes. The plan is where schema resolution happens: fields matched
 * by name, defaults pre-rendered as JSON, skipped writer fields, promotions, enum symbol maps,
 * union branches. This file depends on jansson and eddy__xrealloc() only, so that its fuzz
 * target (tests/fuzz/avro_fuzz.c) links it alone. */
#include "avro_codec.h"

#include "mem.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64 /* schema nesting, and datum nesting of recursive schemas */

const char *eddy_avro_reason(int err)
{
        static const char *const r[] = {
#define EDDY__AVRO_STR(name, str) str,
            EDDY_AVRO_ERR_MAP(EDDY__AVRO_STR)
#undef EDDY__AVRO_STR
        };
        if (err < 0 || (size_t)err >= sizeof(r) / sizeof(r[0]))
                return "avro";
        return r[err];
}

/* ---------------------------------------------------------------- output buffer (warehouse.h)
 * The growable buffer and the Avro encoding of primitives, here because every build that
 * encodes Avro (the warehouse, the codec, the fuzz targets) links this file. */

void eddy_wbuf_put(eddy_wbuf_t *b, const void *p, size_t n)
{
        if (b->len + n > b->cap) {
                b->cap = (b->len + n) * 2 + 64;
                b->p = eddy__xrealloc(b->p, b->cap);
        }
        if (n && p)
                memcpy(b->p + b->len, p, n);
        b->len += n; /* with p NULL: n bytes the caller fills */
}

void eddy_wbuf_free(eddy_wbuf_t *b)
{
        free(b->p);
        memset(b, 0, sizeof(*b));
}

void eddy_avro_long(eddy_wbuf_t *b, int64_t v)
{
        uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
        unsigned char out[10];
        size_t n = 0;
        do {
                unsigned char c = z & 0x7f;
                z >>= 7;
                out[n++] = c | (z ? 0x80 : 0);
        } while (z);
        eddy_wbuf_put(b, out, n);
}

void eddy_avro_string(eddy_wbuf_t *b, const void *s, size_t n)
{
        eddy_avro_long(b, (int64_t)n);
        eddy_wbuf_put(b, s, n);
}

void eddy_avro_double(eddy_wbuf_t *b, double v)
{
        uint64_t u;
        memcpy(&u, &v, 8);
        unsigned char out[8];
        for (int i = 0; i < 8; i++)
                out[i] = (unsigned char)(u >> (8 * i)); /* little-endian */
        eddy_wbuf_put(b, out, 8);
}

void eddy_avro_bool(eddy_wbuf_t *b, int v)
{
        unsigned char c = v ? 1 : 0;
        eddy_wbuf_put(b, &c, 1);
}

static void out_c(eddy_wbuf_t *b, char c)
{
        if (b->len + 1 > b->cap) {
                b->cap = b->len * 2 + 64;
                b->p = eddy__xrealloc(b->p, b->cap);
        }
        b->p[b->len++] = (unsigned char)c;
}

static void out_s(eddy_wbuf_t *b, const char *s)
{
        eddy_wbuf_put(b, s, strlen(s));
}

/* ---------------------------------------------------------------- schemas */

typedef enum {
        T_NULL,
        T_BOOLEAN,
        T_INT,
        T_LONG,
        T_FLOAT,
        T_DOUBLE,
        T_BYTES,
        T_STRING,
        T_RECORD,
        T_ENUM,
        T_ARRAY,
        T_MAP,
        T_UNION,
        T_FIXED,
} ty_t;

static const char *const prim_names[] = {"null",  "boolean", "int",   "long",
                                         "float", "double",  "bytes", "string"};

typedef struct node_s node_t;

typedef struct field_s {
        char *name;
        node_t *type;
        json_t *def; /* NULL: no default */
        char **aliases;
        size_t naliases;
} field_t;

struct node_s {
        ty_t t;
        char *name; /* full name of a named type */
        field_t *fields;
        size_t nfields;
        char **syms;
        size_t nsyms;
        int sym_default; /* enum: index of "default", -1 none */
        node_t *items;   /* array items, map values */
        node_t **br;     /* union branches */
        size_t nbr;
        size_t size; /* fixed */
};

struct eddy_avro_schema_s {
        node_t *root;
        node_t **all; /* every node, for lookup of named types and for freeing */
        size_t nall, cap;
        char *text;
};

typedef struct parse_s {
        eddy_avro_schema_t *s;
        char *errstr;
        size_t errstr_size;
        int failed;
} parse_t;

static void perr(parse_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void perr(parse_t *p, const char *fmt, ...)
{
        if (p->failed++)
                return;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->errstr, p->errstr_size, fmt, ap);
        va_end(ap);
}

static node_t *node_new(eddy_avro_schema_t *s, ty_t t)
{
        if (s->nall == s->cap) {
                s->cap = s->cap ? s->cap * 2 : 16;
                s->all = eddy__xrealloc(s->all, s->cap * sizeof(*s->all));
        }
        node_t *n = calloc(1, sizeof(*n));
        if (!n)
                abort();
        n->t = t;
        n->sym_default = -1;
        s->all[s->nall++] = n;
        return n;
}

static char *xstrdup(const char *s)
{
        size_t n = strlen(s) + 1;
        char *d = eddy__xrealloc(NULL, n);
        memcpy(d, s, n);
        return d;
}

static int is_named(ty_t t)
{
        return t == T_RECORD || t == T_ENUM || t == T_FIXED;
}

static node_t *named_find(eddy_avro_schema_t *s, const char *full)
{
        for (size_t i = 0; i < s->nall; i++)
                if (s->all[i]->name && !strcmp(s->all[i]->name, full))
                        return s->all[i];
        return NULL;
}

/* The full name of @p name in namespace @p ns, into @p dst. */
static void full_name(const char *name, const char *ns, char *dst, size_t dsz)
{
        if (strchr(name, '.') || !ns || !*ns)
                snprintf(dst, dsz, "%s", name);
        else
                snprintf(dst, dsz, "%s.%s", ns, name);
}

static const char *short_name(const char *full)
{
        const char *d = strrchr(full, '.');
        return d ? d + 1 : full;
}

static node_t *parse_node(parse_t *p, json_t *j, const char *ns, int depth);

static node_t *parse_named_ref(parse_t *p, const char *name, const char *ns)
{
        for (int i = 0; i < 8; i++)
                if (!strcmp(name, prim_names[i]))
                        return node_new(p->s, (ty_t)i);
        char full[512];
        full_name(name, ns, full, sizeof(full));
        node_t *n = named_find(p->s, full);
        if (!n)
                n = named_find(p->s, name);
        if (!n)
                perr(p, "unknown type \"%s\"", name);
        return n;
}

static void parse_record(parse_t *p, node_t *n, json_t *j, const char *ns, int depth)
{
        json_t *fields = json_object_get(j, "fields");
        if (!json_is_array(fields)) {
                perr(p, "record %s: \"fields\" is not an array", n->name);
                return;
        }
        n->nfields = json_array_size(fields);
        n->fields = calloc(n->nfields ? n->nfields : 1, sizeof(*n->fields));
        if (!n->fields)
                abort();
        for (size_t i = 0; i < n->nfields && !p->failed; i++) {
                json_t *f = json_array_get(fields, i);
                json_t *fname = json_object_get(f, "name");
                if (!json_is_string(fname)) {
                        perr(p, "record %s: field %zu has no name", n->name, i);
                        return;
                }
                field_t *fd = &n->fields[i];
                fd->name = xstrdup(json_string_value(fname));
                for (size_t k = 0; k < i; k++)
                        if (!strcmp(n->fields[k].name, fd->name)) {
                                perr(p, "record %s: field %s twice", n->name, fd->name);
                                return;
                        }
                json_t *ft = json_object_get(f, "type");
                if (!ft) {
                        perr(p, "record %s: field %s has no type", n->name, fd->name);
                        return;
                }
                fd->type = parse_node(p, ft, ns, depth + 1);
                json_t *def = json_object_get(f, "default");
                if (def)
                        fd->def = json_incref(def);
                json_t *al = json_object_get(f, "aliases");
                if (json_is_array(al)) {
                        fd->aliases = calloc(json_array_size(al) + 1, sizeof(char *));
                        if (!fd->aliases)
                                abort();
                        size_t k;
                        json_t *a;
                        json_array_foreach(al, k, a) if (json_is_string(a))
                            fd->aliases[fd->naliases++] = xstrdup(json_string_value(a));
                }
        }
}

static node_t *parse_object(parse_t *p, json_t *j, const char *ns, int depth)
{
        json_t *jt = json_object_get(j, "type");
        const char *t = json_string_value(jt);
        if (!t) {
                /* {"type": {...}}: a nested type definition */
                if (jt)
                        return parse_node(p, jt, ns, depth + 1);
                perr(p, "a schema object without \"type\"");
                return NULL;
        }
        ty_t ty;
        if (!strcmp(t, "record") || !strcmp(t, "error"))
                ty = T_RECORD;
        else if (!strcmp(t, "enum"))
                ty = T_ENUM;
        else if (!strcmp(t, "fixed"))
                ty = T_FIXED;
        else if (!strcmp(t, "array"))
                ty = T_ARRAY;
        else if (!strcmp(t, "map"))
                ty = T_MAP;
        else
                return parse_named_ref(p, t, ns); /* {"type": "long", "logicalType": ...} */
        node_t *n = node_new(p->s, ty);
        if (ty == T_ARRAY || ty == T_MAP) {
                json_t *it = json_object_get(j, ty == T_ARRAY ? "items" : "values");
                if (!it) {
                        perr(p, "%s without \"%s\"", t, ty == T_ARRAY ? "items" : "values");
                        return NULL;
                }
                n->items = parse_node(p, it, ns, depth + 1);
                return n;
        }
        const char *name = json_string_value(json_object_get(j, "name"));
        if (!name || !*name) {
                perr(p, "a %s without a name", t);
                return NULL;
        }
        const char *nns = json_string_value(json_object_get(j, "namespace"));
        char full[512];
        full_name(name, nns ? nns : ns, full, sizeof(full));
        if (named_find(p->s, full)) {
                perr(p, "type %s defined twice", full);
                return NULL;
        }
        n->name = xstrdup(full);
        /* the namespace of the types defined inside */
        char inner[512];
        snprintf(inner, sizeof(inner), "%s", full);
        char *dot = strrchr(inner, '.');
        if (dot)
                *dot = '\0';
        else
                inner[0] = '\0';
        if (ty == T_RECORD) {
                parse_record(p, n, j, inner, depth);
        } else if (ty == T_ENUM) {
                json_t *syms = json_object_get(j, "symbols");
                if (!json_is_array(syms) || json_array_size(syms) == 0) {
                        perr(p, "enum %s: \"symbols\" is not a non-empty array", full);
                        return NULL;
                }
                n->nsyms = json_array_size(syms);
                n->syms = calloc(n->nsyms, sizeof(char *));
                if (!n->syms)
                        abort();
                for (size_t i = 0; i < n->nsyms; i++) {
                        const char *sy = json_string_value(json_array_get(syms, i));
                        if (!sy) {
                                perr(p, "enum %s: symbol %zu is not a string", full, i);
                                return NULL;
                        }
                        n->syms[i] = xstrdup(sy);
                }
                const char *d = json_string_value(json_object_get(j, "default"));
                for (size_t i = 0; d && i < n->nsyms; i++)
                        if (!strcmp(n->syms[i], d))
                                n->sym_default = (int)i;
        } else {
                json_t *sz = json_object_get(j, "size");
                if (!json_is_integer(sz) || json_integer_value(sz) < 0 ||
                    json_integer_value(sz) > (1 << 20)) {
                        perr(p, "fixed %s: bad \"size\"", full);
                        return NULL;
                }
                n->size = (size_t)json_integer_value(sz);
        }
        return n;
}

static node_t *parse_node(parse_t *p, json_t *j, const char *ns, int depth)
{
        if (p->failed)
                return NULL;
        if (depth > MAX_DEPTH) {
                perr(p, "schema nested deeper than %d", MAX_DEPTH);
                return NULL;
        }
        if (json_is_string(j))
                return parse_named_ref(p, json_string_value(j), ns);
        if (json_is_object(j))
                return parse_object(p, j, ns, depth);
        if (json_is_array(j)) {
                node_t *n = node_new(p->s, T_UNION);
                n->nbr = json_array_size(j);
                if (n->nbr == 0) {
                        perr(p, "an empty union");
                        return NULL;
                }
                n->br = calloc(n->nbr, sizeof(*n->br));
                if (!n->br)
                        abort();
                for (size_t i = 0; i < n->nbr && !p->failed; i++) {
                        n->br[i] = parse_node(p, json_array_get(j, i), ns, depth + 1);
                        if (n->br[i] && n->br[i]->t == T_UNION)
                                perr(p, "a union inside a union");
                }
                return n;
        }
        perr(p, "a schema is a string, an object or an array");
        return NULL;
}

eddy_avro_schema_t *eddy_avro_schema_parse(const char *json, size_t len, char *errstr,
                                           size_t errstr_size)
{
        json_error_t jerr;
        json_t *j = json_loadb(json, len, JSON_DECODE_ANY, &jerr);
        if (!j) {
                snprintf(errstr, errstr_size, "schema is not JSON: %s (line %d)", jerr.text,
                         jerr.line);
                return NULL;
        }
        eddy_avro_schema_t *s = calloc(1, sizeof(*s));
        if (!s)
                abort();
        parse_t p = {s, errstr, errstr_size, 0};
        s->root = parse_node(&p, j, NULL, 0);
        json_decref(j);
        if (p.failed || !s->root) {
                if (!p.failed)
                        snprintf(errstr, errstr_size, "bad schema");
                eddy_avro_schema_destroy(s);
                return NULL;
        }
        s->text = eddy__xrealloc(NULL, len + 1);
        memcpy(s->text, json, len);
        s->text[len] = '\0';
        return s;
}

void eddy_avro_schema_destroy(eddy_avro_schema_t *s)
{
        if (!s)
                return;
        for (size_t i = 0; i < s->nall; i++) {
                node_t *n = s->all[i];
                for (size_t f = 0; f < n->nfields; f++) {
                        free(n->fields[f].name);
                        json_decref(n->fields[f].def);
                        for (size_t a = 0; a < n->fields[f].naliases; a++)
                                free(n->fields[f].aliases[a]);
                        free(n->fields[f].aliases);
                }
                free(n->fields);
                for (size_t k = 0; k < n->nsyms; k++)
                        free(n->syms[k]);
                free(n->syms);
                free(n->br);
                free(n->name);
                free(n);
        }
        free(s->all);
        free(s->text);
        free(s);
}

const char *eddy_avro_schema_text(const eddy_avro_schema_t *s)
{
        return s->text;
}

/* ---------------------------------------------------------------- resolution: the plan */

typedef enum {
        OP_NULL,
        OP_BOOL,
        OP_INT,    /* writer int, JSON number */
        OP_LONG,   /* writer long */
        OP_FLOAT,  /* writer float */
        OP_DOUBLE, /* writer double */
        OP_STRING, /* writer string, or bytes read as string: UTF-8 checked */
        OP_BYTES,  /* writer bytes, read as bytes: code points 0-255 */
        OP_FIXED,
        OP_ENUM,
        OP_RECORD,
        OP_ARRAY,
        OP_MAP,
        OP_WUNION, /* writer union: a branch index, then that branch's plan */
        OP_FAIL,   /* a writer branch the reader has no match for */
} op_t;

typedef struct plan_s plan_t;

typedef struct pfield_s {
        const node_t *wt; /* the writer field's type, to skip it */
        plan_t *p;        /* NULL: skip */
        char *key;        /* "\"name\":", JSON-escaped */
        size_t klen;
} pfield_t;

struct plan_s {
        op_t op;
        const node_t *w, *r;
        pfield_t *f; /* record: the writer's fields in order */
        size_t nf;
        char *defs; /* record: ",\"name\":default" of reader fields the writer lacks, joined */
        size_t dlen;
        int *symmap; /* enum: writer symbol -> reader symbol, -1 none */
        plan_t *items;
        plan_t **br;
        size_t nbr;
};

struct eddy_avro_reader_s {
        plan_t *root;
        plan_t **all;
        size_t nall, cap;
};

typedef struct res_s {
        eddy_avro_reader_t *rd;
        char *errstr;
        size_t errstr_size;
        int failed;
} res_t;

static void rerr(res_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rerr(res_t *r, const char *fmt, ...)
{
        if (r->failed++)
                return;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->errstr, r->errstr_size, fmt, ap);
        va_end(ap);
}

static plan_t *plan_new(eddy_avro_reader_t *rd, op_t op, const node_t *w, const node_t *r)
{
        if (rd->nall == rd->cap) {
                rd->cap = rd->cap ? rd->cap * 2 : 16;
                rd->all = eddy__xrealloc(rd->all, rd->cap * sizeof(*rd->all));
        }
        plan_t *p = calloc(1, sizeof(*p));
        if (!p)
                abort();
        p->op = op;
        p->w = w;
        p->r = r;
        rd->all[rd->nall++] = p;
        return p;
}

/* JSON string escaping of trusted text (schema names). */
static void json_str(eddy_wbuf_t *b, const char *s, size_t n)
{
        json_t *js = json_stringn_nocheck(s, n);
        char *d = js ? json_dumps(js, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
        json_decref(js);
        out_s(b, d ? d : "\"\"");
        free(d);
}

static int same_name(const node_t *w, const node_t *r, int top)
{
        return top || !strcmp(short_name(w->name), short_name(r->name));
}

/* Whether writer type @p w matches reader type @p r without a union (for picking a branch):
 * 2 the same type, 1 by promotion, 0 not at all. */
static int matches(const node_t *w, const node_t *r)
{
        if (w->t == r->t) {
                if (is_named(w->t))
                        return !strcmp(short_name(w->name), short_name(r->name)) ? 2 : 0;
                return 2;
        }
        switch (w->t) {
        case T_INT:
                return r->t == T_LONG || r->t == T_FLOAT || r->t == T_DOUBLE;
        case T_LONG:
                return r->t == T_FLOAT || r->t == T_DOUBLE;
        case T_FLOAT:
                return r->t == T_DOUBLE;
        case T_STRING:
                return r->t == T_BYTES;
        case T_BYTES:
                return r->t == T_STRING;
        default:
                return 0;
        }
}

static plan_t *resolve(res_t *rs, const node_t *w, const node_t *r, int depth, int top);

static plan_t *resolve_record(res_t *rs, const node_t *w, const node_t *r, int depth, int top)
{
        /* a recursive type: reuse the plan being built for this pair */
        for (size_t i = 0; i < rs->rd->nall; i++)
                if (rs->rd->all[i]->op == OP_RECORD && rs->rd->all[i]->w == w &&
                    rs->rd->all[i]->r == r)
                        return rs->rd->all[i];
        plan_t *p = plan_new(rs->rd, OP_RECORD, w, r);
        p->nf = w->nfields;
        p->f = calloc(w->nfields ? w->nfields : 1, sizeof(*p->f));
        if (!p->f)
                abort();
        char *rused = calloc(r->nfields + 1, 1);
        if (!rused)
                abort();
        for (size_t i = 0; i < w->nfields && !rs->failed; i++) {
                const field_t *wf = &w->fields[i];
                p->f[i].wt = wf->type;
                const field_t *rf = NULL;
                size_t ri = 0;
                for (ri = 0; ri < r->nfields && !rf; ri++) {
                        if (!strcmp(r->fields[ri].name, wf->name))
                                rf = &r->fields[ri];
                        for (size_t a = 0; !rf && a < r->fields[ri].naliases; a++)
                                if (!strcmp(r->fields[ri].aliases[a], wf->name))
                                        rf = &r->fields[ri];
                        if (rf)
                                break;
                }
                if (!rf)
                        continue; /* not in the reader: skipped */
                rused[ri] = 1;
                p->f[i].p = resolve(rs, wf->type, rf->type, depth + 1, 0);
                eddy_wbuf_t k = {0};
                json_str(&k, rf->name, strlen(rf->name));
                out_c(&k, ':');
                p->f[i].key = (char *)k.p;
                p->f[i].klen = k.len;
        }
        eddy_wbuf_t d = {0};
        for (size_t ri = 0; ri < r->nfields && !rs->failed; ri++) {
                if (rused[ri])
                        continue;
                const field_t *rf = &r->fields[ri];
                if (!rf->def) {
                        rerr(rs,
                             "reader field %s.%s is not in the writer schema and has no default",
                             r->name, rf->name);
                        break;
                }
                out_c(&d, ',');
                json_str(&d, rf->name, strlen(rf->name));
                out_c(&d, ':');
                char *dj = json_dumps(rf->def, JSON_ENCODE_ANY | JSON_COMPACT);
                out_s(&d, dj ? dj : "null");
                free(dj);
        }
        free(rused);
        p->defs = (char *)d.p;
        p->dlen = d.len;
        (void)top;
        return p;
}

static plan_t *resolve(res_t *rs, const node_t *w, const node_t *r, int depth, int top)
{
        if (rs->failed)
                return NULL;
        if (depth > MAX_DEPTH) {
                rerr(rs, "schemas nested deeper than %d", MAX_DEPTH);
                return NULL;
        }
        if (w->t == T_UNION) {
                plan_t *p = plan_new(rs->rd, OP_WUNION, w, r);
                p->nbr = w->nbr;
                p->br = calloc(w->nbr, sizeof(*p->br));
                if (!p->br)
                        abort();
                for (size_t i = 0; i < w->nbr && !rs->failed; i++) {
                        const node_t *wb = w->br[i];
                        /* a branch without a match fails only if a datum uses it */
                        int ok = 0;
                        if (r->t == T_UNION) {
                                for (size_t k = 0; k < r->nbr && !ok; k++)
                                        ok = matches(wb, r->br[k]);
                        } else {
                                ok = matches(wb, r) || (wb->t == T_UNION);
                        }
                        p->br[i] = ok ? resolve(rs, wb, r, depth + 1, top)
                                      : plan_new(rs->rd, OP_FAIL, wb, r);
                }
                return p;
        }
        if (r->t == T_UNION) {
                /* the first branch of the same type, else the first one by promotion */
                const node_t *pick = NULL;
                for (int want = 2; want >= 1 && !pick; want--)
                        for (size_t k = 0; k < r->nbr && !pick; k++)
                                if (matches(w, r->br[k]) == want)
                                        pick = r->br[k];
                if (!pick) {
                        rerr(rs, "writer type %s matches no branch of the reader's union",
                             w->name           ? w->name
                             : w->t < 8        ? prim_names[w->t]
                             : w->t == T_ARRAY ? "array"
                                               : "map");
                        return NULL;
                }
                return resolve(rs, w, pick, depth + 1, top);
        }
        if (!matches(w, r) && !(top && w->t == r->t)) {
                rerr(rs, "writer type %s can not be read as %s",
                     w->name    ? w->name
                     : w->t < 8 ? prim_names[w->t]
                                : "a container",
                     r->name    ? r->name
                     : r->t < 8 ? prim_names[r->t]
                                : "a container");
                return NULL;
        }
        switch (w->t) {
        case T_NULL:
                return plan_new(rs->rd, OP_NULL, w, r);
        case T_BOOLEAN:
                return plan_new(rs->rd, OP_BOOL, w, r);
        case T_INT:
                return plan_new(rs->rd, OP_INT, w, r);
        case T_LONG:
                return plan_new(rs->rd, OP_LONG, w, r);
        case T_FLOAT:
                return plan_new(rs->rd, OP_FLOAT, w, r);
        case T_DOUBLE:
                return plan_new(rs->rd, OP_DOUBLE, w, r);
        case T_STRING:
                return plan_new(rs->rd, OP_STRING, w, r);
        case T_BYTES:
                return plan_new(rs->rd, r->t == T_STRING ? OP_STRING : OP_BYTES, w, r);
        case T_FIXED:
                if (w->size != r->size) {
                        rerr(rs, "fixed %s: size %zu in the writer, %zu in the reader", w->name,
                             w->size, r->size);
                        return NULL;
                }
                return plan_new(rs->rd, OP_FIXED, w, r);
        case T_ENUM: {
                if (!same_name(w, r, top)) {
                        rerr(rs, "enum %s read as %s", w->name, r->name);
                        return NULL;
                }
                plan_t *p = plan_new(rs->rd, OP_ENUM, w, r);
                p->symmap = calloc(w->nsyms, sizeof(int));
                if (!p->symmap)
                        abort();
                for (size_t i = 0; i < w->nsyms; i++) {
                        p->symmap[i] = r->sym_default;
                        for (size_t k = 0; k < r->nsyms; k++)
                                if (!strcmp(w->syms[i], r->syms[k]))
                                        p->symmap[i] = (int)k;
                }
                return p;
        }
        case T_RECORD:
                if (!same_name(w, r, top)) {
                        rerr(rs, "record %s read as %s", w->name, r->name);
                        return NULL;
                }
                return resolve_record(rs, w, r, depth, top);
        case T_ARRAY:
        case T_MAP: {
                plan_t *p = plan_new(rs->rd, w->t == T_ARRAY ? OP_ARRAY : OP_MAP, w, r);
                p->items = resolve(rs, w->items, r->items, depth + 1, 0);
                return p;
        }
        default:
                rerr(rs, "unexpected type");
                return NULL;
        }
}

eddy_avro_reader_t *eddy_avro_reader_new(const eddy_avro_schema_t *w, const eddy_avro_schema_t *r,
                                         char *errstr, size_t errstr_size)
{
        eddy_avro_reader_t *rd = calloc(1, sizeof(*rd));
        if (!rd)
                abort();
        res_t rs = {rd, errstr, errstr_size, 0};
        rd->root = resolve(&rs, w->root, r ? r->root : w->root, 0, 1);
        if (rs.failed || !rd->root) {
                if (!rs.failed)
                        snprintf(errstr, errstr_size, "schemas do not resolve");
                eddy_avro_reader_destroy(rd);
                return NULL;
        }
        return rd;
}

void eddy_avro_reader_destroy(eddy_avro_reader_t *rd)
{
        if (!rd)
                return;
        for (size_t i = 0; i < rd->nall; i++) {
                plan_t *p = rd->all[i];
                for (size_t f = 0; f < p->nf; f++)
                        free(p->f[f].key);
                free(p->f);
                free(p->defs);
                free(p->symmap);
                free(p->br);
                free(p);
        }
        free(rd->all);
        free(rd);
}

/* ---------------------------------------------------------------- decoding */

typedef struct dec_s {
        const unsigned char *p, *end;
        eddy_wbuf_t *out;
        size_t out_max;  /* out->len may not pass this */
        int64_t budget;  /* items left: bounds the work of zero-byte items */
        int err;         /* eddy_avro_err_t */
        char detail[96]; /* of the first error */
} dec_t;

static void derr(dec_t *d, int err, const char *what)
{
        if (d->err)
                return;
        d->err = err;
        snprintf(d->detail, sizeof(d->detail), "%s", what);
}

static int64_t rd_long(dec_t *d)
{
        uint64_t z = 0;
        for (int shift = 0; shift < 64; shift += 7) {
                if (d->p >= d->end) {
                        derr(d, EDDY_AVRO_TRUNCATED, "a varint runs past the end");
                        return 0;
                }
                unsigned char c = *d->p++;
                if (shift == 63 && (c & 0x7e)) {
                        derr(d, EDDY_AVRO_TYPE, "a varint longer than 64 bits");
                        return 0;
                }
                z |= (uint64_t)(c & 0x7f) << shift;
                if (!(c & 0x80))
                        return (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
        }
        derr(d, EDDY_AVRO_TYPE, "a varint longer than 10 bytes");
        return 0;
}

static int32_t rd_int(dec_t *d)
{
        int64_t v = rd_long(d);
        if (v < INT32_MIN || v > INT32_MAX) {
                derr(d, EDDY_AVRO_TYPE, "an int out of range");
                return 0;
        }
        return (int32_t)v;
}

static const unsigned char *rd_fixed(dec_t *d, size_t n)
{
        if ((size_t)(d->end - d->p) < n) {
                derr(d, EDDY_AVRO_TRUNCATED, "data runs past the end");
                d->p = d->end;
                return NULL;
        }
        const unsigned char *s = d->p;
        d->p += n;
        return s;
}

static const unsigned char *rd_bytes(dec_t *d, size_t *n)
{
        int64_t l = rd_long(d);
        if (d->err)
                return NULL;
        if (l < 0) {
                derr(d, EDDY_AVRO_TYPE, "a negative length");
                return NULL;
        }
        *n = (size_t)l;
        return rd_fixed(d, (size_t)l);
}

static int room(dec_t *d, size_t n)
{
        if (d->out->len + n > d->out_max) {
                derr(d, EDDY_AVRO_TOO_LARGE, "the JSON would exceed its limit");
                return 0;
        }
        return 1;
}

static void emit(dec_t *d, const void *s, size_t n)
{
        if (room(d, n))
                eddy_wbuf_put(d->out, s, n);
}

static const char hexd[] = "0123456789abcdef";

/* A JSON string of UTF-8 text (checked: no overlong forms, surrogates or > U+10FFFF), or, with
 * @p latin1, of bytes taken as code points 0-255. */
static void emit_str(dec_t *d, const unsigned char *s, size_t n, int latin1)
{
        if (!room(d, n * 6 + 2))
                return;
        eddy_wbuf_t *o = d->out;
        out_c(o, '"');
        size_t i = 0;
        while (i < n) {
                size_t j = i;
                while (j < n && s[j] >= 0x20 && s[j] < 0x80 && s[j] != '"' && s[j] != '\\')
                        j++;
                if (j > i)
                        eddy_wbuf_put(o, s + i, j - i);
                i = j;
                if (i >= n)
                        break;
                unsigned char c = s[i];
                if (c < 0x80 || latin1) {
                        char e[6] = {'\\', 'u', '0', '0', hexd[c >> 4], hexd[c & 15]};
                        if (c == '"' || c == '\\') {
                                e[1] = (char)c;
                                eddy_wbuf_put(o, e, 2);
                        } else {
                                eddy_wbuf_put(o, e, 6);
                        }
                        i++;
                        continue;
                }
                size_t len;
                uint32_t cp, min;
                if ((c & 0xe0) == 0xc0) {
                        len = 2, cp = c & 0x1f, min = 0x80;
                } else if ((c & 0xf0) == 0xe0) {
                        len = 3, cp = c & 0x0f, min = 0x800;
                } else if ((c & 0xf8) == 0xf0) {
                        len = 4, cp = c & 0x07, min = 0x10000;
                } else {
                        derr(d, EDDY_AVRO_TYPE, "a string that is not UTF-8");
                        return;
                }
                if (i + len > n) {
                        derr(d, EDDY_AVRO_TYPE, "a string that is not UTF-8");
                        return;
                }
                for (size_t k = 1; k < len; k++) {
                        if ((s[i + k] & 0xc0) != 0x80) {
                                derr(d, EDDY_AVRO_TYPE, "a string that is not UTF-8");
                                return;
                        }
                        cp = (cp << 6) | (s[i + k] & 0x3f);
                }
                if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
                        derr(d, EDDY_AVRO_TYPE, "a string that is not UTF-8");
                        return;
                }
                eddy_wbuf_put(o, s + i, len);
                i += len;
        }
        out_c(o, '"');
}

static void emit_double(dec_t *d, double v, int is_float)
{
        char b[40];
        if (!isfinite(v)) {
                emit(d, "null", 4);
                return;
        }
        int n = snprintf(b, sizeof(b), "%.*g", is_float ? 9 : 15, v);
        if (!is_float && strtod(b, NULL) != v)
                n = snprintf(b, sizeof(b), "%.17g", v);
        if (!strpbrk(b, ".e")) { /* stays a JSON real: 3 -> 3.0 */
                b[n++] = '.';
                b[n++] = '0';
        }
        emit(d, b, (size_t)n);
}

static void emit_long(dec_t *d, int64_t v)
{
        char b[24], *e = b + sizeof(b), *q = e;
        uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
        do {
                *--q = (char)('0' + u % 10);
                u /= 10;
        } while (u);
        if (v < 0)
                *--q = '-';
        emit(d, q, (size_t)(e - q));
}

static int spend(dec_t *d, int64_t n)
{
        d->budget -= n;
        if (d->budget < 0) {
                derr(d, EDDY_AVRO_TOO_LARGE, "too many items");
                return 0;
        }
        return 1;
}

/* Skips one datum of writer type @p w. */
static void skip(dec_t *d, const node_t *w, int depth)
{
        if (d->err)
                return;
        if (depth > MAX_DEPTH) {
                derr(d, EDDY_AVRO_TYPE, "nested too deep");
                return;
        }
        size_t n;
        switch (w->t) {
        case T_NULL:
                return;
        case T_BOOLEAN:
                rd_fixed(d, 1);
                return;
        case T_INT:
        case T_LONG:
        case T_ENUM:
                rd_long(d);
                return;
        case T_FLOAT:
                rd_fixed(d, 4);
                return;
        case T_DOUBLE:
                rd_fixed(d, 8);
                return;
        case T_BYTES:
        case T_STRING:
                rd_bytes(d, &n);
                return;
        case T_FIXED:
                rd_fixed(d, w->size);
                return;
        case T_RECORD:
                for (size_t i = 0; i < w->nfields && !d->err; i++)
                        skip(d, w->fields[i].type, depth + 1);
                return;
        case T_UNION: {
                int64_t b = rd_long(d);
                if (d->err)
                        return;
                if (b < 0 || (uint64_t)b >= w->nbr) {
                        derr(d, EDDY_AVRO_TYPE, "a union branch out of range");
                        return;
                }
                skip(d, w->br[b], depth + 1);
                return;
        }
        case T_ARRAY:
        case T_MAP:
                for (;;) {
                        int64_t c = rd_long(d);
                        if (d->err || c == 0)
                                return;
                        if (c < 0) {
                                int64_t sz = rd_long(d);
                                if (d->err)
                                        return;
                                if (sz < 0 || c == INT64_MIN) {
                                        derr(d, EDDY_AVRO_TYPE, "a bad block");
                                        return;
                                }
                                if (rd_fixed(d, (size_t)sz)) /* the block's size: jump it */
                                        continue;
                                return;
                        }
                        if (!spend(d, c))
                                return;
                        for (int64_t i = 0; i < c && !d->err; i++) {
                                if (w->t == T_MAP)
                                        rd_bytes(d, &n);
                                skip(d, w->items, depth + 1);
                        }
                }
        }
}

static void decode(dec_t *d, const plan_t *p, int depth)
{
        if (d->err)
                return;
        if (depth > MAX_DEPTH) {
                derr(d, EDDY_AVRO_TYPE, "nested too deep");
                return;
        }
        const unsigned char *s;
        size_t n;
        switch (p->op) {
        case OP_NULL:
                emit(d, "null", 4);
                return;
        case OP_BOOL:
                s = rd_fixed(d, 1);
                if (s && *s > 1)
                        derr(d, EDDY_AVRO_TYPE, "a boolean that is not 0 or 1");
                else if (s)
                        emit(d, *s ? "true" : "false", *s ? 4 : 5);
                return;
        case OP_INT: {
                int32_t v = rd_int(d);
                if (!d->err)
                        emit_long(d, v);
                return;
        }
        case OP_LONG: {
                int64_t v = rd_long(d);
                if (!d->err)
                        emit_long(d, v);
                return;
        }
        case OP_FLOAT: {
                s = rd_fixed(d, 4);
                if (!s)
                        return;
                uint32_t u = (uint32_t)s[0] | (uint32_t)s[1] << 8 | (uint32_t)s[2] << 16 |
                             (uint32_t)s[3] << 24;
                float f;
                memcpy(&f, &u, 4);
                emit_double(d, f, 1);
                return;
        }
        case OP_DOUBLE: {
                s = rd_fixed(d, 8);
                if (!s)
                        return;
                uint64_t u = 0;
                for (int i = 7; i >= 0; i--)
                        u = (u << 8) | s[i];
                double v;
                memcpy(&v, &u, 8);
                emit_double(d, v, 0);
                return;
        }
        case OP_STRING:
        case OP_BYTES:
                s = rd_bytes(d, &n);
                if (s)
                        emit_str(d, s, n, p->op == OP_BYTES);
                return;
        case OP_FIXED:
                s = rd_fixed(d, p->w->size);
                if (s)
                        emit_str(d, s, p->w->size, 1);
                return;
        case OP_ENUM: {
                int64_t i = rd_long(d);
                if (d->err)
                        return;
                if (i < 0 || (uint64_t)i >= p->w->nsyms) {
                        derr(d, EDDY_AVRO_TYPE, "an enum index out of range");
                        return;
                }
                int k = p->symmap[i];
                if (k < 0) {
                        derr(d, EDDY_AVRO_TYPE, "an enum symbol the reader does not know");
                        return;
                }
                const char *sy = p->r->syms[k];
                emit_str(d, (const unsigned char *)sy, strlen(sy), 0);
                return;
        }
        case OP_RECORD: {
                emit(d, "{", 1);
                int first = 1;
                for (size_t i = 0; i < p->nf && !d->err; i++) {
                        const pfield_t *f = &p->f[i];
                        if (!f->p) {
                                skip(d, f->wt, depth + 1);
                                continue;
                        }
                        if (!first)
                                emit(d, ",", 1);
                        first = 0;
                        emit(d, f->key, f->klen);
                        decode(d, f->p, depth + 1);
                }
                if (p->dlen)
                        emit(d, p->defs + first, p->dlen - (size_t)first);
                emit(d, "}", 1);
                return;
        }
        case OP_ARRAY:
        case OP_MAP: {
                int map = p->op == OP_MAP, first = 1;
                emit(d, map ? "{" : "[", 1);
                for (;;) {
                        int64_t c = rd_long(d);
                        if (d->err || c == 0)
                                break;
                        if (c < 0) {
                                if (c == INT64_MIN) {
                                        derr(d, EDDY_AVRO_TYPE, "a bad block count");
                                        return;
                                }
                                c = -c;
                                rd_long(d); /* the block's size in bytes: not needed */
                        }
                        if (!spend(d, c))
                                return;
                        for (int64_t i = 0; i < c && !d->err; i++) {
                                if (!first)
                                        emit(d, ",", 1);
                                first = 0;
                                if (map) {
                                        s = rd_bytes(d, &n);
                                        if (!s)
                                                return;
                                        /* JSON parsers refuse "\u0000" in object keys */
                                        if (memchr(s, 0, n)) {
                                                derr(d, EDDY_AVRO_TYPE, "a map key with a NUL");
                                                return;
                                        }
                                        emit_str(d, s, n, 0);
                                        emit(d, ":", 1);
                                }
                                decode(d, p->items, depth + 1);
                        }
                }
                emit(d, map ? "}" : "]", 1);
                return;
        }
        case OP_WUNION: {
                int64_t b = rd_long(d);
                if (d->err)
                        return;
                if (b < 0 || (uint64_t)b >= p->nbr) {
                        derr(d, EDDY_AVRO_TYPE, "a union branch out of range");
                        return;
                }
                decode(d, p->br[b], depth + 1);
                return;
        }
        case OP_FAIL:
                derr(d, EDDY_AVRO_TYPE, "a union branch the reader schema has no match for");
                return;
        }
}

int eddy_avro_to_json(const eddy_avro_reader_t *rd, const void *data, size_t len, size_t max_out,
                      eddy_wbuf_t *out, char *errstr, size_t errstr_size)
{
        size_t len0 = out->len;
        dec_t d = {.p = data, .end = (const unsigned char *)data + len, .out = out};
        d.out_max = len0 + max_out;
        d.budget = 4 * (int64_t)len + 1024;
        decode(&d, rd->root, 0);
        if (!d.err && d.p != d.end)
                derr(&d, EDDY_AVRO_TRAILING, "bytes after the datum");
        if (d.err) {
                out->len = len0;
                snprintf(errstr, errstr_size, "%s (byte %zu of %zu)", d.detail,
                         (size_t)(d.p - (const unsigned char *)data), len);
                return d.err;
        }
        return EDDY_AVRO_OK;
}

/* ---------------------------------------------------------------- encoding */

typedef struct enc_s {
        eddy_wbuf_t *out;
        char path[256];
        char *errstr;
        size_t errstr_size;
        int quiet; /* trying union branches: no message */
} enc_t;

static int eerr(enc_t *e, const char *what)
{
        if (!e->quiet)
                snprintf(e->errstr, e->errstr_size, "%s: %s", e->path[0] ? e->path : "(value)",
                         what);
        return -1;
}

/* A JSON string as bytes, each code point 0-255 one byte. */
static int enc_latin1(enc_t *e, json_t *v, size_t want)
{
        const unsigned char *s = (const unsigned char *)json_string_value(v);
        size_t n = json_string_length(v);
        eddy_wbuf_t tmp = {0};
        for (size_t i = 0; i < n; i++) {
                unsigned c = s[i];
                if (c >= 0x80) {
                        if ((c & 0xe0) != 0xc0 || i + 1 >= n || c > 0xc3) {
                                free(tmp.p);
                                return eerr(e, "bytes: code points above 255");
                        }
                        c = ((c & 0x1f) << 6) | (s[++i] & 0x3f);
                }
                unsigned char b = (unsigned char)c;
                eddy_wbuf_put(&tmp, &b, 1);
        }
        if (want != (size_t)-1 && tmp.len != want) {
                free(tmp.p);
                return eerr(e, "fixed: wrong size");
        }
        if (want == (size_t)-1)
                eddy_avro_long(e->out, (int64_t)tmp.len);
        if (tmp.len)
                eddy_wbuf_put(e->out, tmp.p, tmp.len);
        free(tmp.p);
        return 0;
}

static int enc(enc_t *e, const node_t *n, json_t *v, int depth)
{
        if (depth > MAX_DEPTH)
                return eerr(e, "nested too deep");
        switch (n->t) {
        case T_NULL:
                return json_is_null(v) ? 0 : eerr(e, "expected null");
        case T_BOOLEAN:
                if (!json_is_boolean(v))
                        return eerr(e, "expected a boolean");
                out_c(e->out, json_is_true(v) ? 1 : 0);
                return 0;
        case T_INT:
        case T_LONG: {
                if (!json_is_integer(v))
                        return eerr(e, "expected an integer");
                json_int_t i = json_integer_value(v);
                if (n->t == T_INT && (i < INT32_MIN || i > INT32_MAX))
                        return eerr(e, "an int out of range");
                eddy_avro_long(e->out, (int64_t)i);
                return 0;
        }
        case T_FLOAT:
        case T_DOUBLE: {
                if (!json_is_number(v))
                        return eerr(e, "expected a number");
                double x = json_number_value(v);
                if (n->t == T_FLOAT) {
                        float f = (float)x;
                        uint32_t u;
                        memcpy(&u, &f, 4);
                        unsigned char b[4];
                        for (int i = 0; i < 4; i++)
                                b[i] = (unsigned char)(u >> (8 * i));
                        eddy_wbuf_put(e->out, b, 4);
                } else {
                        eddy_avro_double(e->out, x);
                }
                return 0;
        }
        case T_STRING:
                if (!json_is_string(v))
                        return eerr(e, "expected a string");
                eddy_avro_string(e->out, json_string_value(v), json_string_length(v));
                return 0;
        case T_BYTES:
        case T_FIXED:
                if (!json_is_string(v))
                        return eerr(e, "expected a string");
                return enc_latin1(e, v, n->t == T_FIXED ? n->size : (size_t)-1);
        case T_ENUM:
                if (json_is_string(v))
                        for (size_t i = 0; i < n->nsyms; i++)
                                if (!strcmp(n->syms[i], json_string_value(v))) {
                                        eddy_avro_long(e->out, (int64_t)i);
                                        return 0;
                                }
                return eerr(e, "expected a symbol of the enum");
        case T_ARRAY: {
                if (!json_is_array(v))
                        return eerr(e, "expected an array");
                size_t cnt = json_array_size(v);
                if (cnt)
                        eddy_avro_long(e->out, (int64_t)cnt);
                for (size_t i = 0; i < cnt; i++)
                        if (enc(e, n->items, json_array_get(v, i), depth + 1))
                                return -1;
                out_c(e->out, 0);
                return 0;
        }
        case T_MAP: {
                if (!json_is_object(v))
                        return eerr(e, "expected an object");
                size_t cnt = json_object_size(v);
                if (cnt)
                        eddy_avro_long(e->out, (int64_t)cnt);
                const char *k;
                json_t *x;
                json_object_foreach(v, k, x)
                {
                        eddy_avro_long(e->out, (int64_t)strlen(k));
                        eddy_wbuf_put(e->out, k, strlen(k));
                        if (enc(e, n->items, x, depth + 1))
                                return -1;
                }
                out_c(e->out, 0);
                return 0;
        }
        case T_RECORD: {
                if (!json_is_object(v))
                        return eerr(e, "expected an object");
                size_t plen = strlen(e->path);
                for (size_t i = 0; i < n->nfields; i++) {
                        const field_t *f = &n->fields[i];
                        snprintf(e->path + plen, sizeof(e->path) - plen, "%s%s", plen ? "." : "",
                                 f->name);
                        json_t *x = json_object_get(v, f->name);
                        if (!x)
                                x = f->def;
                        if (!x)
                                return eerr(e, "missing, and no default");
                        if (enc(e, f->type, x, depth + 1))
                                return -1;
                }
                e->path[plen] = '\0';
                return 0;
        }
        case T_UNION: {
                size_t len0 = e->out->len;
                int quiet = e->quiet;
                e->quiet = 1;
                for (size_t i = 0; i < n->nbr; i++) {
                        eddy_avro_long(e->out, (int64_t)i);
                        if (enc(e, n->br[i], v, depth + 1) == 0) {
                                e->quiet = quiet;
                                return 0;
                        }
                        e->out->len = len0;
                }
                e->quiet = quiet;
                return eerr(e, "fits no branch of the union");
        }
        }
        return eerr(e, "unexpected type");
}

int eddy_avro_from_json(const eddy_avro_schema_t *s, const char *json, size_t len, eddy_wbuf_t *out,
                        char *errstr, size_t errstr_size)
{
        json_error_t jerr;
        json_t *v = json_loadb(json, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
        if (!v) {
                snprintf(errstr, errstr_size, "not JSON: %s", jerr.text);
                return -1;
        }
        size_t len0 = out->len;
        enc_t e = {.out = out, .errstr = errstr, .errstr_size = errstr_size};
        int rc = enc(&e, s->root, v, 0);
        json_decref(v);
        if (rc)
                out->len = len0;
        return rc;
}

/* ---------------------------------------------------------------- Confluent wire format */

int eddy_avro_confluent(const void *data, size_t len, int32_t *id, const void **body, size_t *blen)
{
        const unsigned char *p = data;
        if (len < 1 || p[0] != 0)
                return len < 1 ? EDDY_AVRO_TRUNCATED : EDDY_AVRO_MAGIC;
        if (len < EDDY_AVRO_CONFLUENT_HDR)
                return EDDY_AVRO_TRUNCATED;
        *id = (int32_t)((uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 |
                        (uint32_t)p[4]);
        *body = p + EDDY_AVRO_CONFLUENT_HDR;
        *blen = len - EDDY_AVRO_CONFLUENT_HDR;
        return EDDY_AVRO_OK;
}

void eddy_avro_confluent_header(eddy_wbuf_t *out, int32_t id)
{
        unsigned char h[EDDY_AVRO_CONFLUENT_HDR] = {
            0, (unsigned char)((uint32_t)id >> 24), (unsigned char)((uint32_t)id >> 16),
            (unsigned char)((uint32_t)id >> 8), (unsigned char)id};
        eddy_wbuf_put(out, h, sizeof(h));
}
