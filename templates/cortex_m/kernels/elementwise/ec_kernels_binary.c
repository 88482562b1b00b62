/*
 * ec_kernels_binary.c - elementwise ops with broadcasting (see ec_kernels_binary.h).
 */
#include "ec_kernels_binary.h"

#include <math.h>

/* The odometer over the outer axes: where a and b start for each innermost run. */
typedef struct {
    int32_t idx[EC_BCAST_MAX_DIMS];
    int32_t a, b;
} bcast_pos_t;

static int32_t bcast_runs(const ec_bcast_t *bc)
{
    int32_t n = 1;
    for (int32_t k = 0; k < bc->rank - 1; k++)
        n *= bc->dims[k];
    return n;
}

static void bcast_next(const ec_bcast_t *bc, bcast_pos_t *w)
{
    for (int32_t k = bc->rank - 2; k >= 0; k--) {
        w->idx[k]++;
        w->a += bc->a_strides[k];
        w->b += bc->b_strides[k];
        if (w->idx[k] < bc->dims[k])
            return;
        w->a -= w->idx[k] * bc->a_strides[k];
        w->b -= w->idx[k] * bc->b_strides[k];
        w->idx[k] = 0;
    }
}

/* The statement (the macro's last argument) runs with i (output index), ia, ib (element indices of a and b) for every output element. */
#define BCAST_FOR(bc, ...)                                                          \
    do {                                                                           \
        bcast_pos_t w_ = {{0}, 0, 0};                                              \
        const int32_t n_ = (bc)->dims[(bc)->rank - 1];                             \
        const int32_t sa_ = (bc)->a_strides[(bc)->rank - 1];                       \
        const int32_t sb_ = (bc)->b_strides[(bc)->rank - 1];                       \
        const int32_t runs_ = bcast_runs(bc);                                      \
        int32_t i = 0;                                                             \
        for (int32_t r_ = 0; r_ < runs_; r_++) {                                   \
            for (int32_t j_ = 0, ia = w_.a, ib = w_.b; j_ < n_; j_++, ia += sa_, ib += sb_, i++) { \
                __VA_ARGS__;                                                       \
            }                                                                      \
            bcast_next(bc, &w_);                                                   \
        }                                                                          \
    } while (0)

static int32_t clamp_i32(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

static float clamp_f32(float v, float lo, float hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* ADD / SUB / SQUARED_DIFFERENCE: input k rescaled as TFLite does ((v + offset) << left_shift, then
 * a multiplier below one). */
static int32_t rescale_input(int32_t v, int32_t offset, int32_t left_shift, int32_t multiplier, int32_t shift)
{
    return ec_rounding_divide_by_pot(ec_sat_rounding_doubling_high_mul((v + offset) * (1 << left_shift), multiplier),
                                     -shift);
}

static int8_t binary_one_s8(int32_t op, const ec_add_params_t *q, int32_t a, int32_t b)
{
    int32_t v;
    switch (op) {
    case EC_BINARY_ADD:
        return ec_add_one_s8(q, a, b);
    case EC_BINARY_SUB: {
        int32_t d = rescale_input(a, q->input1_offset, q->left_shift, q->input1_multiplier, q->input1_shift) -
                    rescale_input(b, q->input2_offset, q->left_shift, q->input2_multiplier, q->input2_shift);
        v = ec_rounding_divide_by_pot(ec_sat_rounding_doubling_high_mul(d, q->output_multiplier), -q->output_shift) +
            q->output_offset;
        break;
    }
    case EC_BINARY_SQUARED_DIFFERENCE: {
        int32_t d = rescale_input(a, q->input1_offset, q->left_shift, q->input1_multiplier, q->input1_shift) -
                    rescale_input(b, q->input2_offset, q->left_shift, q->input2_multiplier, q->input2_shift);
        v = ec_multiply_by_quantized_multiplier(d * d, q->output_multiplier, q->output_shift) + q->output_offset;
        break;
    }
    case EC_BINARY_MUL:
        v = ec_multiply_by_quantized_multiplier((a + q->input1_offset) * (b + q->input2_offset), q->output_multiplier,
                                                q->output_shift) + q->output_offset;
        break;
    case EC_BINARY_MAXIMUM:
        v = a > b ? a : b;
        break;
    default: /* EC_BINARY_MINIMUM */
        v = a < b ? a : b;
        break;
    }
    return (int8_t)clamp_i32(v, q->act_min, q->act_max);
}

void ec_binary_s8(const ec_binary_params_t *p, const int8_t *a, const int8_t *b, int8_t *output)
{
    BCAST_FOR(&p->bc, output[i] = binary_one_s8(p->op, &p->q, a[ia], b[ib]));
}

static float binary_one_f32(int32_t op, float a, float b)
{
    switch (op) {
    case EC_BINARY_ADD: return a + b;
    case EC_BINARY_SUB: return a - b;
    case EC_BINARY_MUL: return a * b;
    case EC_BINARY_MAXIMUM: return a > b ? a : b;
    case EC_BINARY_MINIMUM: return a < b ? a : b;
    default: {
        float d = a - b;
        return d * d;
    }
    }
}

void ec_binary_f32(const ec_binary_params_t *p, const float *a, const float *b, float *output)
{
    BCAST_FOR(&p->bc, output[i] = clamp_f32(binary_one_f32(p->op, a[ia], b[ib]), p->q.act_min_f, p->q.act_max_f));
}

static int8_t prelu_one_s8(const ec_prelu_params_t *p, int32_t x, int32_t ib)
{
    const int32_t xi = x + p->input_offset;
    int32_t v;
    if (xi >= 0) {
        v = ec_multiply_by_quantized_multiplier(xi, p->multiplier_1, p->shift_1);
    } else {
        const int32_t w = p->alpha8 != NULL ? p->alpha8[ib] + p->alpha_offset : p->alpha16[ib];
        v = ec_multiply_by_quantized_multiplier(xi * w, p->multiplier_2, p->shift_2);
    }
    return (int8_t)clamp_i32(v + p->output_offset, -128, 127);
}

void ec_prelu_s8(const ec_prelu_params_t *p, const int8_t *input, int8_t *output)
{
    BCAST_FOR(&p->bc, output[i] = prelu_one_s8(p, input[ia], ib));
}

void ec_prelu_f32(const ec_prelu_params_t *p, const float *input, const float *alpha, float *output)
{
    BCAST_FOR(&p->bc, output[i] = input[ia] >= 0.0f ? input[ia] : input[ia] * alpha[ib]);
}

void ec_affine_s8(const ec_affine_params_t *p, const int8_t *input, int8_t *output)
{
    BCAST_FOR(&p->bc, {
        const int32_t acc = (input[ia] + p->input_offset) * p->w[ib] + p->b[ib];
        const int32_t v = ec_multiply_by_quantized_multiplier(acc, p->multiplier, p->shift) + p->output_offset;
        output[i] = (int8_t)clamp_i32(v, p->act_min, p->act_max);
    });
}

void ec_affine_f32(const ec_affine_params_t *p, const float *input, float *output)
{
    BCAST_FOR(&p->bc, output[i] = clamp_f32(input[ia] * p->scale[ib] + p->bias[ib], p->act_min_f, p->act_max_f));
}
