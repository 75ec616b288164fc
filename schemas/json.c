/* json.c: a strict, allocation-free JSON object decoder for the hot path (top-level fields, and
 * those of chosen member objects in the same pass). */
#include "json.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* What a byte means inside a string. Multi-byte UTF-8 leads are split by the range their
 * first continuation byte must fall in, which is how overlong forms, surrogates and code
 * points above U+10FFFF are refused (RFC 3629 section 4). */
enum {
        SC_PLAIN = 0, /* printable ASCII other than '"' and '\\': the fast path */
        SC_QUOTE,
        SC_BSLASH,
        SC_CTRL,  /* 00..1F must be escaped */
        SC_U2,    /* C2..DF 80..BF */
        SC_U3_E0, /* E0 A0..BF 80..BF */
        SC_U3,    /* E1..EC, EE..EF 80..BF 80..BF */
        SC_U3_ED, /* ED 80..9F 80..BF (no surrogates) */
        SC_U4_F0, /* F0 90..BF 80..BF 80..BF */
        SC_U4,    /* F1..F3 80..BF 80..BF 80..BF */
        SC_U4_F4, /* F4 80..8F 80..BF 80..BF */
        SC_BAD,   /* stray continuation, C0/C1 (overlong), F5..FF */
};

#define P  SC_PLAIN
#define Q  SC_QUOTE
#define B  SC_BSLASH
#define C  SC_CTRL
#define X  SC_BAD
#define U2 SC_U2
#define E0 SC_U3_E0
#define U3 SC_U3
#define ED SC_U3_ED
#define F0 SC_U4_F0
#define U4 SC_U4
#define F4 SC_U4_F4
static const unsigned char str_class[256] = {
    C,  C,  C,  C,  C,  C,  C,  C,  C,  C,  C,  C,  C,  C,  C,  C,  /* 00 */
    C,  C,  C,  C,  C,  C,  C,  C,  C,  C,  C,  C,  C,  C,  C,  C,  /* 10 */
    P,  P,  Q,  P,  P,  P,  P,  P,  P,  P,  P,  P,  P,  P,  P,  P,  /* 20 */
    P,  P,  P,  P,  P,  P,  P,  P,  P,  P,  P,  P,  P,  P,  P,  P,  /* 30 */
    P,  P,  P,  P,  P,  P,  P,  P,  P,  P,  P,  P,  P,  P,  P,  P,  /* 40 */
    P,  P,  P,  P,  P,  P,  P,  P,  P,  P,  P,  P,  B,  P,  P,  P,  /* 50 */
    P,  P,  P,  P,  P,  P,  P,  P,  P,  P,  P,  P,  P,  P,  P,  P,  /* 60 */
    P,  P,  P,  P,  P,  P,  P,  P,  P,  P,  P,  P,  P,  P,  P,  P,  /* 70 */
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  /* 80 */
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  /* 90 */
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  /* A0 */
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  /* B0 */
    X,  X,  U2, U2, U2, U2, U2, U2, U2, U2, U2, U2, U2, U2, U2, U2, /* C0 */
    U2, U2, U2, U2, U2, U2, U2, U2, U2, U2, U2, U2, U2, U2, U2, U2, /* D0 */
    E0, U3, U3, U3, U3, U3, U3, U3, U3, U3, U3, U3, U3, ED, U3, U3, /* E0 */
    F0, U4, U4, U4, F4, X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  /* F0 */
};
#undef P
#undef Q
#undef B
#undef C
#undef X
#undef U2
#undef E0
#undef U3
#undef ED
#undef F0
#undef U4
#undef F4

/* Parser context. Scanners take and return the cursor (NULL on error) so that it can live in
 * a register; only the end and the first error are kept here. */
typedef struct {
        const unsigned char *buf, *end;
        const unsigned char *at; /* where the error is */
        const char *msg;         /* static text of the error */
        const char *dup;         /* a wanted name met twice in the top-level object */
} jp_t;

static const unsigned char *fail(jp_t *jp, const unsigned char *at, const char *msg)
{
        jp->at = at;
        jp->msg = msg;
        return NULL;
}

static inline int is_digit(unsigned char c)
{
        return (unsigned)(c - '0') < 10;
}

static inline int is_cont(unsigned char c)
{
        return (c & 0xC0) == 0x80;
}

static inline int in_range(unsigned char c, unsigned char lo, unsigned char hi)
{
        return (unsigned)(c - lo) <= (unsigned)(hi - lo);
}

static inline const unsigned char *skip_ws(const unsigned char *p, const unsigned char *end)
{
        while (p < end && *p <= ' ' && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
                p++;
        return p;
}

static inline int hex_val(unsigned char c)
{
        if (is_digit(c))
                return c - '0';
        c |= 0x20;
        if (in_range(c, 'a', 'f'))
                return c - 'a' + 10;
        return -1;
}

/* Four hex digits at p (caller checked they are in bounds), or -1. */
static inline long hex4(const unsigned char *p)
{
        int a = hex_val(p[0]), b = hex_val(p[1]), c = hex_val(p[2]), d = hex_val(p[3]);

        if ((a | b | c | d) < 0)
                return -1;
        return (long)a << 12 | b << 8 | c << 4 | d;
}

/* Validate the escape at p (p[0] == '\\'); returns the byte after it. */
static const unsigned char *scan_escape(jp_t *jp, const unsigned char *p)
{
        const unsigned char *end = jp->end;
        long cp, lo;

        if (end - p < 2)
                return fail(jp, end, "unterminated string");
        switch (p[1]) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
                return p + 2;
        case 'u':
                break;
        default:
                return fail(jp, p, "invalid escape in string");
        }
        if (end - p < 6 || (cp = hex4(p + 2)) < 0)
                return fail(jp, p, "invalid \\u escape (expected 4 hex digits)");
        if (cp >= 0xDC00 && cp <= 0xDFFF)
                return fail(jp, p, "lone low surrogate in \\u escape");
        if (cp < 0xD800 || cp > 0xDBFF)
                return p + 6;
        if (end - p < 12 || p[6] != '\\' || p[7] != 'u' || (lo = hex4(p + 8)) < 0xDC00 ||
            lo > 0xDFFF)
                return fail(jp, p, "high surrogate not followed by a low surrogate \\u escape");
        return p + 12;
}

/* Runs sixteen bytes at a time to the first '"', '\\', byte below 0x20 or byte above 0x7F
 * (the bytes below 0x20 as signed chars); @returns where the run stopped, at most 15 bytes
 * before the end when nothing stopped it. */
static inline const unsigned char *run16(const unsigned char *p, const unsigned char *end)
{
#ifdef __SSE2__
        while (end - p >= 16) {
                __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
                __m128i stop = _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
                                            _mm_cmpeq_epi8(v, _mm_set1_epi8('\\')));
                stop = _mm_or_si128(stop, _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)));
                int m = _mm_movemask_epi8(stop);
                if (m)
                        return p + __builtin_ctz((unsigned)m);
                p += 16;
        }
#else
        (void)end;
#endif
        return p;
}

static const unsigned char *scan_string(jp_t *jp, const unsigned char *p, int *escaped)
{
        const unsigned char *end = jp->end;

        for (;;) {
                /* Most string bytes are plain ASCII: run over them sixteen at a time, then
                 * byte by byte to what stopped the run. */
                p = run16(p, end);
                while (end - p >= 4 && (str_class[p[0]] | str_class[p[1]] | str_class[p[2]] |
                                        str_class[p[3]]) == SC_PLAIN)
                        p += 4;
                while (p < end && str_class[*p] == SC_PLAIN)
                        p++;
                if (p == end)
                        return fail(jp, end, "unterminated string");
                switch (str_class[*p]) {
                case SC_QUOTE:
                        return p + 1;
                case SC_BSLASH:
                        *escaped = 1;
                        if (!(p = scan_escape(jp, p)))
                                return NULL;
                        continue;
                case SC_CTRL:
                        return fail(jp, p, "unescaped control character in string");
                case SC_U2:
                        if (end - p < 2 || !is_cont(p[1]))
                                break;
                        p += 2;
                        continue;
                case SC_U3_E0:
                case SC_U3:
                case SC_U3_ED:
                        if (end - p < 3 || !is_cont(p[2]) ||
                            !(str_class[*p] == SC_U3_E0   ? in_range(p[1], 0xA0, 0xBF)
                              : str_class[*p] == SC_U3_ED ? in_range(p[1], 0x80, 0x9F)
                                                          : is_cont(p[1])))
                                break;
                        p += 3;
                        continue;
                case SC_U4_F0:
                case SC_U4:
                case SC_U4_F4:
                        if (end - p < 4 || !is_cont(p[2]) || !is_cont(p[3]) ||
                            !(str_class[*p] == SC_U4_F0   ? in_range(p[1], 0x90, 0xBF)
                              : str_class[*p] == SC_U4_F4 ? in_range(p[1], 0x80, 0x8F)
                                                          : is_cont(p[1])))
                                break;
                        p += 4;
                        continue;
                default:
                        break;
                }
                return fail(jp, p, "invalid UTF-8 in string");
        }
}

static inline const unsigned char *scan_digits(const unsigned char *p, const unsigned char *end)
{
        while (p < end && is_digit(*p))
                p++;
        return p;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? starting at p (p < end). */
static const unsigned char *scan_number(jp_t *jp, const unsigned char *p)
{
        const unsigned char *end = jp->end;

        if (*p == '-' && ++p == end)
                return fail(jp, p, "expected a digit after '-'");
        if (*p == '0') {
                if (++p < end && is_digit(*p))
                        return fail(jp, p, "leading zero in number");
        } else if (is_digit(*p)) {
                p = scan_digits(p + 1, end);
        } else {
                return fail(jp, p, "expected a digit");
        }
        if (p < end && *p == '.') {
                if (++p == end || !is_digit(*p))
                        return fail(jp, p, "expected a digit after '.'");
                p = scan_digits(p + 1, end);
        }
        if (p < end && (*p | 0x20) == 'e') {
                if (++p < end && (*p == '+' || *p == '-'))
                        p++;
                if (p == end || !is_digit(*p))
                        return fail(jp, p, "expected a digit in exponent");
                p = scan_digits(p + 1, end);
        }
        return p;
}

static const unsigned char *scan_literal(jp_t *jp, const unsigned char *p, const char *lit,
                                         size_t n)
{
        if ((size_t)(jp->end - p) < n || memcmp(p, lit, n) != 0)
                return fail(jp, p, "invalid literal (expected true, false or null)");
        return p + n;
}

/* A value that is not a container, at p (p < end). */
static const unsigned char *scan_scalar(jp_t *jp, const unsigned char *p)
{
        int escaped = 0;

        switch (*p) {
        case '"':
                return scan_string(jp, p + 1, &escaped);
        case 't':
                return scan_literal(jp, p, "true", 4);
        case 'f':
                return scan_literal(jp, p, "false", 5);
        case 'n':
                return scan_literal(jp, p, "null", 4);
        default:
                if (*p == '-' || is_digit(*p))
                        return scan_number(jp, p);
                return fail(jp, p, "expected a value");
        }
}

/* Validate the array or object opening at p, a member value of an object @p lvl levels below
 * the top-level one, without recursion: bit i of objs says whether the container i levels out
 * is an object. */
static const unsigned char *skip_container(jp_t *jp, const unsigned char *p, unsigned lvl)
{
        const unsigned char *end = jp->end;
        uint64_t objs = 0;
        unsigned top = lvl; /* lvl: open containers below the top-level object */
        int escaped;

open:
        if (++lvl >= EDDY_JSON_MAX_DEPTH)
                return fail(jp, p, "nesting deeper than 64 levels");
        objs = objs << 1 | (*p == '{');
        p = skip_ws(p + 1, end);
        if (p == end)
                return fail(jp, p, "unexpected end of input");
        if (*p == ((objs & 1) ? '}' : ']'))
                goto close;
        if (!(objs & 1))
                goto value;
key:
        if (p == end)
                return fail(jp, p, "unexpected end of input");
        if (*p != '"')
                return fail(jp, p, "expected '\"' (a member name)");
        if (!(p = scan_string(jp, p + 1, &escaped)))
                return NULL;
        p = skip_ws(p, end);
        if (p == end || *p != ':')
                return fail(jp, p, "expected ':'");
        p = skip_ws(p + 1, end);
value:
        if (p == end)
                return fail(jp, p, "unexpected end of input");
        if (*p == '{' || *p == '[')
                goto open;
        if (!(p = scan_scalar(jp, p)))
                return NULL;
        p = skip_ws(p, end);
        for (;;) {
                if (p == end)
                        return fail(jp, p, "unexpected end of input");
                if (*p == ',') {
                        p = skip_ws(p + 1, end);
                        if (objs & 1)
                                goto key;
                        goto value;
                }
                if (*p != ((objs & 1) ? '}' : ']'))
                        return fail(jp, p,
                                    (objs & 1) ? "expected ',' or '}'" : "expected ',' or ']'");
        close:
                p++;
                objs >>= 1;
                if (--lvl == top)
                        return p;
                p = skip_ws(p, end);
        }
}

/* A member value at p of an object @p lvl levels below the top-level one: validated, with its
 * span in *v. */
static const unsigned char *scan_value(jp_t *jp, const unsigned char *p, eddy_json_val_t *v,
                                       unsigned lvl)
{
        const unsigned char *start = p;

        if (p == jp->end)
                return fail(jp, p, "unexpected end of input");
        v->escaped = 0;
        switch (*p) {
        case '"':
                v->type = EDDY_JSON_STRING;
                if (!(p = scan_string(jp, p + 1, &v->escaped)))
                        return NULL;
                v->p = (const char *)start + 1;
                v->len = (size_t)(p - start) - 2;
                return p;
        case '{':
        case '[':
                v->type = *p == '{' ? EDDY_JSON_OBJECT : EDDY_JSON_ARRAY;
                p = skip_container(jp, p, lvl);
                break;
        case 't':
                v->type = EDDY_JSON_TRUE;
                p = scan_literal(jp, p, "true", 4);
                break;
        case 'f':
                v->type = EDDY_JSON_FALSE;
                p = scan_literal(jp, p, "false", 5);
                break;
        case 'n':
                v->type = EDDY_JSON_NULL;
                p = scan_literal(jp, p, "null", 4);
                break;
        default:
                v->type = EDDY_JSON_NUMBER;
                p = scan_scalar(jp, p); /* a number, or the error for a non-value */
                break;
        }
        if (p) {
                v->p = (const char *)start;
                v->len = (size_t)(p - start);
        }
        return p;
}

/* Decode the escape at q (q[0] == '\\', q < e) into out[0..4); returns the number of bytes
 * written and sets *used, or 0 if it is malformed. */
static size_t decode_escape(const unsigned char *q, const unsigned char *e, unsigned char out[4],
                            size_t *used)
{
        long cp, lo;

        if (e - q < 2)
                return 0;
        *used = 2;
        switch (q[1]) {
        case '"':
        case '\\':
        case '/':
                out[0] = q[1];
                return 1;
        case 'b':
                out[0] = '\b';
                return 1;
        case 'f':
                out[0] = '\f';
                return 1;
        case 'n':
                out[0] = '\n';
                return 1;
        case 'r':
                out[0] = '\r';
                return 1;
        case 't':
                out[0] = '\t';
                return 1;
        case 'u':
                break;
        default:
                return 0;
        }
        if (e - q < 6 || (cp = hex4(q + 2)) < 0 || (cp >= 0xDC00 && cp <= 0xDFFF))
                return 0;
        *used = 6;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (e - q < 12 || q[6] != '\\' || q[7] != 'u' || (lo = hex4(q + 8)) < 0xDC00 ||
                    lo > 0xDFFF)
                        return 0;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                *used = 12;
        }
        if (cp < 0x80) {
                out[0] = (unsigned char)cp;
                return 1;
        }
        if (cp < 0x800) {
                out[0] = (unsigned char)(0xC0 | cp >> 6);
                out[1] = (unsigned char)(0x80 | (cp & 0x3F));
                return 2;
        }
        if (cp < 0x10000) {
                out[0] = (unsigned char)(0xE0 | cp >> 12);
                out[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
                out[2] = (unsigned char)(0x80 | (cp & 0x3F));
                return 3;
        }
        out[0] = (unsigned char)(0xF0 | cp >> 18);
        out[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        out[3] = (unsigned char)(0x80 | (cp & 0x3F));
        return 4;
}

/* Does the escaped member name k[0..klen) decode to name? (Rare: names are seldom escaped.) */
static int escaped_name_eq(const char *name, const unsigned char *k, size_t klen)
{
        const unsigned char *e = k + klen;
        unsigned char u[4];
        size_t un, used, i;

        while (k < e) {
                if (*k != '\\') {
                        u[0] = *k;
                        un = 1;
                        used = 1;
                } else if (!(un = decode_escape(k, e, u, &used))) {
                        return 0;
                }
                for (i = 0; i < un; i++, name++)
                        if (*name == '\0' || (unsigned char)*name != u[i])
                                return 0;
                k += used;
        }
        return *name == '\0';
}

/* Index of the wanted name equal to the member name k[0..klen), or -1. An unescaped member
 * name never contains a NUL byte, so comparing byte by byte stops at the end of a shorter
 * name without reading past it, and the first byte rules out most candidates. */
static inline long match_name(const char *const *names, size_t n, const unsigned char *k,
                              size_t klen, int escaped)
{
        size_t i, j;

        for (i = 0; i < n; i++) {
                const char *name = names[i];

                if (escaped) {
                        if (escaped_name_eq(name, k, klen))
                                return (long)i;
                        continue;
                }
                if (klen == 0) {
                        if (name[0] == '\0')
                                return (long)i;
                        continue;
                }
                if ((unsigned char)name[0] != k[0])
                        continue;
                for (j = 1; j < klen && (unsigned char)name[j] == k[j]; j++)
                        ;
                if (j == klen && name[j] == '\0')
                        return (long)i;
        }
        return -1;
}

/* The members of the object opening at p (*p == '{'), @p lvl levels below the top-level
 * object: wanted names into out, every member to cb, and the object value of a name that nest
 * lists walked the same way in the same pass (one level down only). @returns the byte after
 * the closing '}', or NULL with the error in jp: a wanted name twice sets jp->dup and stops
 * at the top level (@p dup NULL); one level down it sets *dup, keeps the first and goes on. */
static const unsigned char *walk_members(jp_t *jp, const unsigned char *p, unsigned lvl,
                                         const char *const *names, size_t n, eddy_json_val_t *out,
                                         eddy_json_member_cb *cb, void *opaque,
                                         eddy_json_nest_t *nest, size_t nnest, int *dup)
{
        const unsigned char *end = jp->end, *key;
        eddy_json_val_t v;
        int kesc;
        long idx;

        if (n > 0)
                memset(out, 0, n * sizeof(*out));
        p = skip_ws(p + 1, end);
        if (p < end && *p == '}')
                return p + 1;
        for (;;) {
                if (p == end)
                        return fail(jp, p, "unexpected end of input");
                if (*p != '"')
                        return fail(jp, p, "expected '\"' (a member name)");
                key = p + 1;
                kesc = 0;
                if (!(p = scan_string(jp, key, &kesc)))
                        return NULL;
                size_t klen = (size_t)(p - 1 - key);
                idx = match_name(names, n, key, klen, kesc);
                p = skip_ws(p, end);
                if (p == end || *p != ':')
                        return fail(jp, p, "expected ':'");
                p = skip_ws(p + 1, end);
                eddy_json_nest_t *ns = NULL;
                /* a wanted name's second value is only validated: the first is kept */
                if (idx >= 0 && out[idx].type == EDDY_JSON_MISSING)
                        for (size_t i = 0; i < nnest; i++)
                                if (nest[i].idx == (size_t)idx)
                                        ns = &nest[i];
                if (ns && p < end && *p == '{') {
                        const unsigned char *start = p;
                        if (!(p = walk_members(jp, p, lvl + 1, ns->names, ns->n, ns->out, ns->cb,
                                               ns->opaque, NULL, 0, &ns->dup)))
                                return NULL;
                        ns->walked = 1;
                        v.type = EDDY_JSON_OBJECT;
                        v.p = (const char *)start;
                        v.len = (size_t)(p - start);
                        v.escaped = 0;
                } else if (!(p = scan_value(jp, p, &v, lvl))) {
                        return NULL;
                }
                if (cb) {
                        eddy_json_val_t name = {EDDY_JSON_STRING, (const char *)key, klen, kesc};
                        cb(opaque, &name, &v);
                }
                if (idx >= 0) {
                        if (out[idx].type == EDDY_JSON_MISSING)
                                out[idx] = v;
                        else if (dup)
                                *dup = 1;
                        else {
                                jp->dup = names[idx];
                                return NULL;
                        }
                }
                p = skip_ws(p, end);
                if (p == end)
                        return fail(jp, p, "unexpected end of input");
                if (*p == ',') {
                        p = skip_ws(p + 1, end);
                        continue;
                }
                if (*p != '}')
                        return fail(jp, p, "expected ',' or '}'");
                return p + 1;
        }
}

/* The one object walk behind eddy_json_object(), eddy_json_members() and
 * eddy_json_object_nested(). */
static int object_walk(const char *buf, size_t len, const char *const *names, size_t n,
                       eddy_json_val_t *out, eddy_json_member_cb *cb, void *opaque,
                       eddy_json_nest_t *nest, size_t nnest, char *errstr, size_t errstr_size)
{
        jp_t jp;
        const unsigned char *p = (const unsigned char *)buf, *end = p + len;

        jp.buf = p;
        jp.end = end;
        jp.at = NULL;
        jp.msg = NULL;
        jp.dup = NULL;
        for (size_t i = 0; i < nnest; i++) {
                nest[i].walked = nest[i].dup = 0;
                if (nest[i].n > 0)
                        memset(nest[i].out, 0, nest[i].n * sizeof(*nest[i].out));
        }
        p = skip_ws(p, end);
        if (p == end) {
                fail(&jp, p, "empty input (expected a JSON object)");
                goto err;
        }
        if (*p != '{') {
                if (errstr && errstr_size > 0)
                        snprintf(errstr, errstr_size, "top-level value is not an object");
                return -1;
        }
        if (!(p = walk_members(&jp, p, 0, names, n, out, cb, opaque, nest, nnest, NULL))) {
                if (!jp.dup)
                        goto err;
                if (errstr && errstr_size > 0)
                        snprintf(errstr, errstr_size, "duplicate field '%s'", jp.dup);
                return -1;
        }
        p = skip_ws(p, end);
        if (p == end)
                return 0;
        fail(&jp, p, "trailing data after the object");
err:
        if (errstr && errstr_size > 0)
                snprintf(errstr, errstr_size, "invalid JSON at byte %zu: %s",
                         (size_t)(jp.at - jp.buf), jp.msg);
        return -1;
}

int eddy_json_object(const char *buf, size_t len, const char *const *names, size_t n,
                     eddy_json_val_t *out, char *errstr, size_t errstr_size)
{
        return object_walk(buf, len, names, n, out, NULL, NULL, NULL, 0, errstr, errstr_size);
}

int eddy_json_members(const char *buf, size_t len, eddy_json_member_cb *cb, void *opaque,
                      char *errstr, size_t errstr_size)
{
        return object_walk(buf, len, NULL, 0, NULL, cb, opaque, NULL, 0, errstr, errstr_size);
}

int eddy_json_object_nested(const char *buf, size_t len, const char *const *names, size_t n,
                            eddy_json_val_t *out, eddy_json_nest_t *nest, size_t nnest,
                            char *errstr, size_t errstr_size)
{
        return object_walk(buf, len, names, n, out, NULL, NULL, nest, nnest, errstr, errstr_size);
}

size_t eddy_json_i64(char *dst, int64_t v)
{
        char tmp[24];
        size_t n = 0;
        uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
        do {
                tmp[n++] = (char)('0' + u % 10);
                u /= 10;
        } while (u);
        if (v < 0)
                tmp[n++] = '-';
        for (size_t i = 0; i < n; i++)
                dst[i] = tmp[n - 1 - i];
        return n;
}

size_t eddy_json_quote(char *dst, const void *s, size_t n)
{
        static const char hex[] = "0123456789abcdef";
        const unsigned char *p = s;
        char *d = dst;
        *d++ = '"';
        size_t run = 0;
        for (size_t i = 0; i < n; i++) {
                unsigned char c = p[i];
                if (c >= 0x20 && c != '"' && c != '\\')
                        continue;
                memcpy(d, p + run, i - run);
                d += i - run;
                run = i + 1;
                *d++ = '\\';
                if (c == '"' || c == '\\') {
                        *d++ = (char)c;
                } else {
                        *d++ = 'u';
                        *d++ = '0';
                        *d++ = '0';
                        *d++ = hex[c >> 4];
                        *d++ = hex[c & 15];
                }
        }
        memcpy(d, p + run, n - run);
        d += n - run;
        *d++ = '"';
        return (size_t)(d - dst);
}

ssize_t eddy_json_unescape(const eddy_json_val_t *v, char *dst, size_t dstsize)
{
        const unsigned char *q, *e, *run;
        unsigned char u[4];
        size_t o = 0, un, used;

        if (!v || v->type != EDDY_JSON_STRING || (!v->p && v->len > 0) || v->len > SIZE_MAX / 2)
                return -1;
        if (!v->escaped) {
                if (v->len >= dstsize)
                        return -1;
                if (v->len > 0)
                        memcpy(dst, v->p, v->len);
                dst[v->len] = '\0';
                return (ssize_t)v->len;
        }
        q = (const unsigned char *)v->p;
        e = q + v->len;
        while (q < e) {
                run = q;
                while (q < e && *q != '\\')
                        q++;
                if (q > run) {
                        if ((size_t)(q - run) >= dstsize - o)
                                return -1;
                        memcpy(dst + o, run, (size_t)(q - run));
                        o += (size_t)(q - run);
                }
                if (q == e)
                        break;
                if (!(un = decode_escape(q, e, u, &used)) || un >= dstsize - o)
                        return -1;
                memcpy(dst + o, u, un);
                o += un;
                q += used;
        }
        if (o >= dstsize)
                return -1;
        dst[o] = '\0';
        return (ssize_t)o;
}

/* Is v a NUMBER written without fraction or exponent? */
static int is_integral(const eddy_json_val_t *v)
{
        size_t i = 0;

        if (!v || v->type != EDDY_JSON_NUMBER || !v->p || v->len == 0)
                return 0;
        if (v->p[0] == '-')
                i++;
        if (i == v->len)
                return 0;
        for (; i < v->len; i++)
                if (!is_digit((unsigned char)v->p[i]))
                        return 0;
        return 1;
}

int eddy_json_int64(const eddy_json_val_t *v, int64_t *out)
{
        uint64_t acc = 0, limit;
        size_t i = 0;
        int neg;

        if (!is_integral(v))
                return -1;
        neg = v->p[0] == '-';
        i = (size_t)neg;
        limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        for (; i < v->len; i++) {
                unsigned d = (unsigned)(v->p[i] - '0');

                if (acc > (limit - d) / 10)
                        return -1;
                acc = acc * 10 + d;
        }
        /* -2^63 has no positive int64 counterpart: negate in unsigned, then convert. */
        *out = neg ? (acc == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)acc) : (int64_t)acc;
        return 0;
}

int eddy_json_double(const eddy_json_val_t *v, double *out)
{
        char tmp[256], *endp;
        double d;
        size_t i;
        int saved = errno;

        if (!v || v->type != EDDY_JSON_NUMBER || !v->p || v->len == 0 || v->len >= sizeof(tmp))
                return -1;
        /* Only the JSON number alphabet, so strtod never sees "inf", "nan" or hex. */
        for (i = 0; i < v->len; i++) {
                char c = v->p[i];

                if (!is_digit((unsigned char)c) && c != '-' && c != '+' && c != '.' && c != 'e' &&
                    c != 'E')
                        return -1;
        }
        memcpy(tmp, v->p, v->len);
        tmp[v->len] = '\0';
        errno = 0;
        d = strtod(tmp, &endp);
        if (endp != tmp + v->len || (errno == ERANGE && isinf(d))) {
                errno = saved;
                return -1;
        }
        errno = saved;
        *out = d;
        return 0;
}

ssize_t eddy_json_id(const eddy_json_val_t *v, char *dst, size_t dstsize)
{
        ssize_t n;

        if (!v)
                return -1;
        if (v->type == EDDY_JSON_STRING) {
                n = eddy_json_unescape(v, dst, dstsize);
                if (n < 0 || (v->escaped && memchr(dst, '\0', (size_t)n)))
                        return -1;
                return n;
        }
        if (!is_integral(v) || v->len >= dstsize)
                return -1;
        memcpy(dst, v->p, v->len);
        dst[v->len] = '\0';
        return (ssize_t)v->len;
}
