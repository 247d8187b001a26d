/* The StatePool: a fixed set of opaque resources, leased under one mutex and one condition.
 * The slot table (one entry per resource) comes from the pool's allocator, as the seed's pool
 * holds its resource array; the struct itself is the port's own. */
#include <stdlib.h>

#include "port.h"

typedef struct slot {
    void *resource;
    bool leased;
} slot;

struct refimpl_pool {
    const refimpl_allocator *alloc;
    refimpl_destroy_fn destroy;
    void *ctx;
    pthread_mutex_t mutex;
    pthread_cond_t released;
    slot *slots;
    size_t capacity, available, waiters;
    bool closed;
};

/* Destroy the first `made` resources and free the slot table. */
static void destroy_slots(refimpl_pool *p, size_t made)
{
    for (size_t i = 0; i < made; i++)
        p->destroy(p->ctx, p->slots[i].resource);
    p->alloc->free(p->alloc->ctx, p->slots, p->capacity * sizeof *p->slots);
    p->slots = NULL;
}

refimpl_code refimpl_pool_new(const refimpl_allocator *alloc, size_t capacity,
                              refimpl_create_fn create, refimpl_destroy_fn destroy, void *ctx,
                              refimpl_pool **out)
{
    if (capacity == 0)
        return REFIMPL_INVALID_ARGUMENT;
    refimpl_pool *p = calloc(1, sizeof *p);
    if (p == NULL)
        return REFIMPL_OUT_OF_MEMORY;
    *p = (refimpl_pool){.alloc = alloc, .destroy = destroy, .ctx = ctx, .capacity = capacity};
    p->slots = alloc->alloc(alloc->ctx, capacity * sizeof *p->slots);
    if (p->slots == NULL) {
        free(p);
        return REFIMPL_OUT_OF_MEMORY;
    }
    for (size_t i = 0; i < capacity; i++) {
        void *resource = NULL;
        refimpl_code code = create(ctx, alloc, &resource);
        if (code == REFIMPL_OK && resource == NULL)
            code = REFIMPL_INVALID_ARGUMENT;
        if (code != REFIMPL_OK) {
            destroy_slots(p, i);
            free(p);
            return code;
        }
        p->slots[i] = (slot){.resource = resource};
    }
    pthread_mutex_init(&p->mutex, NULL);
    port_cond_init(&p->released);
    p->available = capacity;
    *out = p;
    return REFIMPL_OK;
}

/* Lease a free slot's resource; the caller holds the mutex and knows one is free. */
static void *lease(refimpl_pool *p)
{
    for (size_t i = 0;; i++) {
        if (!p->slots[i].leased) {
            p->slots[i].leased = true;
            p->available--;
            return p->slots[i].resource;
        }
    }
}

refimpl_code refimpl_pool_acquire_timeout(refimpl_pool *p, int64_t timeout_ms, void **resource)
{
    refimpl_code code = REFIMPL_OK;
    pthread_mutex_lock(&p->mutex);
    if (!p->closed && p->available == 0 && timeout_ms != 0) {
        port_deadline deadline = port_deadline_in(timeout_ms);
        p->waiters++;
        while (!p->closed && p->available == 0 && port_wait(&p->released, &p->mutex, &deadline))
            ;
        p->waiters--;
    }
    if (p->closed)
        code = REFIMPL_SHUT_DOWN;
    else if (p->available == 0)
        code = REFIMPL_STATE_POOL_EXHAUSTED;
    else
        *resource = lease(p);
    pthread_mutex_unlock(&p->mutex);
    return code;
}

refimpl_code refimpl_pool_acquire(refimpl_pool *p, void **resource)
{
    return refimpl_pool_acquire_timeout(p, REFIMPL_FOREVER, resource);
}

refimpl_code refimpl_pool_try_acquire(refimpl_pool *p, void **resource)
{
    refimpl_code code = REFIMPL_OK;
    pthread_mutex_lock(&p->mutex);
    if (p->closed)
        code = REFIMPL_SHUT_DOWN;
    else
        *resource = p->available > 0 ? lease(p) : NULL;
    pthread_mutex_unlock(&p->mutex);
    return code;
}

refimpl_code refimpl_pool_release(refimpl_pool *p, void *resource)
{
    refimpl_code code = REFIMPL_INVALID_RELEASE;
    pthread_mutex_lock(&p->mutex);
    if (p->closed) {
        code = REFIMPL_SHUT_DOWN;
    } else {
        for (size_t i = 0; i < p->capacity; i++) {
            if (p->slots[i].resource == resource && p->slots[i].leased) {
                p->slots[i].leased = false;
                p->available++;
                pthread_cond_signal(&p->released);
                code = REFIMPL_OK;
                break;
            }
        }
    }
    pthread_mutex_unlock(&p->mutex);
    return code;
}

size_t refimpl_pool_available(refimpl_pool *p)
{
    pthread_mutex_lock(&p->mutex);
    size_t available = p->available;
    pthread_mutex_unlock(&p->mutex);
    return available;
}

size_t refimpl_pool_waiters(refimpl_pool *p)
{
    pthread_mutex_lock(&p->mutex);
    size_t waiters = p->waiters;
    pthread_mutex_unlock(&p->mutex);
    return waiters;
}

refimpl_code refimpl_pool_deinit(refimpl_pool *p)
{
    pthread_mutex_lock(&p->mutex);
    if (p->closed) {
        pthread_mutex_unlock(&p->mutex);
        return REFIMPL_OK;
    }
    if (p->available < p->capacity) {
        pthread_mutex_unlock(&p->mutex);
        return REFIMPL_LEASES_OUTSTANDING;
    }
    p->closed = true;
    p->available = 0;
    pthread_cond_broadcast(&p->released);
    pthread_mutex_unlock(&p->mutex);
    destroy_slots(p, p->capacity);
    return REFIMPL_OK;
}

void refimpl_pool_free(refimpl_pool *p)
{
    pthread_cond_destroy(&p->released);
    pthread_mutex_destroy(&p->mutex);
    free(p);
}
