/* registry.h: the processors built into eddy. */
#ifndef EDDY_REGISTRY_H
#define EDDY_REGISTRY_H

#include "eddy.h"

extern const eddy_processor_t eddy_like_counter;
extern const eddy_processor_t eddy_window_features;
extern const eddy_processor_t eddy_cdc_fanout;
extern const eddy_processor_t eddy_ips_samples;

/** NULL-terminated list of every built-in processor. */
extern const eddy_processor_t *const eddy_processors[];

/** @returns the processor called @p name, or NULL. */
const eddy_processor_t *eddy_processor_find(const char *name);

#endif
