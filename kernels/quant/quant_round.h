/* Rounding shared by the row quantizers (quant_q8_0.c, quant_q4_0.c; eqs. Q8q, Q4q of
 * docs/quantization.md).  Internal to kernels/quant/. */
#ifndef Q35_QUANT_ROUND_H
#define Q35_QUANT_ROUND_H

/* Round to nearest, ties away from zero (C's round) of a double |t| < 2^51, without libm, in a form the
 * compiler vectorizes: (t + 1.5*2^52) - 1.5*2^52 rounds to nearest, ties to even (the sum's ulp is 1); the
 * difference t - r is then exact (|t - r| <= 1/2), and exactly +-1/2 only on a tie, which goes away from 0. */
static inline double q35_round_half_away(double t)
{
    const double magic = 0x1.8p52; /* (never built with -ffast-math, which would fold (t + m) - m to t) */
    const double r = (t + magic) - magic;
    const double diff = t - r;
    const double up = diff == 0.5 && t > 0 ? 1.0 : 0.0, down = diff == -0.5 && t < 0 ? 1.0 : 0.0;
    return r + up - down;
}

#endif
