/* avro_codec.h: Avro binary decoding into JSON text (with writer -> reader schema resolution),
 * JSON -> Avro encoding, and the Confluent wire format (docs/schemas.md). */
#ifndef EDDY_AVRO_CODEC_H
#define EDDY_AVRO_CODEC_H

#include "warehouse.h" /* eddy_wbuf_t */

#include <stddef.h>
#include <stdint.h>

/* Why a datum did not decode; eddy_avro_reason() gives the dead-letter reason token. */
#define EDDY_AVRO_ERR_MAP(XX)                                                                      \
        XX(OK, "ok")                                                                               \
        XX(TRUNCATED, "avro_truncated")                                                            \
        XX(TYPE, "avro_type")                                                                      \
        XX(TRAILING, "avro_trailing")                                                              \
        XX(TOO_LARGE, "too_large")                                                                 \
        XX(MAGIC, "avro_magic")

typedef enum {
#define EDDY__AVRO_ENUM(name, str) EDDY_AVRO_##name,
        EDDY_AVRO_ERR_MAP(EDDY__AVRO_ENUM)
#undef EDDY__AVRO_ENUM
} eddy_avro_err_t;

/** @brief The dead-letter reason token of @p err ("avro_truncated", ...). */
const char *eddy_avro_reason(int err);

/** A parsed Avro schema (opaque). */
typedef struct eddy_avro_schema_s eddy_avro_schema_t;

/**
 * @brief Parses the Avro schema @p json[0..len) (JSON text: a type name, an object or a union).
 * @returns the schema, or NULL with the reason in @p errstr. Free with eddy_avro_schema_destroy().
 * @remark Named types may refer to themselves (recursive records). Logical types are read as
 *         their underlying type.
 */
eddy_avro_schema_t *eddy_avro_schema_parse(const char *json, size_t len, char *errstr,
                                           size_t errstr_size);
void eddy_avro_schema_destroy(eddy_avro_schema_t *s);
/** The schema's text as given to eddy_avro_schema_parse() (NUL-terminated). */
const char *eddy_avro_schema_text(const eddy_avro_schema_t *s);

/** A decoder of data written with one schema, read as another (opaque). */
typedef struct eddy_avro_reader_s eddy_avro_reader_t;

/**
 * @brief Resolves writer schema @p w against reader schema @p r (Avro's schema resolution:
 *        fields matched by name or reader alias, reader fields missing from the writer take
 *        their defaults, writer fields missing from the reader are skipped, int -> long ->
 *        float -> double and string <-> bytes promotions, enum symbols by name, unions by
 *        branch). @p r NULL: read as written.
 * @returns the reader, or NULL with why the schemas do not resolve in @p errstr.
 * @remark Both schemas must outlive the reader. Free with eddy_avro_reader_destroy(). A
 *         reader is immutable after creation: eddy_avro_to_json() may share it across threads.
 */
eddy_avro_reader_t *eddy_avro_reader_new(const eddy_avro_schema_t *w, const eddy_avro_schema_t *r,
                                         char *errstr, size_t errstr_size);
void eddy_avro_reader_destroy(eddy_avro_reader_t *rd);

/**
 * @brief Decodes the Avro binary datum @p data[0..len) (exactly one, nothing after it) and
 *        appends it to @p out as compact JSON text in the reader's shape: records as objects,
 *        unions as their bare value, enums as their symbol, bytes and fixed as strings of code
 *        points 0-255, maps as objects, non-finite floats as null.
 * @param max_out the most bytes of JSON it may append (EDDY_AVRO_TOO_LARGE beyond)
 * @returns EDDY_AVRO_OK, or an eddy_avro_err_t with a detail in @p errstr; on error @p out
 *          keeps its length from before the call. Never reads outside @p data.
 */
int eddy_avro_to_json(const eddy_avro_reader_t *rd, const void *data, size_t len, size_t max_out,
                      eddy_wbuf_t *out, char *errstr, size_t errstr_size);

/**
 * @brief Encodes the JSON text @p json[0..len) as an Avro binary datum of schema @p s, appended
 *        to @p out. A missing record field takes its default; a union takes the first branch
 *        the value fits.
 * @returns 0, or -1 with the reason (the field path, what was expected) in @p errstr; on error
 *          @p out keeps its length from before the call.
 */
int eddy_avro_from_json(const eddy_avro_schema_t *s, const char *json, size_t len, eddy_wbuf_t *out,
                        char *errstr, size_t errstr_size);

/** Bytes of the Confluent wire-format header: magic byte 0, then a 4-byte big-endian schema id. */
#define EDDY_AVRO_CONFLUENT_HDR 5

/**
 * @brief Splits a Confluent wire-format record into its schema id and Avro body.
 * @returns EDDY_AVRO_OK, EDDY_AVRO_MAGIC (first byte not 0) or EDDY_AVRO_TRUNCATED (shorter
 *          than the header).
 */
int eddy_avro_confluent(const void *data, size_t len, int32_t *id, const void **body, size_t *blen);

/** Appends the Confluent header for schema @p id to @p out. */
void eddy_avro_confluent_header(eddy_wbuf_t *out, int32_t id);

#endif
