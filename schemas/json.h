/* json.h: a strict, allocation-free JSON object decoder for the hot path (top-level fields, and
 * those of chosen member objects in the same pass). */
#ifndef EDDY_JSON_H
#define EDDY_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/** Deepest nesting accepted; the top-level object is level 1. */
#define EDDY_JSON_MAX_DEPTH 64

typedef enum {
        EDDY_JSON_MISSING = 0,
        EDDY_JSON_NULL,
        EDDY_JSON_FALSE,
        EDDY_JSON_TRUE,
        EDDY_JSON_NUMBER,
        EDDY_JSON_STRING,
        EDDY_JSON_OBJECT,
        EDDY_JSON_ARRAY
} eddy_json_type_t;

/** One top-level member value, pointing into the parsed buffer (nothing is copied). */
typedef struct {
        eddy_json_type_t type;
        const char *p; /* STRING: the content between the quotes; others: the whole raw text */
        size_t len;
        int escaped; /* STRING only: nonzero if p[0..len) holds backslash escapes */
} eddy_json_val_t;

/**
 * @brief Validate one JSON object and pick out its top-level members named in @p names.
 *
 * buf[0..len) must hold exactly one JSON object, with optional whitespace around it. The
 * whole document is validated per RFC 8259: UTF-8 in strings (no overlong forms, no
 * surrogates), no raw control characters, escapes including \\uXXXX surrogate pairs, the
 * number grammar, and nesting of at most EDDY_JSON_MAX_DEPTH levels. For each top-level
 * member whose unescaped name equals names[i], out[i] is filled; the other out[] entries are
 * EDDY_JSON_MISSING. Nested values are validated and skipped.
 *
 * @returns 0 on success; -1 on error with a short message in @p errstr, e.g.
 *          "invalid JSON at byte 17: expected ':'", "top-level value is not an object",
 *          "duplicate field 'user_id'" (a wanted name occurring twice).
 * @remark buf need not be NUL-terminated and is never read outside [0, len). No allocation,
 *         no global state: safe to call from any number of threads. names[] are plain,
 *         NUL-terminated ASCII; out must hold @p n entries (contents unspecified on error).
 *         The values point into buf and live as long as it does.
 */
int eddy_json_object(const char *buf, size_t len, const char *const *names, size_t n,
                     eddy_json_val_t *out, char *errstr, size_t errstr_size);

typedef void(eddy_json_member_cb)(void *opaque, const eddy_json_val_t *name,
                                  const eddy_json_val_t *val);
/**
 * @brief Validate one JSON object like eddy_json_object() and call @p cb with every top-level
 *        member, in document order (duplicates included): @p name is a STRING value.
 * @returns 0, or -1 with @p errstr (members before the error may have been visited).
 */
int eddy_json_members(const char *buf, size_t len, eddy_json_member_cb *cb, void *opaque,
                      char *errstr, size_t errstr_size);

/** A member object that eddy_json_object_nested() walks in the same pass. */
typedef struct eddy_json_nest_s {
        size_t idx;               /**< the wanted name (index into names) whose value it is */
        const char *const *names; /**< its wanted members, as eddy_json_object()'s */
        size_t n;
        eddy_json_val_t *out;    /**< n entries */
        eddy_json_member_cb *cb; /**< or NULL: called with each of its members, in order */
        void *opaque;
        int walked; /**< out: the value was an object, walked */
        int dup;    /**< out: a wanted name occurs twice in it (out keeps the first) */
} eddy_json_nest_t;

/**
 * @brief eddy_json_object(), and in the same pass, for each of @p nest whose name has an
 *        object value, what eddy_json_object() (names, out) and eddy_json_members() (cb)
 *        would find in that value: the same members, spans and escape flags, with a
 *        duplicate wanted name flagged in @c dup instead of failing. Each nest's out is
 *        cleared first; a name that occurs twice at the top level is walked once (the first).
 * @returns 0, or -1 with @p errstr as eddy_json_object() (the offsets of an error inside a
 *          nested object count from @p buf); callbacks before the error may have run.
 */
int eddy_json_object_nested(const char *buf, size_t len, const char *const *names, size_t n,
                            eddy_json_val_t *out, eddy_json_nest_t *nest, size_t nnest,
                            char *errstr, size_t errstr_size);

/** The most bytes eddy_json_quote() writes for @p n bytes. */
#define EDDY_JSON_QUOTED_MAX(n) (6 * (n) + 2)

/**
 * @brief @p s as a JSON string literal, the quotes included, at @p dst (room for
 *        EDDY_JSON_QUOTED_MAX(n) bytes): '"' and '\\' escaped, control characters as
 *        \\u00XX, every other byte as it is (the text is UTF-8 from a JSON or Avro input).
 * @returns the number of bytes written.
 */
size_t eddy_json_quote(char *dst, const void *s, size_t n);

/** The decimal text of @p v at @p dst (room for 20 bytes), without a NUL; @returns its length. */
size_t eddy_json_i64(char *dst, int64_t v);

/**
 * @brief Copy a STRING value into dst, decoding its escapes, and NUL-terminate it.
 * @returns the length (excluding the terminating NUL; \\u0000 yields embedded NUL bytes), or
 *          -1 if @p v is not a STRING, is malformed, or length + 1 > @p dstsize.
 * @remark For a value with escaped == 0 this is a memcpy.
 */
ssize_t eddy_json_unescape(const eddy_json_val_t *v, char *dst, size_t dstsize);

/**
 * @brief An integral NUMBER (no fraction, no exponent) that fits int64_t.
 * @returns 0 and sets *out; -1 on overflow, a fraction or exponent, or a non-NUMBER.
 */
int eddy_json_int64(const eddy_json_val_t *v, int64_t *out);

/**
 * @brief Any NUMBER as a double, via strtod on a bounded local copy.
 * @returns 0 and sets *out; -1 for a non-NUMBER, a number whose magnitude overflows a double
 *          (e.g. 1e400), or a number text longer than 255 bytes.
 * @remark Expects the C locale for LC_NUMERIC (eddy never calls setlocale); under a locale
 *         whose decimal point is not '.', numbers with a fraction return -1, never a wrong value.
 */
int eddy_json_double(const eddy_json_val_t *v, double *out);

/**
 * @brief An identifier-like value as NUL-terminated text: a STRING (unescaped) or an
 *        integral NUMBER (its text, e.g. 17 -> "17"), for ids sent as "p1" or as 17.
 * @returns the length; -1 for any other type, a NUMBER with a fraction or exponent, a string
 *          containing a NUL character (\\u0000), or length + 1 > @p dstsize.
 */
ssize_t eddy_json_id(const eddy_json_val_t *v, char *dst, size_t dstsize);

#endif /* EDDY_JSON_H */
