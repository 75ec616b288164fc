/* log.h: one line per event of interest, logfmt, level checked before formatting. */
#ifndef EDDY_LOG_H
#define EDDY_LOG_H

#include <stdarg.h>
#include <syslog.h>

typedef struct eddy_logger_s {
        int level;     /* syslog level: messages above it are dropped */
        char job[128]; /* the job name, put on every line */
} eddy_logger_t;

void eddy__vlog(const eddy_logger_t *lg, int level, const char *fac, const char *fmt, va_list ap);
void eddy__log(const eddy_logger_t *lg, int level, const char *fac, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/** @returns the syslog level named @p name ("debug", "info", "notice", "warning", "err"), -1 if
 * none. */
int eddy_log_level(const char *name);

#endif
