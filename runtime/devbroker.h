/* devbroker.h: `eddy devbroker`, a local Kafka-protocol broker (librdkafka's mock cluster). */
#ifndef EDDY_DEVBROKER_H
#define EDDY_DEVBROKER_H

/**
 * @brief Run `eddy devbroker [--port P] [--topics name:partitions,...] [--bootstrap-file F]
 *        [--partitions N] [--help]` until SIGTERM or SIGINT.
 *
 * Prints the bootstrap address it offers as the first line on stdout, logs to stderr.
 *
 * @returns the process exit code: 0 after a clean stop or --help, 1 on a runtime error
 *          (such as the port being in use), 2 on a usage error.
 *
 * @remark argv[0] is "devbroker". Installs SIGTERM and SIGINT handlers and blocks those
 *         signals in the calling thread while it runs (and so in the threads it starts);
 *         handlers and mask are restored before it returns. Not reentrant: one call per
 *         process at a time.
 */
int eddy_devbroker_main(int argc, char **argv);

#endif /* EDDY_DEVBROKER_H */
