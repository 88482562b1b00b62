"""A test firmware for the Helium kernels: random int8 layers, each run through the reference kernel
(ec_kernels.c) and the Helium kernel (kernels/mve/ec_kernels_mve.c) on a Cortex-M55 under QEMU
mps3-an547, outputs compared byte for byte inside the firmware, both timed with SysTick.

Used by tests/test_kernels_mve.py (random layers and the shapes of the MLPerf Tiny models) and
bench/mve_kernels.py (instructions per MAC).  A case is a layer: its parameters as the C
parameter structs, the reference filter (TFLite layout) and the packed one
(edgecomp/backends/c/kernels/packing.py), an input, and how the output is placed: apart from the input,
or in place over it with the row scratch (the planner's in-place rule for row ops).
"""
from __future__ import annotations

import math
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecomp.backends.c.kernels import packing, predicates
from edgecomp.numerics import quantize_multiplier
from edgecomp.resources import templates_dir

GUARD = 64  # bytes after every output that must stay untouched
PAINT = 0x5A


@dataclass
class Case:
    name: str
    op: str  # conv, depthwise, fc, maxpool, avgpool, add
    struct: str  # C type of the parameter block
    fields: dict  # its fields
    arrays: dict = field(default_factory=dict)  # name -> (C type, numpy array)
    macs: int = 0
    in_bytes: int = 0
    out_bytes: int = 0
    row_bytes: int = 0
    work_bytes: int = 0
    inplace: int | None = None  # output offset from the input in a shared buffer (None: apart)
    residual: dict | None = None  # ec_add_params_t fields of a fused residual add
    variant: str = ""  # "3x3": the depthwise fast path ec_depthwise_conv2d_s8_mve3x3


TIES = False  # power-of-two scales and small shifts everywhere: rounding ties on most outputs


def _requant(rng, n: int, acc_std: float, allow_left: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel Q31 multipliers and shifts that map accumulators of this spread to about +-60."""
    if TIES:  # x * 2^30 / 2^31 / 2^s: a tie whenever the low s + 1 bits of x are 10...0
        return np.full(n, 1 << 30, np.int32), rng.integers(-3, 0, size=n).astype(np.int8)
    mult = rng.integers(1 << 30, (1 << 31) - 1, size=n, dtype=np.int64)
    base = math.floor(math.log2(60.0 / max(acc_std, 1.0)))
    shift = base + rng.integers(-1, 2, size=n)
    if not allow_left:
        shift = np.minimum(shift, 0)
    mult[rng.random(n) < 0.1] = 1 << 30  # power-of-two scales: exact ties in the rounding
    return mult.astype(np.int32), shift.astype(np.int8)


def _act(rng, zp: int) -> tuple[int, int]:
    if TIES:
        return -128, 127
    r = rng.random()
    if r < 0.4:
        return -128, 127
    if r < 0.8:
        return max(-128, zp), 127  # relu
    return max(-128, zp), min(127, zp + 70)  # relu6-like


def _add_fields(rng, s1: float, s2: float, so: float) -> dict:
    """TFLite's int8 ADD parameters for these scales (left shift 20)."""
    twice_max = 2 * max(s1, s2)
    m1, e1 = quantize_multiplier(s1 / twice_max)
    m2, e2 = quantize_multiplier(s2 / twice_max)
    mo, eo = quantize_multiplier(twice_max / ((1 << 20) * so))
    zo = int(rng.integers(-20, 20))
    lo, hi = _act(rng, zo)
    return dict(left_shift=20, input1_offset=int(rng.integers(-127, 128)), input2_offset=int(rng.integers(-127, 128)),
                output_offset=zo, input1_multiplier=m1, input1_shift=e1, input2_multiplier=m2, input2_shift=e2,
                output_multiplier=mo, output_shift=eo, act_min=lo, act_max=hi)


def _weights(rng, shape) -> np.ndarray:
    if TIES:  # small sums: most outputs land inside the int8 range
        return rng.integers(-2, 3, size=shape).astype(np.int8)
    w = rng.integers(-127, 128, size=shape).astype(np.int8)
    if rng.random() < 0.3:
        w.reshape(-1)[rng.integers(0, w.size, size=max(1, w.size // 50))] = -128
    return w


def conv_case(rng, name, in_hw, in_c, out_c, kernel, stride=(1, 1), pad=(0, 0, 0, 0), dilation=(1, 1), batches=1,
              residual=False, inplace=False) -> Case:
    (ih, iw), (kh, kw), (sh, sw), (dh, dw) = in_hw, kernel, stride, dilation
    pt, pl, pb, pr = pad
    oh = (ih + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (iw + pl + pr - dw * (kw - 1) - 1) // sw + 1
    k = kh * kw * in_c
    w = _weights(rng, (out_c, kh, kw, in_c))
    bias = rng.integers(-(1 << 14), 1 << 14, size=out_c).astype(np.int32) if not TIES else \
        rng.integers(-60, 60, size=out_c).astype(np.int32)
    zp_in = int(rng.integers(-128, 128))
    zp_out = int(rng.integers(-30, 30))
    mult, shift = _requant(rng, out_c, 75.0 * 70.0 * math.sqrt(k))
    lo, hi = _act(rng, zp_out)
    c = Case(name, "conv", "ec_conv_params_t", dict(
        batches=batches, in_h=ih, in_w=iw, in_c=in_c, out_h=oh, out_w=ow, out_c=out_c, kernel_h=kh, kernel_w=kw,
        stride_h=sh, stride_w=sw, dilation_h=dh, dilation_w=dw, pad_top=pt, pad_left=pl, depth_multiplier=1,
        input_offset=-zp_in, filter_offset=0, output_offset=zp_out, act_min=lo, act_max=hi))
    c.arrays = {"input": ("int8_t", rng.integers(-128, 128, size=batches * ih * iw * in_c).astype(np.int8)),
                "filter": ("int8_t", w.reshape(-1)), "bias": ("int32_t", bias),
                "multiplier": ("int32_t", mult), "shift": ("int8_t", shift),
                "packed": ("int8_t", packing.pack_conv_mve(w, bias, -zp_in, mult, shift))}
    c.macs = batches * oh * ow * out_c * k
    c.in_bytes, c.out_bytes, c.row_bytes = batches * ih * iw * in_c, batches * oh * ow * out_c, ow * out_c
    c.work_bytes = predicates.mve_conv_work_bytes(kh, kw, in_c, any(pad))
    if residual:
        c.residual = _add_fields(rng, 0.02, 0.03, 0.04)
        c.arrays["skip"] = ("int8_t", rng.integers(-128, 128, size=c.out_bytes).astype(np.int8))
    if inplace:
        c.inplace = _shift_limit(oh, iw * in_c, ow * out_c, sh, pt)
    return c


def depthwise_case(rng, name, in_hw, ch, kernel, stride=(1, 1), pad=(0, 0, 0, 0), dilation=(1, 1),
                   residual=False, inplace=False) -> Case:
    c = conv_case(rng, name, in_hw, ch, ch, kernel, stride, pad, dilation, residual=residual)
    kh, kw = kernel
    w = _weights(rng, (1, kh, kw, ch))
    bias = c.arrays["bias"][1]
    mult, shift = _requant(rng, ch, 75.0 * 70.0 * math.sqrt(kh * kw))
    c.op = "depthwise"
    c.arrays.update(filter=("int8_t", w.reshape(-1)), multiplier=("int32_t", mult), shift=("int8_t", shift))
    repack_depthwise(c)
    f = c.fields
    c.macs = f["out_h"] * f["out_w"] * ch * kh * kw
    if inplace:
        c.inplace = _shift_limit(f["out_h"], f["in_w"] * ch, f["out_w"] * ch, f["stride_h"], f["pad_top"])
    return c


def repack_depthwise(c: Case) -> None:
    """The packed filter of a depthwise case for the kernel the generator would choose: the 3x3 fast
    path where predicates.mve_dw3x3_arrays_ok holds (its lane order), else the general kernel."""
    f = c.fields
    kh, kw, ch = f["kernel_h"], f["kernel_w"], f["in_c"]
    w = c.arrays["filter"][1].reshape(1, kh, kw, ch)
    mult, shift = c.arrays["multiplier"][1], c.arrays["shift"][1]
    fast = predicates.mve_dw3x3_arrays_ok(kh, kw, ch, w, shift, c.residual)
    c.variant = "3x3" if fast else ""
    c.work_bytes = predicates.mve_dw3x3_work_bytes(f["in_w"], ch) if fast else predicates.mve_depthwise_work_bytes(ch)
    c.arrays["packed"] = ("int8_t", packing.pack_depthwise_mve(
        w, c.arrays["bias"][1], f["input_offset"], mult, shift,
        packing.MVE_DW3X3_LANES if fast else packing.MVE_DW_LANES))


def fc_case(rng, name, n_in, n_out, batches=1) -> Case:
    w = _weights(rng, (n_out, n_in))
    bias = rng.integers(-(1 << 14), 1 << 14, size=n_out).astype(np.int32) if not TIES else \
        rng.integers(-60, 60, size=n_out).astype(np.int32)
    zp_in, zp_out = int(rng.integers(-128, 128)), int(rng.integers(-30, 30))
    mult, shift = _requant(rng, n_out, 75.0 * 70.0 * math.sqrt(n_in))
    lo, hi = _act(rng, zp_out)
    c = Case(name, "fc", "ec_fc_params_t", dict(
        batches=batches, in_features=n_in, out_features=n_out, input_offset=-zp_in, filter_offset=0,
        output_offset=zp_out, act_min=lo, act_max=hi))
    c.arrays = {"input": ("int8_t", rng.integers(-128, 128, size=batches * n_in).astype(np.int8)),
                "filter": ("int8_t", w.reshape(-1)), "bias": ("int32_t", bias), "multiplier": ("int32_t", mult),
                "shift": ("int8_t", shift), "packed": ("int8_t", packing.pack_fc_mve(w, bias, -zp_in, mult, shift))}
    c.macs, c.in_bytes, c.out_bytes, c.row_bytes = batches * n_in * n_out, batches * n_in, batches * n_out, n_out
    return c


def pool_case(rng, name, op, in_hw, ch, kernel, stride, pad=(0, 0)) -> Case:
    (ih, iw), (kh, kw), (sh, sw), (pt, pl) = in_hw, kernel, stride, pad
    oh, ow = (ih + 2 * pt - kh) // sh + 1, (iw + 2 * pl - kw) // sw + 1
    zp = int(rng.integers(-20, 20))
    lo, hi = _act(rng, zp)
    c = Case(name, op, "ec_pool_params_t", dict(
        batches=1, in_h=ih, in_w=iw, channels=ch, out_h=oh, out_w=ow, kernel_h=kh, kernel_w=kw, stride_h=sh,
        stride_w=sw, pad_top=pt, pad_left=pl, act_min=lo, act_max=hi))
    c.arrays = {"input": ("int8_t", rng.integers(-128, 128, size=ih * iw * ch).astype(np.int8))}
    c.macs = oh * ow * ch * kh * kw  # window taps (no multiplies)
    c.in_bytes, c.out_bytes, c.row_bytes = ih * iw * ch, oh * ow * ch, ow * ch
    return c


def add_case(rng, name, size, inplace=False) -> Case:
    c = Case(name, "add", "ec_add_params_t", _add_fields(rng, *rng.uniform(0.01, 0.1, size=3)))
    c.arrays = {"input": ("int8_t", rng.integers(-128, 128, size=size).astype(np.int8)),
                "other": ("int8_t", rng.integers(-128, 128, size=size).astype(np.int8))}
    c.macs, c.in_bytes, c.out_bytes = size, size, size
    c.inplace = 0 if inplace else None
    return c


def _shift_limit(rows, in_row, out_row, stride, pad_top) -> int:
    """The planner's d* for a row op (memory_plan.row_shift_limit), rounded down to 4 bytes."""
    from edgecomp.passes.memory_plan import row_shift_limit
    d = row_shift_limit(rows, in_row, out_row, stride, pad_top)
    return 0 if d == math.inf else int(d) // 4 * 4


# --------------------------------------------------------------------------- C source
def _c_array(ident: str, ctype: str, a: np.ndarray) -> str:
    vals = ",".join(str(int(v)) for v in np.asarray(a).reshape(-1))
    return f"static const {ctype} {ident}[{max(a.size, 1)}] __attribute__((aligned(16))) = {{{vals}}};\n"


def _calls(c: Case, i: int) -> tuple[str, str]:
    """(reference call, Helium call) writing to `ref` and `out`."""
    a = f"c{i}_"
    skip = f"{a}skip" if "skip" in c.arrays else "NULL"
    if c.op in ("conv", "depthwise"):
        ref_fn, mve_fn = ("ec_conv2d_s8", "ec_conv2d_s8_mve") if c.op == "conv" else \
            ("ec_depthwise_conv2d_s8", "ec_depthwise_conv2d_s8_mve")
        ref = f"{ref_fn}(&{a}p, {a}input, {a}filter, {a}bias, ref, NULL, {skip});"
        mve = f"{mve_fn}(&{a}p, IN, {a}packed, out, ROW, {skip}, work);"
        if c.variant == "3x3":
            mve = f"ec_depthwise_conv2d_s8_mve3x3(&{a}p, IN, {a}packed, out, ROW, work);"
    elif c.op == "fc":
        ref = f"ec_fully_connected_s8(&{a}p, {a}input, {a}filter, {a}bias, ref, NULL);"
        mve = f"ec_fully_connected_s8_mve(&{a}p, IN, {a}packed, out, ROW);"
    elif c.op in ("maxpool", "avgpool"):
        k = "max" if c.op == "maxpool" else "avg"
        ref = f"ec_{k}_pool2d_s8(&{a}p, {a}input, ref, NULL);"
        mve = f"ec_{k}_pool2d_s8_mve(&{a}p, IN, out, ROW);"
    else:
        ref = f"ec_add_s8(&{a}p, {a}input, {a}other, ref, {c.out_bytes});"
        mve = f"ec_add_s8_mve(&{a}p, IN, {a}other, out, {c.out_bytes});"
    return ref, mve


def firmware_source(cases: list[Case]) -> str:
    out_max = max(c.out_bytes for c in cases)
    arena = max(c.in_bytes + c.out_bytes + 2 * GUARD + abs(c.inplace or 0) for c in cases)
    row = max([c.row_bytes for c in cases] + [16])
    work = max([c.work_bytes for c in cases] + [16])
    src = ['#include <stdint.h>\n#include <string.h>\n#include "ec_platform.h"\n#include "ec_kernels.h"\n'
           '#include "ec_kernels_mve.h"\n',
           f"static int8_t ref[{out_max}];\nstatic int8_t arena[{arena}] __attribute__((aligned(16)));\n"
           f"static int8_t row_buf[{row + GUARD}];\nstatic int8_t work[{work + GUARD}];\n",
           r"""
static void report(const char *name, const int8_t *want, const int8_t *got, int32_t n, const int8_t *guard,
                   uint32_t ticks, uint32_t ref_ticks)
{
    int32_t bad = 0, first = -1;
    for (int32_t i = 0; i < n; i++)
        if (want[i] != got[i]) {
            bad++;
            if (first < 0)
                first = i;
        }
    int32_t guard_bad = 0;
    for (int32_t i = 0; guard != NULL && i < """ + str(GUARD) + r"""; i++)
        guard_bad += guard[i] != (int8_t)""" + str(PAINT) + r""";
    ec_puts("@case ");
    ec_puts(name);
    ec_puts(" mismatches ");
    ec_put_u32((uint32_t)bad);
    ec_puts(" first ");
    ec_put_u32((uint32_t)(first < 0 ? 0 : first));
    ec_puts(" want ");
    ec_put_u32((uint32_t)(first < 0 ? 0 : (uint8_t)want[first]));
    ec_puts(" got ");
    ec_put_u32((uint32_t)(first < 0 ? 0 : (uint8_t)got[first]));
    ec_puts(" guard ");
    ec_put_u32((uint32_t)guard_bad);
    ec_puts(" ticks ");
    ec_put_u32(ticks);
    ec_puts(" ref_ticks ");
    ec_put_u32(ref_ticks);
    ec_putc('\n');
#ifdef EC_MVE_DUMP
    for (int32_t i = 0; i < n; i++) {
        ec_put_u32((uint8_t)want[i]);
        ec_putc(' ');
        ec_put_u32((uint8_t)got[i]);
        ec_putc(i % 8 == 7 ? '\n' : ';');
    }
#endif
}
"""]
    body = []
    for i, c in enumerate(cases):
        a = f"c{i}_"
        for name, (ctype, arr) in c.arrays.items():
            src.append(_c_array(a + name, ctype, arr))
        f = dict(c.fields)
        if c.op in ("conv", "depthwise", "fc"):
            f["multiplier"], f["shift"] = a + "multiplier", a + "shift"
        if c.residual is not None:
            src.append(f"static const ec_add_params_t {a}res = {{" +
                       ", ".join(f".{k} = {v}" for k, v in c.residual.items()) + "};\n")
            f["residual"] = "&" + a + "res"
        src.append(f"static const {c.struct} {a}p = {{" + ", ".join(f".{k} = {v}" for k, v in f.items()) + "};\n")
        ref_call, mve_call = _calls(c, i)
        if c.inplace is None:  # input and output apart: the input stays in flash, the output after a guard
            place = (f"    const int8_t *IN = {a}input;\n    int8_t *out = arena;\n    int8_t *ROW = NULL;\n"
                     f"    int8_t *guard = arena + {c.out_bytes};\n")
        else:  # the input copied into the arena, the output at its planned offset, through the row scratch
            lo = min(0, c.inplace)
            place = (f"    int8_t *IN = arena + {-lo};\n    memcpy(IN, {a}input, {c.in_bytes});\n"
                     f"    int8_t *out = IN + ({c.inplace});\n"
                     f"    int8_t *ROW = {'row_buf' if c.op != 'add' else 'NULL'};\n"
                     f"    int8_t *guard = out + {c.out_bytes} > IN + {c.in_bytes} ? out + {c.out_bytes} : "
                     f"IN + {c.in_bytes};\n")
        body.append(f"static void case{i}(void)\n{{\n    memset(arena, {PAINT}, sizeof arena);\n"
                    f"    memset(work, {PAINT}, sizeof work);\n{place}"
                    f"    uint32_t t0 = ec_timer_now();\n    {ref_call}\n    uint32_t t1 = ec_timer_now();\n"
                    f"    {mve_call}\n    uint32_t t2 = ec_timer_now();\n"
                    f"    (void)IN;\n    (void)ROW;\n"
                    f'    report("{c.name}", ref, out, {c.out_bytes}, guard, t2 - t1, t1 - t0);\n}}\n')
    main = ("int main(void)\n{\n    ec_timer_init();\n    (void)row_buf;\n" + "".join(f"    case{i}();\n" for i in range(len(cases)))
            + "    return 0;\n}\n")
    return "".join(src) + "".join(body) + main


# --------------------------------------------------------------------------- build and run
@dataclass
class Result:
    name: str
    mismatches: int
    guard: int
    instructions: float
    ref_instructions: float
    detail: str


def run_cases(cases: list[Case], work: Path, timeout: float = 300.0) -> list[Result]:
    """Build one firmware for cortex-m55 with these cases, run it under QEMU, parse its lines."""
    from edgecomp.backends.c.kernels.catalogue import bundle_names, write_kernel_files
    from edgecomp.backends.cortex_m import build, write_firmware
    from edgecomp.backends.emulator import qemu_command
    from edgecomp.targets import load_target

    target = load_target("cortex-m55")
    work.mkdir(parents=True, exist_ok=True)
    kernels = templates_dir() / "cortex_m" / "kernels"
    write_kernel_files(work, bundle_names("reference"))  # the reference kernels as a bundle has them
    for f in ("mve/ec_kernels_mve.c", "mve/ec_kernels_mve.h"):
        shutil.copyfile(kernels / f, work / Path(f).name)
    (work / "model.h").write_text("/* no model */\n")
    write_firmware(work, target, "mve_kernels", probe=False)  # its Makefile lists the sources now present
    (work / "main.c").write_text(firmware_source(cases))  # (after the shell: its harness is replaced)
    elf = build(work, target).elf
    p = subprocess.run(qemu_command(target, elf), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=timeout, cwd=work)
    if p.returncode != 0:
        raise AssertionError(f"the kernel firmware failed (status {p.returncode}):\n{p.stdout[-2000:]}")
    per_tick = target.insns_per_systick
    results = []
    for line in p.stdout.splitlines():
        m = re.match(r"@case (\S+) mismatches (\d+) first (\d+) want (\d+) got (\d+) guard (\d+) ticks (\d+) "
                     r"ref_ticks (\d+)", line)
        if m:
            results.append(Result(m[1], int(m[2]), int(m[6]), int(m[7]) * per_tick, int(m[8]) * per_tick,
                                  f"first difference at byte {m[3]}: want {m[4]}, got {m[5]} (as uint8)"))
    if len(results) != len(cases):
        raise AssertionError(f"{len(results)} of {len(cases)} cases reported:\n{p.stdout[-2000:]}")
    return results


# --------------------------------------------------------------------------- MLPerf Tiny layers
def _clamp_range(act) -> tuple[int, int]:
    lo, hi = act if act is not None else (None, None)
    return (-128 if lo is None else max(int(lo), -128)), (127 if hi is None else min(int(hi), 127))


def model_cases(path: Path, rng, prefix: str, inplace: bool = False, distinct: bool = True) -> list[Case]:
    """One case per distinct conv / depthwise / fully connected / pool layer of an int8 .tflite model:
    its real weights, bias and requantization, a random input (and a random skip tensor for a fused
    residual add).  ``inplace``: depthwise layers in place over their input, as the planner puts them;
    ``distinct=False``: every such layer, also when an earlier one has the same shapes."""
    from edgecomp.frontends.tflite import load_tflite
    from edgecomp.passes.fuse_residual import fuse_residual_adds
    from edgecomp.passes.requantize import requantize

    g = fuse_residual_adds(requantize(load_tflite(path)))
    cases, seen = [], set()
    for node in g.nodes:
        x, y = g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]
        key = (node.op, x.shape, y.shape, tuple(g.tensors[node.inputs[1]].shape) if len(node.inputs) > 1 else (),
               str(node.attrs.get("stride")), str(node.attrs.get("pad")), "residual" in node.attrs)
        if node.op not in ("conv2d", "depthwise_conv2d", "fully_connected", "avg_pool2d", "max_pool2d") or \
                (distinct and key in seen):
            continue
        seen.add(key)
        name = f"{prefix}_{node.name}"
        if node.op in ("avg_pool2d", "max_pool2d"):
            (kh, kw), (sh, sw) = node.attrs["kernel"], node.attrs.get("stride", (1, 1))
            pt, pl = node.attrs.get("pad", (0, 0, 0, 0))[:2]
            c = pool_case(rng, name, "avgpool" if node.op == "avg_pool2d" else "maxpool", x.shape[1:3], x.shape[3],
                          (kh, kw), (sh, sw), (pt, pl))
            c.fields["act_min"], c.fields["act_max"] = _clamp_range(node.attrs.get("act"))
            cases.append(c)
            continue
        q = node.attrs["q"]
        w = g.tensors[node.inputs[1]].data.astype(np.int8)
        bias = g.tensors[node.inputs[2]].data.astype(np.int32).reshape(-1) if len(node.inputs) > 2 else \
            np.zeros(y.shape[-1], np.int32)
        n = y.shape[-1]
        mult = np.broadcast_to(np.asarray(q["multiplier"], np.int64), (n,)).astype(np.int32)
        shift = np.broadcast_to(np.asarray(q["shift"], np.int64), (n,)).astype(np.int8)
        lo, hi = _clamp_range(node.attrs.get("act"))
        if node.op == "fully_connected":
            c = fc_case(rng, name, w.shape[1], w.shape[0], batches=x.size // w.shape[1])
            c.arrays.update(filter=("int8_t", w.reshape(-1)),
                            packed=("int8_t", packing.pack_fc_mve(w, bias, q["input_offset"], mult, shift)))
        else:
            a = node.attrs
            kernel = (w.shape[1], w.shape[2])
            if node.op == "conv2d":
                c = conv_case(rng, name, x.shape[1:3], x.shape[3], n, kernel, a.get("stride", (1, 1)),
                              a.get("pad", (0, 0, 0, 0)), a.get("dilation", (1, 1)), residual="residual" in a)
                c.arrays["packed"] = ("int8_t", packing.pack_conv_mve(w, bias, q["input_offset"], mult, shift))
            else:
                c = depthwise_case(rng, name, x.shape[1:3], n, kernel, a.get("stride", (1, 1)),
                                   a.get("pad", (0, 0, 0, 0)), a.get("dilation", (1, 1)), inplace=inplace)
            c.arrays["filter"] = ("int8_t", w.reshape(-1))
            if "residual" in a:
                rq = a["residual"]["q"]
                rlo, rhi = _clamp_range(a["residual"].get("act"))
                c.residual = {k: int(rq[k]) for k in ("left_shift", "input1_offset", "input2_offset", "output_offset",
                                                     "input1_multiplier", "input1_shift", "input2_multiplier",
                                                     "input2_shift", "output_multiplier", "output_shift")}
                c.residual.update(act_min=rlo, act_max=rhi)
        c.fields.update(input_offset=int(q["input_offset"]), output_offset=int(q["output_offset"]), act_min=lo,
                        act_max=hi)
        c.arrays.update(bias=("int32_t", bias), multiplier=("int32_t", mult), shift=("int8_t", shift))
        if c.op == "depthwise":  # (its residual add known now)
            repack_depthwise(c)
        cases.append(c)
    return cases


def run_in_batches(cases: list[Case], work: Path, flash_budget: int = 300_000) -> list[Result]:
    """run_cases on as many firmwares as the cases' constant bytes need (the M55's ITCM is 512 KB)."""
    batches, cur, size = [], [], 0
    for c in cases:
        n = sum(a.nbytes for _, a in c.arrays.values())
        if cur and size + n > flash_budget:
            batches.append(cur)
            cur, size = [], 0
        cur.append(c)
        size += n
    if cur:
        batches.append(cur)
    out = []
    for i, b in enumerate(batches):
        out += run_cases(b, work / f"fw{i}")
    return out
