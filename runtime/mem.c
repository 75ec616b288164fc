/* mem.c: allocation that never returns NULL: out of memory stops the process. */
#include "mem.h"

#include <stdio.h>
#include <stdlib.h>

void *eddy__xrealloc(void *p, size_t n)
{
        void *q = realloc(p, n ? n : 1);
        if (!q) {
                fputs("eddy: out of memory\n", stderr);
                abort();
        }
        return q;
}
