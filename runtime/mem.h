/* mem.h: allocation that never returns NULL: out of memory stops the process. */
#ifndef EDDY_MEM_H
#define EDDY_MEM_H

#include <stddef.h>

/** realloc() of at least one byte; on failure prints a line and aborts. */
void *eddy__xrealloc(void *p, size_t n);

#endif
