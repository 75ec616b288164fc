/* tmpdirs.h: the unit tests' temporary state dirs, removed by a teardown if a test fails. */
#ifndef EDDY_TEST_TMPDIRS_H
#define EDDY_TEST_TMPDIRS_H

/* Include after <cmocka.h>. Every dir is made with mkdtemp("/tmp/eddy-...XXXXXX"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char live_dirs[4][64];

/* Registers (add=1) or forgets (add=0) a dir that is alive. */
static void live_dir(const char *dir, int add)
{
        for (int i = 0; i < 4; i++)
                if (add ? !live_dirs[i][0] : !strcmp(live_dirs[i], dir)) {
                        if (add)
                                snprintf(live_dirs[i], sizeof(live_dirs[i]), "%s", dir);
                        else
                                live_dirs[i][0] = '\0';
                        return;
                }
        assert_false(add);
}

static void rm_rf(const char *dir)
{
        char cmd[128];
        assert_true(strncmp(dir, "/tmp/eddy-", 10) == 0);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        assert_int_equal(system(cmd), 0);
}

/* A cmocka teardown: removes the dirs a failed test left. */
static int remove_live_dirs(void **state)
{
        (void)state;
        for (int i = 0; i < 4; i++)
                if (live_dirs[i][0]) {
                        rm_rf(live_dirs[i]);
                        live_dirs[i][0] = '\0';
                }
        return 0;
}

#endif
