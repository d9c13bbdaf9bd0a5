/* UTF-8 validity and lossy conversion (utf8.h). */
#include "model/utf8.h"

#include <string.h>

q35_utf8_kind q35_utf8_next(const unsigned char *s, size_t n, size_t *len)
{
    const unsigned b = s[0];
    if (b < 0x80) {
        *len = 1;
        return Q35_UTF8_VALID;
    }
    /* The ranges of Unicode's table 3-7 (well-formed byte sequences): the
     * second byte's range depends on the lead; later ones are 80..BF. */
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) need = 2;
    else if (b == 0xE0) need = 3, lo = 0xA0;
    else if (b == 0xED) need = 3, hi = 0x9F;
    else if (b >= 0xE1 && b <= 0xEF) need = 3;
    else if (b == 0xF0) need = 4, lo = 0x90;
    else if (b == 0xF4) need = 4, hi = 0x8F;
    else if (b >= 0xF1 && b <= 0xF3) need = 4;
    else {
        *len = 1;
        return Q35_UTF8_INVALID;
    }
    for (size_t i = 1; i < need; i++) {
        if (i >= n) {
            *len = n;
            return Q35_UTF8_TRUNCATED;
        }
        const unsigned c = s[i];
        if (c < (i == 1 ? lo : 0x80) || c > (i == 1 ? hi : 0xBF)) {
            *len = i;
            return Q35_UTF8_INVALID;
        }
    }
    *len = need;
    return Q35_UTF8_VALID;
}

size_t q35_utf8_first_invalid(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        /* ASCII runs, 8 bytes at a time: most text is mostly ASCII. */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, u + i, 8);
            if (w & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= n) break;
        size_t len;
        if (q35_utf8_next(u + i, n - i, &len) != Q35_UTF8_VALID) return i;
        i += len;
    }
    return n;
}

size_t q35_utf8_lossy(const unsigned char *s, size_t n, int final, char *out, size_t *consumed)
{
    size_t i = 0, o = 0;
    while (i < n) {
        size_t len;
        const q35_utf8_kind k = q35_utf8_next(s + i, n - i, &len);
        if (k == Q35_UTF8_TRUNCATED && !final) break;
        if (k == Q35_UTF8_VALID) {
            memcpy(out + o, s + i, len);
            o += len;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
        }
        i += len;
    }
    *consumed = i;
    return o;
}
