/* log.c: logfmt lines on stderr: time, level, facility, job, message. */
#include "log.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *level_names[] = {"emerg",   "alert",  "crit", "err",
                                    "warning", "notice", "info", "debug"};

int eddy_log_level(const char *name)
{
        for (int i = 0; i < 8; i++)
                if (strcmp(name, level_names[i]) == 0)
                        return i;
        if (strcmp(name, "error") == 0)
                return LOG_ERR;
        if (strcmp(name, "warn") == 0)
                return LOG_WARNING;
        return -1;
}

void eddy__vlog(const eddy_logger_t *lg, int level, const char *fac, const char *fmt, va_list ap)
{
        if (lg && level > lg->level)
                return;
        char msg[2048];
        vsnprintf(msg, sizeof(msg), fmt, ap);
        /* logfmt: quote the message, escaping quotes and backslashes */
        char q[4200];
        size_t j = 0;
        for (size_t i = 0; msg[i] && j + 3 < sizeof(q); i++) {
                char c = msg[i];
                if (c == '"' || c == '\\')
                        q[j++] = '\\';
                else if (c == '\n')
                        c = ' ';
                q[j++] = c;
        }
        q[j] = '\0';
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        char tbuf[32];
        strftime(tbuf, sizeof(tbuf), "%Y-%m-%dT%H:%M:%S", &tm);
        fprintf(stderr, "ts=%s.%03ldZ level=%s fac=%s job=%s msg=\"%s\"\n", tbuf,
                ts.tv_nsec / 1000000, level_names[level & 7], fac,
                lg && lg->job[0] ? lg->job : "eddy", q);
}

void eddy__log(const eddy_logger_t *lg, int level, const char *fac, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        eddy__vlog(lg, level, fac, fmt, ap);
        va_end(ap);
}
