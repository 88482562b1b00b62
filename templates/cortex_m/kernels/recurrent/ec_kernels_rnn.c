/*
 * ec_kernels_rnn.c - recurrent layers (see ec_kernels_rnn.h).  Plain C reference kernels.
 */
#include <math.h>
#include <string.h>

#include "ec_kernels.h"
#include "ec_kernels_rnn.h"

static int32_t sat16(int32_t v)
{
    return v < -32768 ? -32768 : (v > 32767 ? 32767 : v);
}

/* TFLM reference_integer_ops::Logistic on int16 as the LSTM calls it: Q3.12 -> Q0.15. */
static int16_t sigmoid_s16(int32_t x, const uint16_t *tab)
{
    int32_t v = x * 3;
    uint32_t a = (uint32_t)(v < 0 ? -v : v);
    uint32_t uh = a >> 9;
    uint32_t r;
    if (uh >= 255) {
        r = 0x7FFFu << 10;
    } else {
        uint32_t ua = tab[uh], ub = tab[uh + 1];
        r = (ua << 9) + (a & 0x1FFu) * (ub - ua);
    }
    r = v >= 0 ? r + (1u << 9) : (1u << 25) - r + (1u << 9) - 1u;
    return (int16_t)(r >> 10);
}

/* TFLM reference_integer_ops::Tanh on int16 (multiplier 0: 3 << shift, no shift). */
static int16_t tanh_s16(int32_t x, int32_t mult, int32_t shift, const uint16_t *tab)
{
    if (mult == 0) {
        mult = 3 << shift;
        shift = 0;
    }
    int32_t rnd = shift > 0 ? 1 << (shift - 1) : 0;
    int32_t v = (x * mult + rnd) >> shift;
    uint32_t a = (uint32_t)(v < 0 ? -v : v);
    uint32_t uh = a >> 8;
    int32_t r;
    if (uh >= 255) {
        r = 0xFFFF << 8;
    } else {
        uint32_t ua = tab[uh], ub = tab[uh + 1];
        r = (int32_t)((ua << 8) + (a & 0xFFu) * (ub - ua));
    }
    r = v >= 0 ? r - (1 << 23) + (1 << 7) : -r + (1 << 23) + (1 << 7) - 1;
    return (int16_t)(r >> 8);
}

/* TFLM's fully connected row to int16: bias + sum(w (v + offset)), requantized, int16 range. */
static int16_t fc_row_s8(const int8_t *v, const int8_t *w, int32_t n, int32_t offset, int32_t bias,
                         int32_t mult, int32_t shift)
{
    int32_t acc = 0;
    for (int32_t k = 0; k < n; ++k)
        acc += (int32_t)w[k] * ((int32_t)v[k] + offset);
    acc += bias;
    return (int16_t)sat16(ec_multiply_by_quantized_multiplier(acc, mult, shift));
}

static int16_t fc_row_s16(const int16_t *v, const int8_t *w, int32_t n, int32_t bias, int32_t mult, int32_t shift)
{
    int32_t acc = 0;
    for (int32_t k = 0; k < n; ++k)
        acc += (int32_t)w[k] * (int32_t)v[k];
    acc += bias;
    return (int16_t)sat16(ec_multiply_by_quantized_multiplier(acc, mult, shift));
}

/* TFLM's MulElementwise (offsets 0): clamp(zp + MultiplyByQuantizedMultiplier(a b)). */
static int32_t mul_q(int32_t a, int32_t b, int32_t mult, int32_t shift, int32_t zp, int32_t lo, int32_t hi)
{
    int32_t v = ec_multiply_by_quantized_multiplier(a * b, mult, shift) + zp;
    return v < lo ? lo : (v > hi ? hi : v);
}

void ec_lstm_s8(const ec_rnn_params_t *p, const int8_t *x, const int8_t *w_x, const int8_t *w_h,
                const int32_t *bias, int8_t *h, int16_t *c, int16_t *scratch, int8_t *y)
{
    const int32_t I = p->in_features, H = p->units, R = 4 * H;
    const uint16_t *tab = p->sigmoid_table;
    int16_t *g = scratch; /* [4H]: gate pre-activations, then the gates */
    for (int32_t t = 0; t < p->steps; ++t) {
        const int8_t *xt = x + t * I;
        for (int32_t r = 0; r < R; ++r) {
            int32_t a = fc_row_s8(xt, w_x + r * I, I, p->x_offset, bias ? bias[r] : 0, p->x_mult[r], p->x_shift[r]);
            int32_t b = fc_row_s8(h, w_h + r * H, H, p->h_offset, 0, p->h_mult[r], p->h_shift[r]);
            g[r] = (int16_t)sat16(a + b);
        }
        for (int32_t j = 0; j < H; ++j) {
            int32_t gi = sigmoid_s16(g[j], tab);
            int32_t gf = sigmoid_s16(g[H + j], tab);
            int32_t gc = (p->flags & EC_RNN_CELL_SIGMOID) ? sigmoid_s16(g[2 * H + j], tab)
                                                          : tanh_s16(g[2 * H + j], 0, 0, tab);
            int32_t cf = mul_q(gf, c[j], p->m1, p->s1, 0, -32768, 32767);
            int32_t cn = sat16(cf + mul_q(gi, gc, p->m2, p->s2, 0, -32768, 32767));
            if (p->cell_clip > 0)
                cn = cn < -p->cell_clip ? -p->cell_clip : (cn > p->cell_clip ? p->cell_clip : cn);
            c[j] = (int16_t)cn;
            g[3 * H + j] = sigmoid_s16(g[3 * H + j], tab);
        }
        for (int32_t j = 0; j < H; ++j) {
            int32_t tc = tanh_s16(c[j], p->tanh_mult, p->tanh_shift, tab);
            h[j] = (int8_t)mul_q(tc, g[3 * H + j], p->m3, p->s3, p->h_zp, -128, 127);
        }
        if (p->sequence || t == p->steps - 1)
            memcpy(y + (p->sequence ? t * H : 0), h, (size_t)H);
    }
}

void ec_gru_s8(const ec_rnn_params_t *p, const int8_t *x, const int8_t *w_x, const int8_t *w_h,
               const int32_t *b_x, const int32_t *b_h, int16_t *h, int16_t *scratch, int8_t *y)
{
    const int32_t I = p->in_features, H = p->units;
    const uint16_t *tab = p->sigmoid_table;
    const int lbr = (p->flags & EC_RNN_LINEAR_BEFORE_RESET) != 0;
    int16_t *gx = scratch, *gh = scratch + 3 * H, *rh = scratch + 6 * H, *cand = scratch + 7 * H;
    for (int32_t t = 0; t < p->steps; ++t) {
        const int8_t *xt = x + t * I;
        for (int32_t r = 0; r < 3 * H; ++r)
            gx[r] = fc_row_s8(xt, w_x + r * I, I, p->x_offset, b_x[r], p->x_mult[r], p->x_shift[r]);
        for (int32_t r = 0; r < (lbr ? 3 * H : 2 * H); ++r)
            gh[r] = fc_row_s16(h, w_h + r * H, H, b_h[r], p->h_mult[r], p->h_shift[r]);
        for (int32_t j = 0; j < 2 * H; ++j) /* update and reset gates */
            gx[j] = sigmoid_s16(sat16(gx[j] + gh[j]), tab);
        if (lbr) {
            for (int32_t j = 0; j < H; ++j)
                cand[j] = tanh_s16(sat16(gx[2 * H + j] + mul_q(gx[H + j], gh[2 * H + j], p->m1, p->s1, 0, -32768, 32767)),
                                   0, 0, tab);
        } else {
            for (int32_t j = 0; j < H; ++j)
                rh[j] = (int16_t)mul_q(gx[H + j], h[j], p->m1, p->s1, 0, -32768, 32767);
            for (int32_t j = 0; j < H; ++j) {
                int32_t r = 2 * H + j;
                int32_t gn = fc_row_s16(rh, w_h + r * H, H, b_h[r], p->h_mult[r], p->h_shift[r]);
                cand[j] = tanh_s16(sat16(gx[r] + gn), 0, 0, tab);
            }
        }
        for (int32_t j = 0; j < H; ++j) {
            int32_t z = gx[j];
            int32_t v = ((32768 - z) * (int32_t)cand[j] + z * (int32_t)h[j] + (1 << 14)) >> 15;
            h[j] = (int16_t)sat16(v);
        }
        if (p->sequence || t == p->steps - 1) {
            int8_t *yt = y + (p->sequence ? t * H : 0);
            for (int32_t j = 0; j < H; ++j)
                yt[j] = (int8_t)mul_q(h[j], 1, p->m3, p->s3, p->h_zp, -128, 127);
        }
    }
}

static float sigmoidf_(float v)
{
    return 1.0f / (1.0f + expf(-v));
}

static float dot_f(const float *v, const float *w, int32_t n, float acc)
{
    for (int32_t k = 0; k < n; ++k)
        acc += w[k] * v[k];
    return acc;
}

void ec_lstm_f32(const ec_rnn_params_t *p, const float *x, const float *w_x, const float *w_h,
                 const float *bias, float *h, float *c, float *scratch, float *y)
{
    const int32_t I = p->in_features, H = p->units, R = 4 * H;
    float *g = scratch;
    for (int32_t t = 0; t < p->steps; ++t) {
        const float *xt = x + t * I;
        for (int32_t r = 0; r < R; ++r)
            g[r] = dot_f(h, w_h + r * H, H, dot_f(xt, w_x + r * I, I, bias ? bias[r] : 0.0f));
        for (int32_t j = 0; j < H; ++j) {
            float gc = (p->flags & EC_RNN_CELL_SIGMOID) ? sigmoidf_(g[2 * H + j]) : tanhf(g[2 * H + j]);
            float cn = sigmoidf_(g[H + j]) * c[j] + sigmoidf_(g[j]) * gc;
            if (p->cell_clip_f > 0.0f)
                cn = cn < -p->cell_clip_f ? -p->cell_clip_f : (cn > p->cell_clip_f ? p->cell_clip_f : cn);
            c[j] = cn;
            h[j] = sigmoidf_(g[3 * H + j]) * tanhf(cn);
        }
        if (p->sequence || t == p->steps - 1)
            memcpy(y + (p->sequence ? t * H : 0), h, (size_t)H * sizeof(float));
    }
}

void ec_gru_f32(const ec_rnn_params_t *p, const float *x, const float *w_x, const float *w_h,
                const float *b_x, const float *b_h, float *h, float *scratch, float *y)
{
    const int32_t I = p->in_features, H = p->units;
    const int lbr = (p->flags & EC_RNN_LINEAR_BEFORE_RESET) != 0;
    float *gx = scratch, *gh = scratch + 3 * H, *rh = scratch + 6 * H, *cand = scratch + 7 * H;
    for (int32_t t = 0; t < p->steps; ++t) {
        const float *xt = x + t * I;
        for (int32_t r = 0; r < 3 * H; ++r)
            gx[r] = dot_f(xt, w_x + r * I, I, b_x[r]);
        for (int32_t r = 0; r < (lbr ? 3 * H : 2 * H); ++r)
            gh[r] = dot_f(h, w_h + r * H, H, b_h[r]);
        for (int32_t j = 0; j < 2 * H; ++j)
            gx[j] = sigmoidf_(gx[j] + gh[j]);
        if (lbr) {
            for (int32_t j = 0; j < H; ++j)
                cand[j] = tanhf(gx[2 * H + j] + gx[H + j] * gh[2 * H + j]);
        } else {
            for (int32_t j = 0; j < H; ++j)
                rh[j] = gx[H + j] * h[j];
            for (int32_t j = 0; j < H; ++j)
                cand[j] = tanhf(gx[2 * H + j] + dot_f(rh, w_h + (2 * H + j) * H, H, b_h[2 * H + j]));
        }
        for (int32_t j = 0; j < H; ++j)
            h[j] = (1.0f - gx[j]) * cand[j] + gx[j] * h[j];
        if (p->sequence || t == p->steps - 1)
            memcpy(y + (p->sequence ? t * H : 0), h, (size_t)H * sizeof(float));
    }
}
