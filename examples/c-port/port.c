/* The port's identity, its declared features and the helpers its components share. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "port.h"

static const char *const features[] = {
    "allocator.fail_at", "queue", "queue.timeout", "queue.counters", "pool",
    "pool.timeout", "pool.counters", "pool.fail_create", "messages", NULL,
};

const char *const *refimpl_port_features(void) { return features; }

const char *refimpl_port_name(void) { return "c-port"; }

static refimpl_log_fn log_sink;
static void *log_ctx;

void refimpl_port_set_log(refimpl_log_fn sink, void *ctx)
{
    log_sink = sink;
    log_ctx = ctx;
}

void port_log(const char *level, const char *format, ...)
{
    char text[256];
    va_list args;
    va_start(args, format);
    int n = vsnprintf(text, sizeof text, format, args);
    va_end(args);
    if (log_sink != NULL && n >= 0)
        log_sink(log_ctx, level, (const uint8_t *)text, (size_t)n < sizeof text ? (size_t)n : sizeof text - 1);
}

port_deadline port_deadline_in(int64_t timeout_ms)
{
    port_deadline d = {.forever = timeout_ms < 0};
    if (!d.forever) {
        clock_gettime(CLOCK_MONOTONIC, &d.at);
        d.at.tv_sec += timeout_ms / 1000;
        d.at.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (d.at.tv_nsec >= 1000000000L) {
            d.at.tv_sec += 1;
            d.at.tv_nsec -= 1000000000L;
        }
    }
    return d;
}

int port_cond_init(pthread_cond_t *cond)
{
    pthread_condattr_t attr;
    int rc = pthread_condattr_init(&attr);
    if (rc == 0)
        rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
    return rc;
}

bool port_wait(pthread_cond_t *cond, pthread_mutex_t *mutex, const port_deadline *deadline)
{
    if (deadline->forever)
        return pthread_cond_wait(cond, mutex) == 0;
    return pthread_cond_timedwait(cond, mutex, &deadline->at) != ETIMEDOUT;
}
