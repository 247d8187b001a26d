/*
 * bridge.c: a test-only port of every function of refimpl_port.h. Each one forwards to a
 * table of function pointers that the loader installs before the driver's first call
 * (refimpl_bridge_install), so an implementation written behind the table (driver.py: the
 * refimpl's own classes) is reached through the header's real ABI, struct layouts included.
 * Build: cc -shared -fPIC -I conformance/capi bridge.c (the tests do).
 */
#include "refimpl_port.h"

/* One line per function, in header order: X(return type, name, parameters, arguments) for
 * functions with a result, V(name, parameters, arguments) for void ones. */
#define BRIDGE_FUNCTIONS(X, V)                                                                  \
    X(const char *const *, port_features, (void), ())                                          \
    X(const char *, port_name, (void), ())                                                     \
    V(port_set_log, (refimpl_log_fn sink, void *ctx), (sink, ctx))                             \
    X(refimpl_code, queue_new, (const refimpl_allocator *a, size_t n, refimpl_queue **out),    \
      (a, n, out))                                                                             \
    X(refimpl_code, queue_push, (refimpl_queue *q, refimpl_action action), (q, action))        \
    X(refimpl_code, queue_try_pop, (refimpl_queue *q, refimpl_action *out, bool *popped),      \
      (q, out, popped))                                                                        \
    X(refimpl_code, queue_pop, (refimpl_queue *q, refimpl_action *out), (q, out))              \
    X(size_t, queue_len, (refimpl_queue *q), (q))                                              \
    X(refimpl_code, queue_deinit, (refimpl_queue *q), (q))                                     \
    V(queue_free, (refimpl_queue *q), (q))                                                     \
    X(refimpl_code, queue_push_timeout, (refimpl_queue *q, refimpl_action action, int64_t ms), \
      (q, action, ms))                                                                         \
    X(refimpl_code, queue_pop_timeout,                                                         \
      (refimpl_queue *q, int64_t ms, refimpl_action *out, bool *popped), (q, ms, out, popped)) \
    V(queue_counters_get, (refimpl_queue *q, refimpl_queue_counters *out), (q, out))           \
    X(refimpl_code, pool_new,                                                                  \
      (const refimpl_allocator *a, size_t n, refimpl_create_fn create,                         \
       refimpl_destroy_fn destroy, void *ctx, refimpl_pool **out),                             \
      (a, n, create, destroy, ctx, out))                                                       \
    X(refimpl_code, pool_acquire, (refimpl_pool *p, void **r), (p, r))                         \
    X(refimpl_code, pool_try_acquire, (refimpl_pool *p, void **r), (p, r))                     \
    X(refimpl_code, pool_release, (refimpl_pool *p, void *r), (p, r))                          \
    X(size_t, pool_available, (refimpl_pool *p), (p))                                          \
    X(refimpl_code, pool_deinit, (refimpl_pool *p), (p))                                       \
    V(pool_free, (refimpl_pool *p), (p))                                                       \
    X(refimpl_code, pool_acquire_timeout, (refimpl_pool *p, int64_t ms, void **r), (p, ms, r)) \
    X(size_t, pool_waiters, (refimpl_pool *p), (p))                                            \
    X(refimpl_code, msg_encode_cvar_lua,                                                       \
      (const refimpl_allocator *a, const refimpl_bytes f[4], refimpl_bytes *out), (a, f, out)) \
    X(refimpl_code, msg_parse_cvar_lua, (const uint8_t *m, size_t n, refimpl_bytes f[4]),      \
      (m, n, f))                                                                               \
    X(bool, msg_is_error_result, (const uint8_t *m, size_t n), (m, n))                         \
    V(engine_set_console_log, (refimpl_log_fn sink, void *ctx), (sink, ctx))                   \
    X(refimpl_code, engine_new, (const refimpl_engine_config *c, refimpl_engine **out),        \
      (c, out))                                                                                \
    X(refimpl_queue *, engine_queue, (refimpl_engine *e), (e))                                 \
    X(refimpl_pool *, engine_pool, (refimpl_engine *e), (e))                                   \
    X(refimpl_code, engine_enqueue,                                                            \
      (refimpl_engine *e, const uint8_t *s, size_t n, refimpl_complete_fn fn, void *ctx),      \
      (e, s, n, fn, ctx))                                                                      \
    X(refimpl_code, engine_wait_idle, (refimpl_engine *e, int64_t ms, bool *idle),             \
      (e, ms, idle))                                                                           \
    X(refimpl_code, engine_update, (refimpl_engine *e), (e))                                   \
    X(refimpl_code, lua_execute,                                                               \
      (void *L, const uint8_t *s, size_t n, const refimpl_allocator *a, refimpl_result *out),  \
      (L, s, n, a, out))                                                                       \
    X(refimpl_code, lua_call_handler,                                                          \
      (void *L, refimpl_bytes name, const refimpl_bytes *args, size_t n), (L, name, args, n))  \
    X(refimpl_code, engine_cvar_register, (refimpl_engine *e, const refimpl_cvar_spec *s),     \
      (e, s))                                                                                  \
    X(refimpl_code, engine_cvar_set, (refimpl_engine *e, refimpl_bytes k, refimpl_bytes v),    \
      (e, k, v))                                                                               \
    X(refimpl_code, engine_cvar_get,                                                           \
      (refimpl_engine *e, refimpl_bytes k, const refimpl_allocator *a, refimpl_bytes *out),    \
      (e, k, a, out))                                                                          \
    X(refimpl_code, engine_cvar_set_handler,                                                   \
      (refimpl_engine *e, refimpl_bytes k, refimpl_bytes h), (e, k, h))                        \
    X(refimpl_code, engine_cvar_get_handler,                                                   \
      (refimpl_engine *e, refimpl_bytes k, const refimpl_allocator *a, refimpl_bytes *out),    \
      (e, k, a, out))                                                                          \
    X(refimpl_code, engine_cvar_take,                                                          \
      (refimpl_engine *e, const refimpl_allocator *a, refimpl_event_fn each, void *ctx),       \
      (e, a, each, ctx))                                                                       \
    X(refimpl_code, engine_close, (refimpl_engine *e, int64_t ms, size_t *stuck),              \
      (e, ms, stuck))                                                                          \
    V(engine_free, (refimpl_engine *e), (e))                                                   \
    X(refimpl_code, engine_stats_get, (refimpl_engine *e, refimpl_engine_stats *out), (e, out)) \
    X(refimpl_code, engine_runner_deinit, (refimpl_engine *e), (e))                            \
    X(refimpl_code, engine_threads_shutdown, (refimpl_engine *e), (e))                         \
    X(refimpl_code, engine_system_deinit, (refimpl_engine *e), (e))

#define FIELD(ret, name, params, args) ret(*name) params;
#define VOID_FIELD(name, params, args) void(*name) params;
typedef struct refimpl_bridge_table {
    BRIDGE_FUNCTIONS(FIELD, VOID_FIELD)
} refimpl_bridge_table;

static refimpl_bridge_table table;

/* Called once, before any other function; the loader keeps what the table points to alive. */
void refimpl_bridge_install(const refimpl_bridge_table *t) { table = *t; }

/* The table's field names in order, so the loader can check its layout against this one. */
#define NAME(ret, name, params, args) #name,
#define VOID_NAME(name, params, args) #name,
const char *const *refimpl_bridge_names(void) {
    static const char *const names[] = {BRIDGE_FUNCTIONS(NAME, VOID_NAME) NULL};
    return names;
}

#define FORWARD(ret, name, params, args) \
    ret refimpl_##name params { return table.name args; }
#define VOID_FORWARD(name, params, args) \
    void refimpl_##name params { table.name args; }
BRIDGE_FUNCTIONS(FORWARD, VOID_FORWARD)
