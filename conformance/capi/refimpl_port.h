/*
 * refimpl_port.h: the C ABI a port exports so that the conformance suite can drive it.
 *
 * A port (C, C++, Zig, Rust, ...) builds a shared library exporting the functions below and
 * runs the suite through the generic driver:
 *
 *     python -m refimpl.driver.capi --lib ./libport.so
 *
 * The driver speaks the whole driver protocol (spec/driver-protocol.md: logical threads,
 * pending answers, await, handles, logs, the ledger) and calls these functions on the logical
 * thread each request names (DRV-CAPI-THREADS). A port exports only the groups it has and
 * says which in refimpl_port_features() (DRV-CAPI-FEATURES); cases of the other features are
 * reported "not applicable".
 *
 * Conventions
 *   - Every function that can fail returns a refimpl_code: REFIMPL_OK or one code of the
 *     spec's error table (spec/error-handling.md, ERR-CODES), never anything else
 *     (DRV-CAPI-CODES). On failure the out-parameters are left untouched.
 *   - Byte strings are (pointer, length) pairs: they may hold NUL and any byte (LH-BYTES).
 *   - timeout_ms: 0 means do not wait, REFIMPL_FOREVER means wait without limit, n > 0 waits
 *     at most n milliseconds (AQ-PUSH-TIMEOUT, AQ-POP-TIMEOUT, SP-ACQUIRE-TIMEOUT).
 *   - Every allocation the seed's ownership table names (queue messages, the pool's slot
 *     table, encoded messages) goes through the refimpl_allocator the harness hands in
 *     (DRV-CAPI-ALLOCATOR); the port's private bookkeeping (its structs, ring buffers,
 *     mutexes) uses whatever the port likes.
 *   - Any thread may call any function of the queue and pool groups (THR-QUEUE-ANY-THREAD,
 *     THR-POOL-ANY-THREAD); blocking calls block only their calling thread.
 */
#ifndef REFIMPL_PORT_H
#define REFIMPL_PORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define REFIMPL_FOREVER ((int64_t)-1)

/* ---- error codes (ERR-CODES, DRV-CAPI-CODES) -------------------------------------------
 * Mirrors refimpl.errors.ErrorCode, in its order; the driver maps each value to that code.
 */
typedef enum refimpl_code {
    REFIMPL_OK = 0,
    REFIMPL_OUT_OF_MEMORY = 1,        /* an allocation failed (ERR-OOM, MEM-FAIL-AT) */
    REFIMPL_QUEUE_FULL = 2,           /* no room in the queue (AQ-PUSH-FULL) */
    REFIMPL_LUA_RUNTIME_ERROR = 3,    /* a Lua failure with no result to carry it */
    REFIMPL_STATE_POOL_EXHAUSTED = 4, /* acquire timed out (SP-ACQUIRE-TIMEOUT) */
    REFIMPL_THREAD_AFFINITY = 5,      /* a main-thread-only call from elsewhere */
    REFIMPL_INVALID_RELEASE = 6,      /* release of a resource not leased here */
    REFIMPL_DOUBLE_FREE = 7,          /* a buffer freed twice */
    REFIMPL_USE_AFTER_FREE = 8,       /* a freed buffer used */
    REFIMPL_WRONG_ALLOCATOR = 9,      /* a buffer of another allocator (AQ-PUSH-MESSAGE) */
    REFIMPL_MALFORMED_MESSAGE = 10,   /* a message that cannot be framed or parsed */
    REFIMPL_SHUT_DOWN = 11,           /* a call after deinit (AQ-AFTER-DEINIT) */
    REFIMPL_LEASES_OUTSTANDING = 12,  /* pool deinit with leases (SP-DEINIT-LEASED) */
    REFIMPL_UNKNOWN_CVAR = 13,        /* no console variable of that name */
    REFIMPL_INVALID_VALUE = 14,       /* a value that does not parse or is out of range */
    REFIMPL_INVALID_ARGUMENT = 15     /* an argument of the wrong shape (AQ-INIT-CAPACITY) */
} refimpl_code;

typedef struct refimpl_bytes {
    const uint8_t *ptr;
    size_t len;
} refimpl_bytes;

/* ---- the allocator vtable (core; DRV-CAPI-ALLOCATOR) -----------------------------------
 * The harness owns every refimpl_allocator and keeps it alive for the whole session. Each is
 * backed by a refimpl.allocator.TrackingAllocator, so the suite's ledger sees every
 * allocation (MEM-LEDGER-LIVE), allocator.fail_at makes alloc return NULL (MEM-FAIL-AT), and
 * a free of a pointer the allocator did not give, or gave and got back already, is caught
 * (MEM-LEDGER-WRONG-ALLOCATOR, MEM-LEDGER-DOUBLE-FREE): the C call during which it happened
 * answers that code.
 *
 *   alloc(ctx, len)      -> len bytes aligned like malloc, or NULL when the allocation fails.
 *                           len 0 is a real allocation with its own pointer, freed like any
 *                           other (MEM-ZERO-LENGTH, ruling D17).
 *   free(ctx, ptr, len)  -> returns ptr; len is the length it was allocated with.
 *   owns(ctx, ptr, len)  -> true when ptr is a live allocation of len bytes of this allocator.
 *                           A queue asks it before taking a message (AQ-PUSH-MESSAGE).
 *
 * Wrapping it in a port's own allocator interface (a few lines each):
 *   Zig:  a std.mem.Allocator whose ptr is the refimpl_allocator and whose vtable's alloc
 *         calls a.alloc(a.ctx, len) (alignment <= 16 needs nothing more), free calls
 *         a.free(a.ctx, buf.ptr, buf.len), resize/remap return false/null. Zig never calls
 *         alloc for zero bytes, so allocate a zero-length message with a.alloc directly or
 *         accept that "an empty message is delivered and nothing leaks" is what is observed.
 *   C++:  a std::pmr::memory_resource whose do_allocate(n, align) returns a.alloc(a.ctx, n)
 *         or throws std::bad_alloc on NULL, do_deallocate(p, n, align) calls
 *         a.free(a.ctx, p, n), and do_is_equal compares the refimpl_allocator pointers.
 *   Rust: a handle struct holding the *const refimpl_allocator (Send + Sync), with
 *         fn alloc(&self, len) -> Option<NonNull<u8>> and fn free(&self, ptr, len) calling
 *         through; a Vec-like Message type keeps (ptr, len, handle) and frees in Drop.
 */
typedef struct refimpl_allocator {
    void *ctx;
    void *(*alloc)(void *ctx, size_t len);
    void (*free)(void *ctx, void *ptr, size_t len);
    bool (*owns)(void *ctx, const void *ptr, size_t len);
} refimpl_allocator;

/* ---- the port itself (core; DRV-CAPI-FEATURES) ------------------------------------------
 * refimpl_port_features: a NULL-terminated array of the protocol-2 feature names the library
 * provides (spec/driver-protocol.md), e.g. {"queue", "queue.timeout", "pool", NULL}. The
 * driver's hello lists exactly these; the driver refuses a library that declares an unknown
 * feature or lacks a function of a feature it declares. "allocator.fail_at" declares that
 * every allocation of the ownership table goes through the vtable and that a NULL from it is
 * answered REFIMPL_OUT_OF_MEMORY with nothing leaked (ERR-OOM). "sandbox" (every Lua state
 * sandboxed as the SBX rules say) and "bindings.ecs" (the ecs Lua module) bring no functions:
 * scripts run through the engine group check them, so they need "engine".
 * refimpl_port_name: the implementation's name, for hello's "implementation".
 */
const char *const *refimpl_port_features(void);
const char *refimpl_port_name(void);

/* Optional (core): where the port's log records go (DRV-LOGS). The driver installs a sink
 * before any other call; level is one of "debug", "info", "warning", "error". */
typedef void (*refimpl_log_fn)(void *ctx, const char *level, const uint8_t *text, size_t len);
void refimpl_port_set_log(refimpl_log_fn sink, void *ctx);

/* ---- feature "queue": the ActionQueue (spec/action-queue.md) ----------------------------
 * A bounded FIFO of actions whose messages belong to the queue's allocator.
 */
typedef enum refimpl_action_kind {
    REFIMPL_SCRIPT_RESULT = 0,
    REFIMPL_CVAR_LUA = 1,
    REFIMPL_CVAR_NATIVE = 2
} refimpl_action_kind; /* closed: any other value is REFIMPL_INVALID_ARGUMENT (AQ-KIND-CLOSED) */

typedef struct refimpl_action {
    refimpl_action_kind kind;
    uint8_t *message; /* an allocation of len bytes of the queue's allocator */
    size_t len;
} refimpl_action;

typedef struct refimpl_queue refimpl_queue;

/* A queue of capacity >= 1 over `alloc` (AQ-INIT); capacity 0 is INVALID_ARGUMENT
 * (AQ-INIT-CAPACITY). */
refimpl_code refimpl_queue_new(const refimpl_allocator *alloc, size_t capacity,
                               refimpl_queue **out);
/* Append without waiting: QUEUE_FULL on a full queue, queue unchanged, message still the
 * caller's (AQ-PUSH-FULL, AQ-BOUNDED, MEM-PUSH-FAIL); WRONG_ALLOCATOR when the message is not
 * a live allocation of the queue's allocator (AQ-PUSH-MESSAGE); SHUT_DOWN after deinit. On OK
 * the queue owns the message until it is popped (MEM-QUEUE-MESSAGE). */
refimpl_code refimpl_queue_push(refimpl_queue *q, refimpl_action action);
/* The oldest action into *out and *popped = true, or *popped = false at once when empty
 * (AQ-TRY-POP-EMPTY, AQ-FIFO); the popped message is the caller's (AQ-POP-TRANSFERS). */
refimpl_code refimpl_queue_try_pop(refimpl_queue *q, refimpl_action *out, bool *popped);
/* As try_pop, waiting until an action arrives (AQ-POP-BLOCKS); a waiter woken by deinit
 * answers SHUT_DOWN (AQ-DEINIT-WAKES). */
refimpl_code refimpl_queue_pop(refimpl_queue *q, refimpl_action *out);
/* Actions pushed and not popped (AQ-LEN); valid after deinit. */
size_t refimpl_queue_len(refimpl_queue *q);
/* Close the queue and wake every waiter. Queued messages are NOT freed: they stay live in the
 * allocator's ledger (AQ-DEINIT-KEEPS-MESSAGES, ruling D2). Later calls answer SHUT_DOWN
 * (AQ-AFTER-DEINIT); a second deinit does nothing. */
refimpl_code refimpl_queue_deinit(refimpl_queue *q);
/* End of the handle's life: frees the port's own bookkeeping. The driver calls it once, after
 * deinit, when no thread is inside a call on q (DRV-EOF). */
void refimpl_queue_free(refimpl_queue *q);

/* feature "queue.timeout": push waits up to timeout_ms for room, then QUEUE_FULL
 * (AQ-PUSH-TIMEOUT, AQ-PUSH-WAIT); pop waits up to timeout_ms, then *popped = false
 * (AQ-POP-TIMEOUT). */
refimpl_code refimpl_queue_push_timeout(refimpl_queue *q, refimpl_action action,
                                        int64_t timeout_ms);
refimpl_code refimpl_queue_pop_timeout(refimpl_queue *q, int64_t timeout_ms,
                                       refimpl_action *out, bool *popped);

/* feature "queue.counters": threads blocked in pop and in push now (AQ-WAITERS), the largest
 * length reached and the number of QUEUE_FULL answers so far (AQ-COUNTERS). */
typedef struct refimpl_queue_counters {
    size_t pop_waiters;
    size_t push_waiters;
    size_t high_water;
    size_t full_count;
} refimpl_queue_counters;
void refimpl_queue_counters_get(refimpl_queue *q, refimpl_queue_counters *out);

/* ---- feature "pool": the StatePool over opaque resources (spec/state-pool.md) -----------
 * create(ctx, alloc, &resource) makes one resource (a non-NULL pointer the pool never
 * dereferences) or returns an error code; destroy(ctx, resource) ends one. The harness's
 * callbacks count calls and can fail on request ("pool.fail_create").
 */
typedef refimpl_code (*refimpl_create_fn)(void *ctx, const refimpl_allocator *alloc,
                                          void **resource);
typedef void (*refimpl_destroy_fn)(void *ctx, void *resource);
typedef struct refimpl_pool refimpl_pool;

/* capacity resources made at once (SP-INIT-CREATE) and a slot table allocated from alloc
 * while the pool lives (SP-INIT-SLOTS); capacity 0 is INVALID_ARGUMENT with nothing made
 * (SP-INIT-CAPACITY). When create or the slot table fails, every resource made is destroyed,
 * the slot table freed and that error returned (SP-INIT-FAIL). */
refimpl_code refimpl_pool_new(const refimpl_allocator *alloc, size_t capacity,
                              refimpl_create_fn create, refimpl_destroy_fn destroy, void *ctx,
                              refimpl_pool **out);
/* Lease a resource, waiting until one is released (SP-ACQUIRE-BLOCKS); a leased resource goes
 * to no other lease until released (SP-ACQUIRE-EXCLUSIVE); SHUT_DOWN after deinit. */
refimpl_code refimpl_pool_acquire(refimpl_pool *p, void **resource);
/* Lease one if free now, else *resource = NULL (SP-TRY-ACQUIRE). */
refimpl_code refimpl_pool_try_acquire(refimpl_pool *p, void **resource);
/* Return a lease and wake one waiter (SP-RELEASE); INVALID_RELEASE for a resource not leased
 * from p, foreign or released already, with nothing changed (SP-RELEASE-FOREIGN,
 * SP-RELEASE-TWICE); SHUT_DOWN after deinit (SP-AFTER-DEINIT). */
refimpl_code refimpl_pool_release(refimpl_pool *p, void *resource);
/* Resources free to lease now (SP-AVAILABLE); valid after deinit. */
size_t refimpl_pool_available(refimpl_pool *p);
/* Destroy every resource and free the slot table (SP-DEINIT-DESTROY); with leases out,
 * LEASES_OUTSTANDING and nothing changed (SP-DEINIT-LEASED); a second deinit does nothing. */
refimpl_code refimpl_pool_deinit(refimpl_pool *p);
/* End of the handle's life, as refimpl_queue_free. */
void refimpl_pool_free(refimpl_pool *p);

/* feature "pool.timeout": acquire waiting at most timeout_ms, then STATE_POOL_EXHAUSTED
 * (SP-ACQUIRE-TIMEOUT). */
refimpl_code refimpl_pool_acquire_timeout(refimpl_pool *p, int64_t timeout_ms, void **resource);
/* feature "pool.counters": threads blocked in acquire now (SP-WAITERS). */
size_t refimpl_pool_waiters(refimpl_pool *p);

/* ---- feature "messages": the wire formats (spec/message-formats.md) ---------------------
 * encode: handler NUL name NUL old NUL new into *out, allocated from alloc, which the caller
 * frees (MSG-CVARLUA-LAYOUT, MSG-CVARLUA-ENCODE); MALFORMED_MESSAGE when a field holds NUL
 * (MSG-CVARLUA-ENCODE-NUL); OUT_OF_MEMORY when alloc fails, nothing leaked.
 * parse: the four fields of a message with exactly three NULs, as views into it
 * (MSG-PARSE-CVARLUA, MSG-PARSE-ALL-FIELDS, MSG-CVARLUA-EMPTY-FIELDS); any other count is
 * MALFORMED_MESSAGE.
 * is_error_result: the payload starts with "ERROR:" (MSG-RESULT-IS-ERROR).
 */
refimpl_code refimpl_msg_encode_cvar_lua(const refimpl_allocator *alloc,
                                         const refimpl_bytes fields[4], refimpl_bytes *out);
refimpl_code refimpl_msg_parse_cvar_lua(const uint8_t *message, size_t len,
                                        refimpl_bytes fields[4]);
bool refimpl_msg_is_error_result(const uint8_t *payload, size_t len);

/* ---- feature "engine": one wired system (spec/engine.md, DRV-CAPI-ENGINE) ----------------
 * The thread that calls refimpl_engine_new is the engine's main thread (ENG-WIRING,
 * CMP-SYSTEM-CALLER-THREAD). Everything of the ownership table the engine allocates (script
 * copies, ScriptResult payloads, the pool's slot table, CVarLua messages) comes from
 * config->allocator, which the harness answers as the engine's allocator, so its ledger shows
 * what the engine holds (ENG-CLOSE-ZERO-LIVE) and allocator.fail_at reaches the engine.
 * refimpl_engine_queue and refimpl_engine_pool return the engine's own ActionQueue and
 * StatePool, which the driver serves through the "queue" and "pool" groups above: a library
 * that declares "engine" exports those groups' functions too, and
 * refimpl_pool_acquire_timeout, with which engine.execute leases a state waiting at most its
 * timeout (Pattern 4), whether or not it declares "pool.timeout". The engine owns them: the
 * driver never deinits or frees them, only the engine. A resource of the engine's pool is a Lua
 * state, the void *state of refimpl_lua_execute and refimpl_lua_call_handler.
 * Text (names, values, handler names) is UTF-8 in refimpl_bytes; bytes that are not UTF-8
 * are refused (CV-TEXT-UTF8): INVALID_VALUE for a value, INVALID_ARGUMENT for the rest.
 * Every output string is an allocation of the allocator passed in, the caller's to free.
 */
typedef enum refimpl_cvar_type {
    REFIMPL_CVAR_INT = 0,
    REFIMPL_CVAR_FLOAT = 1,
    REFIMPL_CVAR_BOOL = 2,
    REFIMPL_CVAR_STRING = 3
} refimpl_cvar_type;

typedef struct refimpl_cvar_spec {
    refimpl_bytes name;
    refimpl_cvar_type type;       /* the default's type (CV-REGISTER-TYPE) */
    refimpl_bytes default_text;   /* the canonical text of the default (CV-GET-CANONICAL) */
    bool has_min, has_max;
    double min, max;              /* inclusive bounds of a number (CV-SET-RANGE) */
    refimpl_bytes on_change_lua;  /* handler name, empty for none */
} refimpl_cvar_spec;

/* feature "engine.limits" (DRV-LIMITS): each 0 (host_libraries -1) keeps the port's default. */
typedef struct refimpl_limits {
    uint64_t max_memory;       /* bytes (SBX-MAX-MEMORY) */
    uint64_t max_instructions; /* per script or handler call (SBX-MAX-INSTRUCTIONS) */
    uint64_t max_host_bytes;   /* bytes one call hands to host functions (SBX-HOST-BYTES) */
    uint64_t max_log_bytes;    /* bytes one call writes to the log (SBX-LOG-BOUND) */
    int host_libraries;        /* 1 on, 0 off (SBX-HOST-LIBS-OPTION) */
} refimpl_limits;

typedef struct refimpl_engine_config {
    const refimpl_allocator *allocator; /* the engine's allocator */
    size_t workers;        /* >= 1; the pool holds workers + 1 states (PERF-POOL-SIZE) */
    size_t queue_capacity; /* >= 1 (PERF-QUEUE-CAPACITY) */
    const refimpl_bytes *prelude; /* run in every state, in order (LB-STATE-CREATE, ENG-PRELUDE) */
    size_t prelude_count;
    const refimpl_cvar_spec *cvars; /* registered before any state is made, so the prelude
                                       sees them */
    size_t cvar_count;
    const refimpl_limits *limits; /* NULL: the port's defaults (feature "engine.limits") */
} refimpl_engine_config;

/* on_complete(ctx, payload, len): once per script that ran, on the worker that ran it, after
 * its ScriptResult was pushed, with that payload (SR-CALLBACK-PAYLOAD, SR-CALLBACK-WORKER). A
 * non-zero return is a failing callback: logged and counted in callback_errors, the worker
 * lives on (SR-CALLBACK-ERROR, feature "engine.callback_raises"; a library that does not
 * declare it is only given callbacks that return 0). */
typedef int (*refimpl_complete_fn)(void *ctx, const uint8_t *payload, size_t len);

typedef struct refimpl_result { /* ExecuteResult (LH-EXEC-OK, MEM-EXEC-MESSAGE) */
    bool success;
    refimpl_bytes message; /* "OK" or the raw Lua error, allocated from the allocator passed */
} refimpl_result;

typedef struct refimpl_cvar_event { /* CVarChangeEvent (CV-TAKE-ORDER, MEM-CVAR-EVENTS) */
    refimpl_bytes name, old_value, new_value, on_change_lua; /* each from the given allocator */
} refimpl_cvar_event;
/* Receives one event of refimpl_engine_cvar_take; its four fields become the caller's. */
typedef void (*refimpl_event_fn)(void *ctx, const refimpl_cvar_event *event);

typedef struct refimpl_engine refimpl_engine;

/* Where the engine's console records go (Lua print, console.log; DRV-LOGS source "console"):
 * the driver installs a sink before any other call of the group, as refimpl_port_set_log. */
void refimpl_engine_set_console_log(refimpl_log_fn sink, void *ctx);
/* Wire queue, pool, runner and dispatcher (ENG-WIRING); every state of the pool runs the
 * prelude. LUA_RUNTIME_ERROR when a prelude fails (LB-PRELUDE-ERROR), INVALID_ARGUMENT for
 * workers or queue_capacity 0 or a bad cvar (CV-REGISTER-DUPLICATE), OUT_OF_MEMORY when the
 * allocator fails; on failure nothing is left allocated or running. */
refimpl_code refimpl_engine_new(const refimpl_engine_config *config, refimpl_engine **out);
/* The engine's own queue and pool, valid until refimpl_engine_free. */
refimpl_queue *refimpl_engine_queue(refimpl_engine *e);
refimpl_pool *refimpl_engine_pool(refimpl_engine *e);
/* enqueueScript: copy the script from the engine's allocator and submit it (SR-ENQUEUE-BYTES,
 * SR-ENQUEUE-RETURNS); on_complete may be NULL. OUT_OF_MEMORY when the copy fails
 * (SR-ENQUEUE-OOM), SHUT_DOWN after runner deinit or thread shutdown (SR-AFTER-DEINIT,
 * SR-POOL-SHUTDOWN), THREAD_AFFINITY on a worker of the engine (CMP-RUNNER-AFFINITY). */
refimpl_code refimpl_engine_enqueue(refimpl_engine *e, const uint8_t *script, size_t len,
                                    refimpl_complete_fn on_complete, void *ctx);
/* *idle = true once no script is pending or running, false when timeout_ms runs out first. */
refimpl_code refimpl_engine_wait_idle(refimpl_engine *e, int64_t timeout_ms, bool *idle);
/* ScriptingSystem.update on the main thread: publish CVar changes, then drain the queue
 * (SS-UPDATE-ORDER); THREAD_AFFINITY elsewhere (CMP-SYSTEM-CALLER-THREAD). */
refimpl_code refimpl_engine_update(refimpl_engine *e);
/* executeLuaBuffer on a state leased from the engine's pool: *out's message from alloc
 * (LH-EXEC-OK, LH-EXEC-RUNTIME-ERROR, LH-EXEC-ALLOC-FAIL). */
refimpl_code refimpl_lua_execute(void *state, const uint8_t *script, size_t len,
                                 const refimpl_allocator *alloc, refimpl_result *out);
/* callNamedHandler: args passed as Lua strings, a missing handler or a Lua error logged
 * (LH-CALL-ARGS, LH-CALL-MISSING, LH-CALL-ERROR). */
refimpl_code refimpl_lua_call_handler(void *state, refimpl_bytes name, const refimpl_bytes *args,
                                      size_t arg_count);
/* The CVar registry (spec/lua-bindings.md, CV-*), on the main thread but for the two gets
 * (THR-CVAR-WRITE-MAIN, THR-CVAR-READ-ANY-THREAD). */
refimpl_code refimpl_engine_cvar_register(refimpl_engine *e, const refimpl_cvar_spec *spec);
refimpl_code refimpl_engine_cvar_set(refimpl_engine *e, refimpl_bytes name, refimpl_bytes value);
/* *value: the canonical text (CV-GET-CANONICAL); UNKNOWN_CVAR for no such name. */
refimpl_code refimpl_engine_cvar_get(refimpl_engine *e, refimpl_bytes name,
                                     const refimpl_allocator *alloc, refimpl_bytes *value);
refimpl_code refimpl_engine_cvar_set_handler(refimpl_engine *e, refimpl_bytes name,
                                             refimpl_bytes handler);
/* *handler: the handler name, zero-length when none (CV-HANDLER-GET); an allocation still. */
refimpl_code refimpl_engine_cvar_get_handler(refimpl_engine *e, refimpl_bytes name,
                                             const refimpl_allocator *alloc,
                                             refimpl_bytes *handler);
/* takePendingChanges: every field of every pending event allocated from alloc first, then
 * each event handed to each(ctx, &event) in change order (CV-TAKE-ORDER, ruling D8); when an
 * allocation fails, what was allocated is freed, nothing is handed over and the changes stay
 * pending (CV-TAKE-OOM). alloc serves the fields only, so fail_at counts exactly them. */
refimpl_code refimpl_engine_cvar_take(refimpl_engine *e, const refimpl_allocator *alloc,
                                      refimpl_event_fn each, void *ctx);
/* Close everything in order (ENG-CLOSE-ORDER) and leave no live allocation
 * (ENG-CLOSE-ZERO-LIVE); a second close does nothing (ENG-CLOSE-TWICE). Scripts still
 * running after timeout_ms are left to finish, *stuck counts them (ENG-CLOSE-TIMEOUT). */
refimpl_code refimpl_engine_close(refimpl_engine *e, int64_t timeout_ms, size_t *stuck);
/* End of the handle's life: frees the engine's bookkeeping, its queue and its pool. The driver
 * calls it once, after a close that left nothing stuck, when no thread is inside a call on e,
 * its queue, its pool or its states (DRV-EOF). */
void refimpl_engine_free(refimpl_engine *e);

/* feature "engine.stats": the runner's and the system's counters since refimpl_engine_new
 * (DRV-STATS, SR-DROP-COUNTED, SS-DEFER-COUNTED). */
typedef struct refimpl_engine_stats {
    uint64_t enqueued, ok, errors, cancelled, dropped, callback_errors;
    uint64_t cvar_events, cvar_actions, cvar_dropped, handlers_invoked, handler_failures,
        deferred, malformed, script_ok, script_errors, native_ignored;
} refimpl_engine_stats;
refimpl_code refimpl_engine_stats_get(refimpl_engine *e, refimpl_engine_stats *out);

/* feature "engine.lifecycle": each part's deinit alone; refimpl_engine_close after any of them
 * still closes the rest. runner_deinit cancels scripts not started and waits for running ones,
 * leaving the pools and the queue up (SR-DEINIT-CANCEL, SR-DEINIT-NOT-OWNED); threads_shutdown
 * stops the worker threads (SR-POOL-SHUTDOWN); system_deinit is the dispatcher's (SS-DEINIT). */
refimpl_code refimpl_engine_runner_deinit(refimpl_engine *e);
refimpl_code refimpl_engine_threads_shutdown(refimpl_engine *e);
refimpl_code refimpl_engine_system_deinit(refimpl_engine *e);

#ifdef __cplusplus
}
#endif

#endif /* REFIMPL_PORT_H */
