/* registry.c: the processors built into eddy. */
#include "registry.h"

#include <string.h>

const eddy_processor_t *const eddy_processors[] = {&eddy_like_counter, &eddy_window_features,
                                                   &eddy_cdc_fanout, &eddy_ips_samples, NULL};

const eddy_processor_t *eddy_processor_find(const char *name)
{
        for (int i = 0; eddy_processors[i]; i++)
                if (!strcmp(eddy_processors[i]->name, name))
                        return eddy_processors[i];
        return NULL;
}
