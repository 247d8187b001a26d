/* The message formats: CVarLua is handler NUL name NUL old NUL new, exactly four fields (D3);
 * a ScriptResult reports an error when it starts with "ERROR:". */
#include <string.h>

#include "port.h"

enum { CVARLUA_FIELDS = 4 };

refimpl_code refimpl_msg_encode_cvar_lua(const refimpl_allocator *alloc,
                                         const refimpl_bytes fields[4], refimpl_bytes *out)
{
    size_t total = CVARLUA_FIELDS - 1;
    for (int i = 0; i < CVARLUA_FIELDS; i++) {
        if (fields[i].len > 0 && memchr(fields[i].ptr, '\0', fields[i].len) != NULL)
            return REFIMPL_MALFORMED_MESSAGE;
        total += fields[i].len;
    }
    uint8_t *buffer = alloc->alloc(alloc->ctx, total);
    if (buffer == NULL)
        return REFIMPL_OUT_OF_MEMORY;
    uint8_t *at = buffer;
    for (int i = 0; i < CVARLUA_FIELDS; i++) {
        if (i > 0)
            *at++ = '\0';
        if (fields[i].len > 0)
            memcpy(at, fields[i].ptr, fields[i].len);
        at += fields[i].len;
    }
    *out = (refimpl_bytes){.ptr = buffer, .len = total};
    return REFIMPL_OK;
}

refimpl_code refimpl_msg_parse_cvar_lua(const uint8_t *message, size_t len,
                                        refimpl_bytes fields[4])
{
    refimpl_bytes found[CVARLUA_FIELDS];
    int count = 0;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || message[i] == '\0') {
            if (count == CVARLUA_FIELDS)
                return REFIMPL_MALFORMED_MESSAGE;
            found[count++] = (refimpl_bytes){.ptr = message + start, .len = i - start};
            start = i + 1;
        }
    }
    if (count != CVARLUA_FIELDS)
        return REFIMPL_MALFORMED_MESSAGE;
    memcpy(fields, found, sizeof found);
    return REFIMPL_OK;
}

bool refimpl_msg_is_error_result(const uint8_t *payload, size_t len)
{
    static const char prefix[] = "ERROR:";
    return len >= sizeof prefix - 1 && memcmp(payload, prefix, sizeof prefix - 1) == 0;
}
