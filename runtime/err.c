/* err.c: eddy_strerror(), from the same list as the error enum. */
#include "eddy.h"

const char *eddy_strerror(int err)
{
        static const char *const strs[] = {
#define EDDY__ERR_STR(name, str) str,
            EDDY_ERRNO_MAP(EDDY__ERR_STR)
#undef EDDY__ERR_STR
        };
        if (err < 0)
                err = -err;
        if ((size_t)err >= sizeof(strs) / sizeof(strs[0]))
                return "unknown error";
        return strs[err];
}
