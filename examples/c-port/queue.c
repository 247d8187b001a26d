/* The ActionQueue: a bounded ring of actions under one mutex and two conditions, in the manner
 * of CPython's queue.Queue. Messages belong to the queue's allocator; the ring and the struct
 * are the port's own (malloc), so the ledger shows exactly the queued messages. */
#include <stdlib.h>

#include "port.h"

struct refimpl_queue {
    const refimpl_allocator *alloc;
    pthread_mutex_t mutex;
    pthread_cond_t not_empty, not_full;
    refimpl_action *ring;
    size_t capacity, head, len;
    bool closed;
    refimpl_queue_counters counters;
};

refimpl_code refimpl_queue_new(const refimpl_allocator *alloc, size_t capacity,
                               refimpl_queue **out)
{
    if (capacity == 0)
        return REFIMPL_INVALID_ARGUMENT;
    refimpl_queue *q = calloc(1, sizeof *q);
    if (q == NULL)
        return REFIMPL_OUT_OF_MEMORY;
    q->ring = calloc(capacity, sizeof *q->ring);
    if (q->ring == NULL || pthread_mutex_init(&q->mutex, NULL) != 0) {
        free(q->ring);
        free(q);
        return REFIMPL_OUT_OF_MEMORY;
    }
    port_cond_init(&q->not_empty);
    port_cond_init(&q->not_full);
    q->alloc = alloc;
    q->capacity = capacity;
    *out = q;
    return REFIMPL_OK;
}

refimpl_code refimpl_queue_push_timeout(refimpl_queue *q, refimpl_action action,
                                        int64_t timeout_ms)
{
    if ((unsigned)action.kind > (unsigned)REFIMPL_CVAR_NATIVE)
        return REFIMPL_INVALID_ARGUMENT;
    if (!q->alloc->owns(q->alloc->ctx, action.message, action.len))
        return REFIMPL_WRONG_ALLOCATOR;
    refimpl_code code = REFIMPL_OK;
    pthread_mutex_lock(&q->mutex);
    if (!q->closed && q->len == q->capacity && timeout_ms != 0) {
        port_deadline deadline = port_deadline_in(timeout_ms);
        q->counters.push_waiters++;
        while (!q->closed && q->len == q->capacity && port_wait(&q->not_full, &q->mutex, &deadline))
            ;
        q->counters.push_waiters--;
    }
    if (q->closed) {
        code = REFIMPL_SHUT_DOWN;
    } else if (q->len == q->capacity) {
        q->counters.full_count++;
        code = REFIMPL_QUEUE_FULL;
    } else {
        q->ring[(q->head + q->len) % q->capacity] = action;
        if (++q->len > q->counters.high_water)
            q->counters.high_water = q->len;
        pthread_cond_signal(&q->not_empty);
    }
    pthread_mutex_unlock(&q->mutex);
    return code;
}

refimpl_code refimpl_queue_push(refimpl_queue *q, refimpl_action action)
{
    return refimpl_queue_push_timeout(q, action, 0);
}

refimpl_code refimpl_queue_pop_timeout(refimpl_queue *q, int64_t timeout_ms,
                                       refimpl_action *out, bool *popped)
{
    refimpl_code code = REFIMPL_OK;
    pthread_mutex_lock(&q->mutex);
    if (!q->closed && q->len == 0 && timeout_ms != 0) {
        port_deadline deadline = port_deadline_in(timeout_ms);
        q->counters.pop_waiters++;
        while (!q->closed && q->len == 0 && port_wait(&q->not_empty, &q->mutex, &deadline))
            ;
        q->counters.pop_waiters--;
    }
    if (q->closed) {
        code = REFIMPL_SHUT_DOWN;
    } else if (q->len == 0) {
        *popped = false;
    } else {
        *out = q->ring[q->head];
        q->head = (q->head + 1) % q->capacity;
        q->len--;
        *popped = true;
        pthread_cond_signal(&q->not_full);
    }
    pthread_mutex_unlock(&q->mutex);
    return code;
}

refimpl_code refimpl_queue_try_pop(refimpl_queue *q, refimpl_action *out, bool *popped)
{
    return refimpl_queue_pop_timeout(q, 0, out, popped);
}

refimpl_code refimpl_queue_pop(refimpl_queue *q, refimpl_action *out)
{
    bool popped;
    return refimpl_queue_pop_timeout(q, REFIMPL_FOREVER, out, &popped);
}

size_t refimpl_queue_len(refimpl_queue *q)
{
    pthread_mutex_lock(&q->mutex);
    size_t len = q->len;
    pthread_mutex_unlock(&q->mutex);
    return len;
}

void refimpl_queue_counters_get(refimpl_queue *q, refimpl_queue_counters *out)
{
    pthread_mutex_lock(&q->mutex);
    *out = q->counters;
    pthread_mutex_unlock(&q->mutex);
}

refimpl_code refimpl_queue_deinit(refimpl_queue *q)
{
    pthread_mutex_lock(&q->mutex);
    bool closing = !q->closed;
    size_t queued = q->len;
    q->closed = true;
    pthread_cond_broadcast(&q->not_empty);
    pthread_cond_broadcast(&q->not_full);
    pthread_mutex_unlock(&q->mutex);
    if (closing && queued > 0)
        port_log("warning", "ActionQueue deinit with %zu queued action(s); their messages stay live",
                 queued);
    return REFIMPL_OK;
}

void refimpl_queue_free(refimpl_queue *q)
{
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
    pthread_mutex_destroy(&q->mutex);
    free(q->ring);
    free(q);
}
