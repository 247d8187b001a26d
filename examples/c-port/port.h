/* What the example port's components share: deadlines over CLOCK_MONOTONIC and the log. */
#ifndef PORT_H
#define PORT_H

#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#include "refimpl_port.h"

/* When a blocking call gives up: never, or at a point of CLOCK_MONOTONIC. */
typedef struct port_deadline {
    bool forever;
    struct timespec at;
} port_deadline;

port_deadline port_deadline_in(int64_t timeout_ms);

/* A condition variable whose timed waits use CLOCK_MONOTONIC (immune to clock changes). */
int port_cond_init(pthread_cond_t *cond);

/* One wait on cond; false once the deadline has passed. Callers loop over their predicate. */
bool port_wait(pthread_cond_t *cond, pthread_mutex_t *mutex, const port_deadline *deadline);

/* A record for the harness's log sink, printf-style; dropped when no sink is installed. */
void port_log(const char *level, const char *format, ...) __attribute__((format(printf, 2, 3)));

#endif
