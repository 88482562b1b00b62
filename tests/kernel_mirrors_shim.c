/*
 * kernel_mirrors_shim.c - test only (tests/test_kernel_mirrors.py): the C predicates, constants and
 * layouts that the Python generator mirrors, as plain functions a host shared library exports to
 * ctypes.  It includes the kernel files as a bundle has them (edgecomp.backends.c.kernels.catalogue) to reach
 * their static functions; the reference kernels (ec_kernels.c) are linked beside it.
 */
#include "ec_kernels_dsp.c"
#include "ec_kernels_gemm.c"
#include "ec_kernels_mve.h" /* (its macros: the Helium kernels' workspaces and packed layouts) */

#include <stdlib.h>

/* ---- constants -------------------------------------------------------------------- */

int32_t mirror_dw_tile(void) { return EC_DW_TILE; }
int32_t mirror_dw_scratch_bytes(void) { return 4 * EC_DWS_SCRATCH; }
int32_t mirror_gemm_add_table_bytes(void) { return EC_GEMM_ADD_TABLE_BYTES; }
int32_t mirror_gemm_work_bytes(int32_t kbp, int32_t in_c, int32_t chunk, int32_t n_live)
{
    return EC_GEMM_WORK_BYTES(kbp, in_c, chunk, n_live);
}
int32_t mirror_gemm_wbuf_bytes(int32_t kbp, int32_t wtile) { return EC_GEMM_WBUF_BYTES(kbp, wtile); }

int32_t mirror_mve_conv_work_bytes(int32_t kh, int32_t kw, int32_t in_c, int32_t pad)
{
    return EC_MVE_CONV_WORK_BYTES(kh, kw, in_c, pad);
}
int32_t mirror_mve_dw_work_bytes(int32_t in_c) { return EC_MVE_DW_WORK_BYTES(in_c); }
int32_t mirror_mve_dw3x3_work_bytes(int32_t in_w, int32_t in_c) { return EC_MVE_DW3X3_WORK_BYTES(in_w, in_c); }
int32_t mirror_mve_conv_group_bytes(int32_t k) { return EC_MVE_CONV_GROUP_BYTES(k); }
int32_t mirror_mve_fc_group_bytes(int32_t n_in) { return EC_MVE_FC_GROUP_BYTES(n_in); }
int32_t mirror_mve_dw_group_bytes(int32_t taps) { return EC_MVE_DW_GROUP_BYTES(taps); }
int32_t mirror_mve_groups(int32_t which)
{
    return which == 0 ? EC_MVE_CONV_GROUP : which == 1 ? EC_MVE_FC_GROUP : which == 2 ? EC_MVE_DW_GROUP
                                                                                   : EC_MVE_DW_MAX_TAPS;
}

/* ---- the inline requantization primitives (ec_requant.h) --------------------------- */

int32_t mirror_srdhm(int32_t a, int32_t b) { return ec_srdhm(a, b); }
int32_t mirror_rdbpot(int32_t x, int32_t e) { return ec_rdbpot(x, e); }
int32_t mirror_mbqm(int32_t x, int32_t m, int32_t s) { return ec_mbqm(x, m, s); }

/* ---- a layer's parameters ---------------------------------------------------------- */

/* geom: batches, in_h, in_w, in_c, out_h, out_w, out_c, kernel_h, kernel_w, stride_h, stride_w,
 * dilation_h, dilation_w, pad_top, pad_left, depth_multiplier */
static ec_conv_params_t conv_params(const int32_t *geom, const int32_t *mult, const int8_t *shift)
{
    ec_conv_params_t p;
    memset(&p, 0, sizeof p);
    p.batches = geom[0];
    p.in_h = geom[1];
    p.in_w = geom[2];
    p.in_c = geom[3];
    p.out_h = geom[4];
    p.out_w = geom[5];
    p.out_c = geom[6];
    p.kernel_h = geom[7];
    p.kernel_w = geom[8];
    p.stride_h = geom[9];
    p.stride_w = geom[10];
    p.dilation_h = geom[11];
    p.dilation_w = geom[12];
    p.pad_top = geom[13];
    p.pad_left = geom[14];
    p.depth_multiplier = geom[15];
    p.act_min = -128;
    p.act_max = 127;
    p.multiplier = mult;
    p.shift = shift;
    return p;
}

int32_t mirror_kernel_row_bytes(const int32_t *geom)
{
    const ec_conv_params_t p = conv_params(geom, NULL, NULL);
    return kernel_row_bytes(&p);
}

/* ---- depthwise (depthwise/ec_depthwise_conv2d_dsp.c) -------------------------------- */

static int8_t arena[1 << 20];

int mirror_dw_requant_ok(const int32_t *geom, const int32_t *mult, const int8_t *shift, const int32_t *bias)
{
    const ec_conv_params_t p = conv_params(geom, mult, shift);
    return dw_requant_ok(&p, bias);
}

/* the input and output at these offsets of one arena (in place when they overlap) */
int mirror_dw_fast_ok(const int32_t *geom, const int32_t *mult, const int8_t *shift, const int32_t *bias,
                      int32_t in_off, int32_t out_off, int has_skip)
{
    const ec_conv_params_t p = conv_params(geom, mult, shift);
    return dw_fast_ok(&p, arena + in_off, bias, arena + out_off, has_skip ? arena : NULL);
}

int mirror_dw_s2_ok(const int32_t *geom, const int32_t *mult, const int8_t *shift, const int32_t *bias,
                    int has_skip)
{
    const ec_conv_params_t p = conv_params(geom, mult, shift);
    return dw_s2_ok(&p, bias, has_skip ? arena : NULL);
}

/* ---- the matrix-product convolution (conv/ec_conv2d_gemm.c) ------------------------- */

static int rec_calls, rec_run;

static void record_residual(const ec_conv_params_t *p, const ec_gemm_params_t *g, const int32_t *acc, int8_t *d0,
                            int8_t *d1, const int8_t *s0, int32_t oc0, int32_t oc1)
{
    (void)acc;
    (void)d0;
    (void)s0;
    rec_calls++;
    rec_run &= residual_run_ok(p, g, d1, oc0, oc1);
}

/* Runs the layer (zero data) with a fused residual add whose store records, for every call the
 * kernel makes, whether residual_run_ok holds: 1 all of them, 0 not, -1 no call. */
int mirror_residual_run(const int32_t *geom, int32_t kbp, int32_t nb, int32_t chunk, int32_t fast, int32_t wtile,
                        int rowwise)
{
    const int32_t oc = geom[6], pairs = (oc + 1) / 2;
    int32_t *mult = calloc((size_t)oc, sizeof(int32_t));
    int8_t *shift = calloc((size_t)oc, 1);
    ec_conv_params_t p = conv_params(geom, mult, shift);
    const size_t n_in = (size_t)(p.batches * p.in_h * p.in_w * p.in_c);
    const size_t n_out = (size_t)(p.batches * p.out_h * p.out_w * oc);
    int8_t *in = calloc(n_in + 4, 1), *out = calloc(n_out, 1), *skip = calloc(n_out, 1);
    int8_t *row = calloc((size_t)(p.out_w * oc), 1);
    int8_t *wpk = calloc((size_t)(2 * pairs * nb * kbp), 1);
    int32_t *bias = calloc((size_t)(2 * pairs), sizeof(int32_t));
    int32_t *work = calloc((size_t)EC_GEMM_WORK_BYTES(kbp, p.in_c, chunk, 0) / 4 + 1, 4);
    uint32_t *wbuf = wtile > 0 ? calloc((size_t)EC_GEMM_WBUF_BYTES(kbp, wtile) / 4 + 1, 4) : NULL;
    ec_add_params_t res;
    memset(&res, 0, sizeof res);
    p.residual = &res;
    ec_gemm_params_t g;
    memset(&g, 0, sizeof g);
    g.kbp = kbp;
    g.nb = nb;
    g.chunk = chunk;
    g.fast = fast;
    g.wpk = wpk;
    g.bias = bias;
    g.row = rowwise ? row : NULL;
    g.skip = skip;
    g.work = work;
    g.residual_store = record_residual;
    g.wtile = wtile;
    g.wbuf = wbuf;
    g.gemm16 = wtile > 0 ? ec_gemm16_2x2 : NULL;
    rec_calls = 0;
    rec_run = 1;
    ec_conv2d_s8_gemm(&p, &g, in, out);
    free(mult);
    free(shift);
    free(in);
    free(out);
    free(skip);
    free(row);
    free(wpk);
    free(bias);
    free(work);
    free(wbuf);
    return rec_calls == 0 ? -1 : rec_run;
}

/* The layout ec_gemm16_2x2 reads: widen() of `pairs` packed channel pairs of kbp taps */
void mirror_widen(const int8_t *wpk, uint32_t *w16, int32_t pairs, int32_t kbp)
{
    widen(wpk, w16, pairs, kbp);
}

/* The block product of one pixel pair over `pairs` channel pairs from the bias: ec_gemm16_2x4 on
 * its layout (quads = 1) or ec_gemm16_2x2 on widen()'s (quads = 0) */
void mirror_gemm16(int quads, const uint32_t *w16, const uint32_t *col, int32_t *acc, int32_t pairs, int32_t k4,
                   const int32_t *bias)
{
    if (quads)
        ec_gemm16_2x4(w16, col, acc, pairs, k4, bias);
    else
        ec_gemm16_2x2(w16, col, acc, pairs, k4, bias);
}

/* The outputs of one pixel pair (acc as ec_gemm_2x2 leaves it, n channels): the one-multiply store
 * (store_fast), the per-channel table store (ec_gemm_store2k with rq) and TFLM's requantization */
void mirror_stores(const int32_t *acc, int32_t n, const int32_t *mult, const int8_t *shift, int32_t zp,
                   const int32_t *rq, int8_t *fast, int8_t *table, int8_t *ref)
{
    ec_conv_params_t p;
    memset(&p, 0, sizeof p);
    p.out_c = n;
    p.output_offset = zp;
    p.act_min = -128;
    p.act_max = 127;
    p.multiplier = mult;
    p.shift = shift;
    store_fast(&p, NULL, acc, fast, fast + n, 0, n);
    ec_gemm_store2k(acc, table, table + n, n / 2, rq);
    for (int32_t c = 0; c < n; c++)
        for (int px = 0; px < 2; px++) {
            const int32_t a = acc[(c >> 1) * 4 + (c & 1) + 2 * px];
            ref[px * n + c] = (int8_t)ec_clip_i32(ec_multiply_by_quantized_multiplier(a, mult[c], shift[c]) + zp,
                                                  -128, 127);
        }
}
