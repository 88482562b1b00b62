/*
 * ec_kernels.c - what the kernel files share, compiled once: TFLite's integer helpers out of line (the
 * reference kernels call them; ec_requant.h has their inline forms), the int8 ADD element and the
 * clipped kernel window.
 */
#include "ec_kernels.h"
#include "ec_requant.h"

/* ---- integer helpers (TFLite's arithmetic, as its reference code writes it) ---------- */

int32_t ec_sat_rounding_doubling_high_mul(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN)
        return INT32_MAX;
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31)); /* division truncates toward zero */
}

int32_t ec_rounding_divide_by_pot(int32_t x, int exponent)
{
    int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    int32_t remainder = x & mask;
    int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

int32_t ec_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int shift)
{
    int left = shift > 0 ? shift : 0;
    int right = shift > 0 ? 0 : -shift;
    return ec_rounding_divide_by_pot(ec_sat_rounding_doubling_high_mul(ec_shift_left(x, left), multiplier), right);
}

/* One int8 ADD element: TFLM's AddFunc. */
int8_t ec_add_one_s8(const ec_add_params_t *p, int32_t a, int32_t b)
{
    EC_ADD_ELEMENT_S8(p, a, b, EC_RESCALE_SMALL);
}

/* First and one-past-last kernel tap k with 0 <= origin + k * dilation < size. */
void ec_tap_range(int32_t origin, int32_t dilation, int32_t kernel, int32_t size, int32_t *first, int32_t *end)
{
    int32_t k0 = 0;
    int32_t k1 = kernel;
    while (k0 < kernel && origin + k0 * dilation < 0)
        k0++;
    while (k1 > k0 && origin + (k1 - 1) * dilation >= size)
        k1--;
    *first = k0;
    *end = k1;
}
