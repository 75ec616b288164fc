/* cdc_fanout.h: the parts of cdc-fanout that unit tests check on their own. */
#ifndef EDDY_CDC_FANOUT_H
#define EDDY_CDC_FANOUT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum { EDDY_CDC_POS_PG = 1, EDDY_CDC_POS_MYSQL = 2 };

/** A source position: PostgreSQL (lsn, 0, 0); MySQL (binlog file number, pos, row). */
typedef struct eddy_cdc_pos_s {
        int kind;
        uint64_t a, b, c;
} eddy_cdc_pos_t;

/** Orders two positions of one row: <0, 0, >0. */
int eddy__cdc_pos_cmp(const eddy_cdc_pos_t *x, const eddy_cdc_pos_t *y);
/** The search index version of a position (grows with it for the changes of one row). */
int64_t eddy__cdc_pos_version(const eddy_cdc_pos_t *p);
/**
 * @brief The position of a change from its Debezium source block; @p file gets the binlog
 *        file name (MySQL), @p table source.table or "" (either may be NULL when not wanted),
 *        @p ts_ms source.ts_ms when present. @returns 0, or -1 with @p why.
 */
int eddy__cdc_source_pos(const char *src, size_t len, eddy_cdc_pos_t *p, char *file, size_t filesz,
                         char *table, size_t tablesz, int64_t *ts_ms, const char **why);
/**
 * @brief The primary key text of a Debezium record key (with or without the schema wrapper):
 *        its columns' values in key order joined by ':', strings without quotes.
 * @returns its length (at most @p max, NUL-terminated in @p out of @p outsz > max bytes), or
 *          -1 with @p why.
 */
ssize_t eddy__cdc_pk(const char *key, size_t len, size_t max, char *out, size_t outsz,
                     const char **why);

#endif
