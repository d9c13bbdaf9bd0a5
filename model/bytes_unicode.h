/* bytes_unicode.h - GPT-2's byte-level alphabet, which byte-level BPE
 * vocabularies (and tokenizer.json's ByteLevel steps) are written in: each
 * of the 256 byte values is one printable code point.  Bytes that are
 * printable in Latin-1 ('!'..'~', U+00A1..U+00AC, U+00AE..U+00FF) stand for
 * themselves; the 68 others (controls, space, U+007F..U+00A0, the soft
 * hyphen) take U+0100, U+0101, ... in byte order.  An arithmetic rule, not a
 * Unicode table: it is the definition in HF tokenizers' byte_level.rs. */
#ifndef Q35LAB_MODEL_BYTES_UNICODE_H
#define Q35LAB_MODEL_BYTES_UNICODE_H

#include <stdint.h>

/* The code point that stands for byte b. */
uint32_t q35_byte_to_char(uint8_t b);
/* The byte a code point stands for, or -1 if it is not in the alphabet. */
int q35_char_to_byte(uint32_t cp);

#endif
