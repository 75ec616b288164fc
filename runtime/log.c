/* log.c: log lines on stderr, logfmt or JSON: time, level, facility, job, position, message. */
#include "log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const char *level_names[] = {"emerg",   "alert",  "crit", "err",
                                    "warning", "notice", "info", "debug"};

static const char *const context_names[] = {
#define EDDY__CTX_NAME(id, name) name,
    EDDY_LOG_CONTEXTS_MAP(EDDY__CTX_NAME)
#undef EDDY__CTX_NAME
};
#define NCONTEXTS (sizeof(context_names) / sizeof(context_names[0]))

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

int eddy__log_debug_enable(eddy_logger_t *lg, const char *name)
{
        if (!strcmp(name, "all")) {
                lg->debug = ~0u;
                lg->debug_procs = 1;
                return 0;
        }
        for (size_t i = 0; i < NCONTEXTS; i++)
                if (!strcmp(name, context_names[i])) {
                        lg->debug |= 1u << i;
                        if (!strcmp(name, "proc"))
                                lg->debug_procs = 1;
                        return 0;
                }
        return -1;
}

const char *eddy__log_contexts(void)
{
        return "all"
#define EDDY__CTX_LIST(id, name) "," name
            EDDY_LOG_CONTEXTS_MAP(EDDY__CTX_LIST)
#undef EDDY__CTX_LIST
                ;
}

/* Whether a line of @p level from facility @p fac is printed. */
static int wanted(const eddy_logger_t *lg, int level, const char *fac)
{
        if (!lg || level <= lg->level)
                return 1;
        if (level != LOG_DEBUG || !lg->debug)
                return 0;
        for (size_t i = 0; i < NCONTEXTS; i++)
                if (!strcasecmp(fac, context_names[i]))
                        return !!(lg->debug & (1u << i));
        return lg->debug_procs; /* a processor's own facility */
}

void eddy__log_secret(eddy_logger_t *lg, const char *s, size_t len)
{
        if (!s || !len)
                return;
        for (size_t i = 0; i < lg->nsecrets; i++)
                if (strlen(lg->secrets[i]) == len && !memcmp(lg->secrets[i], s, len))
                        return;
        char **v = realloc(lg->secrets, (lg->nsecrets + 1) * sizeof(*v));
        if (!v)
                abort();
        lg->secrets = v;
        lg->secrets[lg->nsecrets++] = strndup(s, len);
}

void eddy__log_free(eddy_logger_t *lg)
{
        for (size_t i = 0; i < lg->nsecrets; i++)
                free(lg->secrets[i]);
        free(lg->secrets);
        lg->secrets = NULL;
        lg->nsecrets = 0;
}

char *eddy__redact(const eddy_logger_t *lg, const char *s, size_t len, size_t *outlen)
{
        static const char mark[] = "[redacted]";
        if (!lg || !lg->nsecrets)
                return NULL;
        char *out = NULL;
        size_t olen = 0, ocap = 0, i = 0, copied = 0;
        while (i < len) {
                size_t hit = 0; /* the longest: a secret may begin with another */
                for (size_t k = 0; k < lg->nsecrets; k++) {
                        size_t sl = strlen(lg->secrets[k]);
                        if (sl > hit && sl <= len - i && s[i] == lg->secrets[k][0] &&
                            !memcmp(s + i, lg->secrets[k], sl))
                                hit = sl;
                }
                if (!hit) {
                        i++;
                        continue;
                }
                size_t need = olen + (i - copied) + sizeof(mark) + (len - i);
                if (need > ocap) {
                        ocap = need * 2;
                        out = realloc(out, ocap);
                        if (!out)
                                abort();
                }
                memcpy(out + olen, s + copied, i - copied);
                olen += i - copied;
                memcpy(out + olen, mark, sizeof(mark) - 1);
                olen += sizeof(mark) - 1;
                i += hit;
                copied = i;
        }
        if (!out)
                return NULL;
        memcpy(out + olen, s + copied, len - copied);
        olen += len - copied;
        out[olen] = '\0';
        *outlen = olen;
        return out;
}

void eddy__redact_buf(const eddy_logger_t *lg, char *buf, size_t size)
{
        size_t n;
        char *r = eddy__redact(lg, buf, strlen(buf), &n);
        if (r) {
                snprintf(buf, size, "%s", r);
                free(r);
        }
}

/* Appends @p s to @p out (of @p size, at *j): JSON string content, or a logfmt quoted value. */
static void put_escaped(char *out, size_t size, size_t *j, const char *s, int json)
{
        for (size_t i = 0; s[i] && *j + 8 < size; i++) {
                unsigned char c = (unsigned char)s[i];
                if (c == '"' || c == '\\') {
                        out[(*j)++] = '\\';
                        out[(*j)++] = (char)c;
                } else if (c < 0x20) {
                        if (json)
                                *j += (size_t)snprintf(out + *j, size - *j, "\\u%04x", c);
                        else
                                out[(*j)++] = ' ';
                } else {
                        out[(*j)++] = (char)c;
                }
        }
        out[*j] = '\0';
}

static void put_raw(char *out, size_t size, size_t *j, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void put_raw(char *out, size_t size, size_t *j, const char *fmt, ...)
{
        if (*j >= size)
                return;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(out + *j, size - *j, fmt, ap);
        va_end(ap);
        if (n > 0)
                *j = *j + (size_t)n < size ? *j + (size_t)n : size - 1;
}

/* A logfmt value: bare if it needs no quotes. */
static void put_lf_value(char *out, size_t size, size_t *j, const char *s)
{
        int bare = *s != '\0';
        for (const char *p = s; *p && bare; p++)
                if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || (unsigned char)*p >= 0x7f)
                        bare = 0;
        if (bare) {
                put_raw(out, size, j, "%s", s);
                return;
        }
        put_raw(out, size, j, "\"");
        put_escaped(out, size, j, s, 0);
        put_raw(out, size, j, "\"");
}

static void vlog_at(const eddy_logger_t *lg, int level, const char *fac, const char *topic,
                    int32_t partition, int64_t offset, const char *fmt, va_list ap)
{
        if (!wanted(lg, level, fac))
                return;
        char msg[2048];
        vsnprintf(msg, sizeof(msg), fmt, ap);
        eddy__redact_buf(lg, msg, sizeof(msg));
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        char tbuf[32];
        strftime(tbuf, sizeof(tbuf), "%Y-%m-%dT%H:%M:%S", &tm);
        const char *job = lg && lg->job[0] ? lg->job : "eddy";
        int json = lg && lg->json;
        char line[4800];
        size_t j = 0;
        if (json) {
                put_raw(line, sizeof(line), &j, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"fac\":\"",
                        tbuf, ts.tv_nsec / 1000000, level_names[level & 7]);
                put_escaped(line, sizeof(line), &j, fac, 1);
                put_raw(line, sizeof(line), &j, "\",\"job\":\"");
                put_escaped(line, sizeof(line), &j, job, 1);
                put_raw(line, sizeof(line), &j, "\"");
                if (topic) {
                        put_raw(line, sizeof(line), &j, ",\"topic\":\"");
                        put_escaped(line, sizeof(line), &j, topic, 1);
                        put_raw(line, sizeof(line), &j, "\"");
                }
                if (partition >= 0)
                        put_raw(line, sizeof(line), &j, ",\"partition\":%" PRId32, partition);
                if (offset >= 0)
                        put_raw(line, sizeof(line), &j, ",\"offset\":%" PRId64, offset);
                put_raw(line, sizeof(line), &j, ",\"msg\":\"");
                put_escaped(line, sizeof(line), &j, msg, 1);
                put_raw(line, sizeof(line), &j, "\"}\n");
        } else {
                put_raw(line, sizeof(line), &j, "ts=%s.%03ldZ level=%s fac=", tbuf,
                        ts.tv_nsec / 1000000, level_names[level & 7]);
                put_lf_value(line, sizeof(line), &j, fac);
                put_raw(line, sizeof(line), &j, " job=");
                put_lf_value(line, sizeof(line), &j, job);
                if (topic) {
                        put_raw(line, sizeof(line), &j, " topic=");
                        put_lf_value(line, sizeof(line), &j, topic);
                }
                if (partition >= 0)
                        put_raw(line, sizeof(line), &j, " partition=%" PRId32, partition);
                if (offset >= 0)
                        put_raw(line, sizeof(line), &j, " offset=%" PRId64, offset);
                put_raw(line, sizeof(line), &j, " msg=\"");
                put_escaped(line, sizeof(line), &j, msg, 0);
                put_raw(line, sizeof(line), &j, "\"\n");
        }
        if (j && line[j - 1] != '\n') { /* truncated: still one line */
                line[j - 1] = '\n';
        }
        fwrite(line, 1, j, stderr);
}

void eddy__vlog(const eddy_logger_t *lg, int level, const char *fac, const char *fmt, va_list ap)
{
        vlog_at(lg, level, fac, NULL, -1, -1, fmt, ap);
}

void eddy__log(const eddy_logger_t *lg, int level, const char *fac, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        vlog_at(lg, level, fac, NULL, -1, -1, fmt, ap);
        va_end(ap);
}

void eddy__log_at(const eddy_logger_t *lg, int level, const char *fac, const char *topic,
                  int32_t partition, int64_t offset, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        vlog_at(lg, level, fac, topic, partition, offset, fmt, ap);
        va_end(ap);
}
