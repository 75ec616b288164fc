/* warehouse.h: warehouse tables (schemas/<table>.avsc), rows in Avro binary, and the two
 * sinks: Avro container files in Hive-style partitions (the lake) and ClickHouse over HTTP. */
#ifndef EDDY_WAREHOUSE_H
#define EDDY_WAREHOUSE_H

#include <stddef.h>
#include <stdint.h>

/* A growable byte buffer. */
typedef struct eddy_wbuf_s {
        unsigned char *p;
        size_t len, cap;
} eddy_wbuf_t;

/** Appends @p n bytes of @p p; with p NULL, n bytes the caller fills. */
void eddy_wbuf_put(eddy_wbuf_t *b, const void *p, size_t n);
void eddy_wbuf_free(eddy_wbuf_t *b);

/* Avro binary encoding of primitives (zig-zag varints, length-prefixed bytes). */
void eddy_avro_long(eddy_wbuf_t *b, int64_t v);
void eddy_avro_string(eddy_wbuf_t *b, const void *s, size_t n);
void eddy_avro_double(eddy_wbuf_t *b, double v);
void eddy_avro_bool(eddy_wbuf_t *b, int v);

typedef enum {
        EDDY_WH_STRING,
        EDDY_WH_LONG,
        EDDY_WH_INT,
        EDDY_WH_DOUBLE,
        EDDY_WH_BOOLEAN,
} eddy_wh_type_t;

typedef struct eddy_wh_col_s {
        char *name;
        eddy_wh_type_t type;
        int nullable; /* the Avro type is ["null", T] */
        int identity; /* listed in the schema's "eddy.identity" */
} eddy_wh_col_t;

/* The columns every row ends with, in this order: the input record that made it. */
#define EDDY_WH_META_COLS 4 /* _topic string, _partition int, _offset long, _seq long */

typedef struct eddy_wh_table_s {
        char *name;
        char *json; /* the .avsc text */
        void *avro; /* avro_schema_t */
        eddy_wh_col_t *cols;
        int ncols; /* including the EDDY_WH_META_COLS last ones */
} eddy_wh_table_t;

/**
 * @brief Loads table @p name from the schemas built into the binary (schemas/<name>.avsc).
 * @returns 0, or -1 with the reason in @p errstr. Free with eddy_wh_table_free().
 */
int eddy_wh_table_load(const char *name, eddy_wh_table_t *t, char *errstr, size_t errstr_size);
void eddy_wh_table_free(eddy_wh_table_t *t);

/** One row handed to a sink: its Avro body (every column), event time and identity. */
typedef struct eddy_wh_row_s {
        const unsigned char *body;
        size_t len;
        int64_t ts; /* event time, epoch ms: the lake's dt/hr */
        int32_t partition;
        int64_t pos, seq; /* _offset, _seq */
} eddy_wh_row_t;

/**
 * @brief Writes @p rows (all of one input partition, in (pos, seq) order) as Avro container
 *        files under @p dir: <table>/dt=YYYY-MM-DD/hr=HH/part-<topic>-<partition>-<first
 *        _offset>-<last _offset>.avro, one file per hour of event time (UTC). Each file is
 *        written to a hidden temporary name, fsync'd and renamed, then its directory fsync'd:
 *        the same rows give the same names and the same bytes, so writing them again is
 *        harmless. @returns 0, or -1 with @p errstr.
 */
int eddy_lake_write(const char *dir, const eddy_wh_table_t *t, const char *topic,
                    const eddy_wh_row_t *rows, size_t nrows, char *errstr, size_t errstr_size);

/* ---- ClickHouse over HTTP ---- */

typedef struct eddy_ch_s eddy_ch_t;

typedef struct eddy_ch_conf_s {
        const char *url; /* http://host:8123 */
        const char *user, *password;
        const char *database;
        const char *table_prefix;
        int create;
        int64_t timeout_ms;
} eddy_ch_conf_t;

/** @returns the handle (no I/O yet), or NULL with @p errstr. Free with eddy_ch_destroy(). */
eddy_ch_t *eddy_ch_new(const eddy_ch_conf_t *conf, char *errstr, size_t errstr_size);
void eddy_ch_destroy(eddy_ch_t *ch);

/* Results of the calls below: 0, or one of these with @p errstr. */
#define EDDY_CH_RETRY -1 /* unreachable, timeout, 5xx that may pass: back off and retry */
#define EDDY_CH_FATAL -2 /* schema mismatch and other errors a retry will not fix */

/** Creates @p t if missing (with conf.create) and checks its columns against the schema. */
int eddy_ch_prepare(eddy_ch_t *ch, const eddy_wh_table_t *t, char *errstr, size_t errstr_size);
/** The highest (_offset, _seq) stored for (@p topic, @p partition); (-1, -1) if none. */
int eddy_ch_max_pos(eddy_ch_t *ch, const eddy_wh_table_t *t, const char *topic, int32_t partition,
                    int64_t *pos, int64_t *seq, char *errstr, size_t errstr_size);
/** One INSERT ... FORMAT RowBinary of @p rows, gzip'd: one block, atomic. */
int eddy_ch_insert(eddy_ch_t *ch, const eddy_wh_table_t *t, const eddy_wh_row_t *rows, size_t nrows,
                   char *errstr, size_t errstr_size);

#endif
