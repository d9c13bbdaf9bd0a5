/* GPT-2's byte-level alphabet (bytes_unicode.h). */
#include "model/bytes_unicode.h"

static int stands_for_itself(unsigned b)
{
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t q35_byte_to_char(uint8_t b)
{
    if (stands_for_itself(b)) return b;
    /* The n-th byte (in byte order) that does not stand for itself takes U+0100 + n. */
    uint32_t n = 0;
    for (unsigned c = 0; c < b; c++) n += !stands_for_itself(c);
    return 0x100 + n;
}

int q35_char_to_byte(uint32_t cp)
{
    if (cp < 0x100) return stands_for_itself(cp) ? (int)cp : -1;
    if (cp >= 0x100 + 68) return -1;
    uint32_t n = 0;
    for (unsigned c = 0; c < 256; c++)
        if (!stands_for_itself(c) && n++ == cp - 0x100) return (int)c;
    return -1;
}
