/* utf8.h - the UTF-8 rules the tokenizer needs: where input text stops
 * being valid, and Rust's String::from_utf8_lossy (what HF's ByteLevel
 * decoder ends with): each maximal invalid subpart (Unicode's "maximal
 * subpart of an ill-formed subsequence", at most 3 bytes) becomes one
 * U+FFFD. */
#ifndef Q35LAB_MODEL_UTF8_H
#define Q35LAB_MODEL_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* What the bytes at s[0..n) (n >= 1) begin with. */
typedef enum { Q35_UTF8_VALID, Q35_UTF8_INVALID, Q35_UTF8_TRUNCATED } q35_utf8_kind;
/* *len: the sequence's length (VALID), the bytes one U+FFFD replaces
 * (INVALID, 1..3), or n (TRUNCATED: all n bytes are the start of a valid
 * sequence that needs more). */
q35_utf8_kind q35_utf8_next(const unsigned char *s, size_t n, size_t *len);

/* The offset of the first byte that is not valid UTF-8 (a truncated
 * sequence at the end counts), or n when all is valid. */
size_t q35_utf8_first_invalid(const char *s, size_t n);

/* Lossy conversion of s[0..n) into out (room for 3 * n bytes: one U+FFFD
 * per bad byte at worst).  When final is 0 a truncated sequence at the end
 * is not converted: *consumed says where conversion stopped.  Returns the
 * bytes written. */
size_t q35_utf8_lossy(const unsigned char *s, size_t n, int final, char *out, size_t *consumed);

#endif
