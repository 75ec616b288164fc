/* log.h: one line per event of interest, logfmt or JSON, level checked before formatting. */
#ifndef EDDY_LOG_H
#define EDDY_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <syslog.h>

/* debug= contexts: debug-level lines of these facilities are printed whatever log.level. */
#define EDDY_LOG_CONTEXTS_MAP(X)                                                                   \
        X(RUN, "run")                                                                              \
        X(REBALANCE, "rebalance")                                                                  \
        X(STATE, "state")                                                                          \
        X(REDIS, "redis")                                                                          \
        X(OUTBOX, "outbox")                                                                        \
        X(DLQ, "dlq")                                                                              \
        X(OUTPUT, "output")                                                                        \
        X(KAFKA, "kafka")                                                                          \
        X(PROC, "proc")                                                                            \
        X(RECONCILE, "reconcile")                                                                  \
        X(REPLAY, "replay")                                                                        \
        X(METRICS, "metrics")

typedef struct eddy_logger_s {
        int level;       /* syslog level: messages above it are dropped */
        char job[128];   /* the job name, put on every line */
        int json;        /* log.format=json */
        unsigned debug;  /* debug= contexts, one bit per EDDY_LOG_CONTEXTS_MAP row; ~0u: all */
        int debug_procs; /* debug= contains "proc" or "all": every other facility too */
        char **secrets;  /* strings never printed: replaced by [redacted] */
        size_t nsecrets;
} eddy_logger_t;

void eddy__vlog(const eddy_logger_t *lg, int level, const char *fac, const char *fmt, va_list ap);
void eddy__log(const eddy_logger_t *lg, int level, const char *fac, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/** A line about one record or partition: adds topic=, partition= and offset= fields
 *  (@p topic NULL, @p partition < 0, @p offset < 0: that field is left out). */
void eddy__log_at(const eddy_logger_t *lg, int level, const char *fac, const char *topic,
                  int32_t partition, int64_t offset, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

/** @returns the syslog level named @p name ("debug", "info", "notice", "warning", "err"), -1 if
 * none. */
int eddy_log_level(const char *name);

/**
 * @brief Turns on the debug= context @p name ("all", or one of EDDY_LOG_CONTEXTS_MAP).
 * @returns 0, or -1 if there is no such context.
 */
int eddy__log_debug_enable(eddy_logger_t *lg, const char *name);

/** The names of the debug= contexts, "all,run,..." (static). */
const char *eddy__log_contexts(void);

/** Adds a string that must never be printed (copied; empty strings are ignored). */
void eddy__log_secret(eddy_logger_t *lg, const char *s, size_t len);

/** Frees the secrets. */
void eddy__log_free(eddy_logger_t *lg);

/**
 * @brief Replaces every secret of @p lg in @p s (@p len bytes) by "[redacted]".
 * @returns a heap copy (free()) with its length in @p outlen, or NULL if @p s holds none.
 */
char *eddy__redact(const eddy_logger_t *lg, const char *s, size_t len, size_t *outlen);

/** eddy__redact() in place in a NUL-terminated buffer of @p size bytes (truncating). */
void eddy__redact_buf(const eddy_logger_t *lg, char *buf, size_t size);

#endif
