/* codec.h: input values in any format -> the JSON a processor parses; JSON outputs -> their
 * configured format (docs/schemas.md). Owned by the runtime; processors never see it. */
#ifndef EDDY_CODEC_H
#define EDDY_CODEC_H

#include "config.h"
#include "eddy.h"

#include <stddef.h>
#include <stdint.h>

typedef struct eddy_codec_s eddy_codec_t;

/* Results of eddy__codec_decode() and eddy__codec_encode(). */
#define EDDY_CODEC_OK   0
#define EDDY_CODEC_BAD  1 /* a bad record: reason and detail filled, to the dead-letter topic */
#define EDDY_CODEC_WAIT 2 /* the schema registry is unreachable: try the same record again */
#define EDDY_CODEC_FAIL 3 /* an output that does not fit its schema: a processor or config bug */

/**
 * @brief The codec of a job: per input topic (@p rt's input.topics order) its format, writer
 *        and reader schemas; the output format; the registry client.
 * @returns the codec, or NULL with a message naming the key in @p errstr.
 * @remark Free with eddy__codec_destroy(). One thread at a time.
 */
eddy_codec_t *eddy__codec_new(const eddy_rtconf_t *rt, const eddy_processor_t *proc, char *errstr,
                              size_t errstr_size);
void eddy__codec_destroy(eddy_codec_t *c);

/** Whether input topic number @p ti needs decoding (its format is not json). */
int eddy__codec_decodes(const eddy_codec_t *c, int ti);

/**
 * @brief Checks the size of @p val and turns it into JSON per topic @p ti's format.
 * @returns EDDY_CODEC_OK with the JSON in *out (valid until the next call; @p val itself for
 *          json), EDDY_CODEC_BAD with @p reason and @p detail, or EDDY_CODEC_WAIT with why
 *          in @p detail.
 */
int eddy__codec_decode(eddy_codec_t *c, int ti, const void *val, size_t len, const void **out,
                       size_t *olen, char *reason, size_t reason_size, char *detail,
                       size_t detail_size);

/** Milliseconds (monotonic) since which the registry has failed without a success in
 *  between, or 0 while it works. */
int64_t eddy__codec_failing_since(const eddy_codec_t *c);

/** Whether Kafka outputs are encoded (output.format is not json). */
int eddy__codec_encodes(const eddy_codec_t *c);

/**
 * @brief Encodes the JSON output @p val for @p topic: Avro, with the Confluent header of the
 *        schema id registered under <topic>-value (cached per topic) for confluent.
 * @returns EDDY_CODEC_OK with *out valid until the next call, EDDY_CODEC_WAIT (registry
 *          unreachable) or EDDY_CODEC_FAIL, with why in @p errstr.
 */
int eddy__codec_encode(eddy_codec_t *c, const char *topic, const void *val, size_t len,
                       const void **out, size_t *olen, char *errstr, size_t errstr_size);

/** Monotonic milliseconds (the clock of eddy__codec_failing_since()). */
int64_t eddy__codec_now_ms(void);

#endif
