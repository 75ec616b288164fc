/* runtime.h: what the command line starts: a job, a reconciliation, a look inside state. */
#ifndef EDDY_RUNTIME_H
#define EDDY_RUNTIME_H

#include "eddy.h"

#include <signal.h>

typedef struct eddy_job_args_s {
        const eddy_processor_t *proc;
        const char *conf_path; /* NULL: embedded defaults */
        char **overrides;      /* -X key=value */
        int noverrides;
        const char *from;  /* bounded replay start: earliest | <epoch ms> | topic:part:off,... */
        const char *until; /* bounded replay end: end | <epoch ms> */
        int progress;      /* print a progress line on stderr */
} eddy_job_args_t;

/** The stop flag that SIGTERM/SIGINT set: the one piece of global mutable state. */
extern volatile sig_atomic_t eddy_stop;

/** @returns the process exit code: 0 clean stop, 1 runtime error, 2 usage/config error. */
int eddy_runtime_run(const eddy_job_args_t *a);
int eddy_runtime_reconcile(const eddy_job_args_t *a);
int eddy_runtime_state_cmd(const eddy_job_args_t *a, const char *what);

#endif
