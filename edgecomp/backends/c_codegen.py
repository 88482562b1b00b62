"""C code generator: ir.Graph -> model.h, model.c, weights.c, ec_kernels.{h,c}.

The generated C is the "C bundle API" of docs/internals.md.  ``model.c`` holds
one readable call per layer (with a comment giving op, shapes and
quantization), the const parameter block of every layer and the arena with
tensor offsets from :mod:`edgecomp.passes.memory_plan`; ``weights.c`` holds the
weights, biases and requantization multipliers/shifts as const arrays (flash);
``ec_kernels.{h,c}`` are the reference kernels, copied from
``templates/cortex_m/kernels``.

Every name from the model goes through :mod:`edgecomp.sanitize` (identifiers,
comments, string literals), so hostile names compile and mean the same.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from .. import ir
from ..errors import EdgecompError, ModelError, UnsupportedError
from ..passes.fuse import fuse_residual_adds
from ..passes.memory_plan import MemoryPlan, plan_memory, reads
from ..resources import templates_dir
from ..sanitize import c_comment, c_comment_text, c_identifier, c_string
from . import c_codegen_s16, kernel_files as kfiles

KERNEL_FILES = kfiles.names("reference")
# kernels for cores with the DSP extension: copied only when a layer uses them
DSP_KERNEL_FILES = kfiles.names("dsp")
GEMM_KERNEL_FILES = kfiles.names("gemm")
SIMD_FILES = kfiles.names("simd")  # shared by the DSP and matrix-product kernels
KERNEL_CHOICES = ("auto", "reference", "dsp")
GENERATED_FILES = ("model.h", "model.c", "weights.c") + KERNEL_FILES
# int16 kernels: copied only when the graph has int16 layers (backends/c_codegen_s16.py)
GENERATED_FILES_S16 = c_codegen_s16.S16_FILES


@dataclass
class CodegenInfo:
    arena_bytes: int  # the static activation arena (inputs, outputs, scratch rows included)
    scratch_bytes: int  # largest row scratch buffer (inside the arena)
    static_bytes: int  # other RAM of the generated code (the probe's tick array)
    weight_bytes: int  # const data in weights.c (flash)
    layers: list[dict[str, Any]]  # [{name, op, out_shape, macs}]
    offsets: dict[str, int]  # tensor name -> arena offset
    files: list[str] = field(default_factory=list)
    plan: MemoryPlan | None = None


# --------------------------------------------------------------------------- C literals
def c_float(v: float) -> str:
    v = float(np.float32(v))
    if math.isnan(v):
        raise ModelError("a NaN constant", fix="Check the model's weights and quantization")
    if math.isinf(v):
        return "INFINITY" if v > 0 else "-INFINITY"
    s = f"{v:.9g}"
    if "e" not in s and "." not in s:
        s += ".0"
    return s + "f"


def c_int(v: int) -> str:
    v = int(v)
    if v == -(1 << 31):
        return "INT32_MIN"
    return str(v)


def _array_body(values: np.ndarray, fmt, per_line: int) -> str:
    flat = [fmt(x) for x in values.reshape(-1).tolist()]
    lines = [", ".join(flat[i:i + per_line]) for i in range(0, len(flat), per_line)]
    return "\n".join("    " + ln + "," for ln in lines)


_MATH = """acos asin atan atan2 cos sin tan cosh sinh tanh exp log log10 pow sqrt ceil fabs floor fmod frexp
ldexp modf acosh asinh atanh cbrt copysign erf erfc exp2 expm1 fdim fma fmax fmin hypot ilogb lgamma llrint
llround log1p log2 logb lrint lround nan nearbyint nextafter nexttoward remainder remquo rint round scalbln
scalbn tgamma trunc""".split()
#: Names the generated C uses or that <math.h>, <stdint.h>, <string.h>, <stddef.h> may define as
#: functions or macros: a model name equal to one of them gets a suffix.
RESERVED = frozenset(_MATH + [m + "f" for m in _MATH] + [m + "l" for m in _MATH] + """
INFINITY NAN HUGE_VAL HUGE_VALF HUGE_VALL FP_INFINITE FP_NAN FP_NORMAL FP_SUBNORMAL FP_ZERO FP_FAST_FMA
FP_ILOGB0 FP_ILOGBNAN MATH_ERRNO MATH_ERREXCEPT math_errhandling fpclassify isfinite isinf isnan isnormal
signbit isgreater isgreaterequal isless islessequal islessgreater isunordered float_t double_t
M_E M_LOG2E M_LOG10E M_LN2 M_LN10 M_PI M_PI_2 M_PI_4 M_1_PI M_2_PI M_2_SQRTPI M_SQRT2 M_SQRT1_2
INT8_MIN INT8_MAX INT16_MIN INT16_MAX INT32_MIN INT32_MAX INT64_MIN INT64_MAX UINT8_MAX UINT16_MAX UINT32_MAX
UINT64_MAX INTPTR_MIN INTPTR_MAX UINTPTR_MAX SIZE_MAX PTRDIFF_MIN PTRDIFF_MAX INTMAX_MIN INTMAX_MAX UINTMAX_MAX
INT8_C INT16_C INT32_C INT64_C UINT8_C UINT16_C UINT32_C UINT64_C INTMAX_C UINTMAX_C intmax_t uintmax_t
wchar_t wint_t max_align_t memcmp memchr strcpy strncpy strcat strncat strcmp strncmp strchr strrchr strstr
strtok strerror strspn strcspn strpbrk strcoll strxfrm
arena LAYER_START LAYER_DONE layer_start layer_end x q y in out status
EC_MODEL_H EC_KERNELS_H EC_PLATFORM_H EC_PROBE EC_DEBUG EC_HOST
""".split())

CTYPE = {"int8": "int8_t", "int16": "int16_t", "int32": "int32_t", "float32": "float"}


def _fmt_q(t: ir.Tensor) -> str:
    if t.quant is None:
        return t.dtype
    q = t.quant
    if q.scale.size > 1:
        return f"{t.dtype} per-channel ({q.scale.size} scales)"
    return f"{t.dtype} scale {float(q.scale[0]):.6g} zp {int(q.zero_point[0])}"


def _shape(s) -> str:
    return "[" + ",".join(str(d) for d in s) + "]"


# --------------------------------------------------------------------------- generator
class _Gen:
    def __init__(self, graph: ir.Graph, plan: MemoryPlan, name: str, dsp: bool = False,
                 gemm: dict[str, "GemmLayout"] | None = None, fused: dict[str, int] | None = None,
                 speed: bool = False):
        self.g = graph
        self.speed = speed  # --optimize speed: int16 weights in flash where a kernel reads them
        self.fused = fused or {}  # row fusion: {producer A: buffer bytes}, A computed inside the next node
        # the consumer B of each fused producer A: {B: A}
        self.fused_b = {graph.nodes[i + 1].name: n.name for i, n in enumerate(graph.nodes) if n.name in self.fused}
        self.fused_a: dict[str, Any] = {}  # A's row structs, for the consumer's loop
        self.dsp = dsp  # int8 conv / fully connected through ec_kernels_dsp where possible
        self.used_dsp = False
        self.gemm = gemm or {}  # int8 convolutions through ec_kernels_gemm (their layouts)
        self.used_gemm = False
        # ec_gemm16_2x2_1 (one pass, kbp <= 64) where a layer may take it: in a model whose widened
        # layers all may, or with the weights in flash (--optimize speed); otherwise one function
        # serves all (its 750 bytes of flash are worth more than 6 instructions a block)
        wide = [x for x in self.gemm.values() if x.wtile]
        self.gemm16_one = all(x.kbp <= 64 for x in wide) or any(x.wflash for x in wide)
        self.plan = plan
        self.name = name
        self.taken: set[str] = set(RESERVED)
        self.arrays: list[str] = []  # definitions for weights.c
        self.externs: list[str] = []  # declarations for model.c
        self.params: list[str] = []
        self.code: list[str] = []
        self.tensor_id: dict[str, str] = {}
        self.tensor_macros: list[str] = []
        self.weight_bytes = 0
        self.layers: list[dict[str, Any]] = []
        self.kernel_notes: list[str] = []  # details of the current layer's kernel (kernel_label)

    # -- names
    def ident(self, text: str) -> str:
        # TFLite joins fused names with ';': the first part is the readable one
        return c_identifier(str(text).split(";")[0] or str(text), self.taken)

    def tensor(self, name: str) -> str:
        if name not in self.tensor_id:
            t = self.g.tensors[name]
            if t.dtype not in ("int8", "int16", "float32"):
                raise UnsupportedError(f"{t.dtype} activation {name!r}", where=f"tensor {name!r}",
                                       fix="Use an int8, int16 or float32 model")
            ident = self.ident(name)
            self.tensor_id[name] = ident
            off = self.plan.offsets[name]
            self.tensor_macros.append(
                f"#define {ident} (({CTYPE[t.dtype]} *)(arena.bytes + {off})) "
                f"{c_comment(f'{name}: {_shape(t.shape)} {_fmt_q(t)}, {t.nbytes} bytes at {off}')}")
        return self.tensor_id[name]

    def const_array(self, base: str, suffix: str, data: np.ndarray, ctype: str, note: str,
                    align: int = 0) -> str:
        ident = self.ident(f"{base}_{suffix}")
        data = np.asarray(data)
        n = max(int(data.size), 1)
        if ctype == "float":
            body = _array_body(data.astype(np.float32), c_float, 8)
            nbytes = 4 * n
        else:
            body = _array_body(data.astype(np.int64), c_int, 16 if ctype == "int8_t" else 8)
            nbytes = {"int8_t": 1, "int16_t": 2, "uint16_t": 2, "int32_t": 4}[ctype] * n
        if data.size == 0:
            body = "    0,"
        attr = f" __attribute__((aligned({align})))" if align else ""
        self.arrays.append(f"{c_comment(note)}\nconst {ctype} {ident}[{n}]{attr} = {{\n{body}\n}};")
        self.externs.append(f"extern const {ctype} {ident}[{n}];")
        self.weight_bytes += nbytes
        return ident

    # -- helpers
    def _const(self, node: ir.Node, idx: int, suffix: str, want: str) -> str | None:
        t = self._const_tensor(node, idx, suffix, want)
        if t is None:
            return None
        return self.const_array(self.ident_base, suffix, t.data, want,
                                f"{node.name}: {suffix} {t.name} {_shape(t.shape)} {_fmt_q(t)}")

    def _const_tensor(self, node: ir.Node, idx: int, suffix: str, want: str) -> ir.Tensor | None:
        """A node's constant input ``idx`` of C type ``want`` (clear errors otherwise), or None."""
        if len(node.inputs) <= idx:
            return None
        t = self.g.tensors[node.inputs[idx]]
        if not t.is_const:
            raise UnsupportedError(f"non-constant {suffix} {t.name!r}", where=f"node {node.name!r}",
                                   fix="Freeze the weights into the model")
        if want == "float" and t.dtype != "float32" or want == "int8_t" and t.dtype != "int8" \
                or want == "int32_t" and t.dtype != "int32":
            raise UnsupportedError(f"{suffix} {t.name!r} is {t.dtype}", where=f"node {node.name!r}",
                                   fix="Quantize the model fully to int8 (int32 biases) or keep it float32")
        return t

    def _dsp_bias(self, node: ir.Node, q: dict, n_out: int, pad_to: int = 0, live=None) -> str | None:
        """The folded bias of a DSP-kernel layer (bias + input_offset * sum(w)), or None: use the reference."""
        if not self.dsp or int(q["filter_offset"]) != 0:
            return None
        w = self.g.tensors[node.inputs[1]].data.astype(np.int64)
        wsum = w.reshape(w.shape[0], -1).sum(axis=1)
        if len(node.inputs) > 2:
            b = self.g.tensors[node.inputs[2]]
            if not b.is_const or b.dtype != "int32":
                return None
            bias = b.data.astype(np.int64).reshape(-1)
            name = b.name
        else:
            bias, name = np.zeros(n_out, np.int64), "(none)"
        folded = bias + int(q["input_offset"]) * wsum
        folded = ((folded + (1 << 31)) % (1 << 32)) - (1 << 31)  # int32 wrap-around, as the sums wrap
        if live is not None:  # the computed channels only (gemm_live)
            folded = folded[live]
        if pad_to > len(folded):
            folded = np.concatenate([folded, np.zeros(pad_to - len(folded), np.int64)])
        self.used_dsp = True
        return self.const_array(self.ident_base, "bias", folded, "int32_t",
                                f"{node.name}: bias {name} + input_offset * sum(filter), for the DSP kernel")

    def _act(self, node: ir.Node, out: ir.Tensor, act=None) -> tuple[str, str, str, str]:
        act = node.attrs.get("act") if act is None else act
        if out.dtype == "float32":
            lo, hi = act if act is not None else (-math.inf, math.inf)
            return "0", "0", c_float(lo), c_float(hi)
        lo, hi = act if act is not None else (-128, 127)
        lo = -128 if lo is None else max(int(lo), -128)
        hi = 127 if hi is None else min(int(hi), 127)
        return str(lo), str(hi), "0.0f", "0.0f"

    def _struct(self, ctype: str, ident: str, fields: list[tuple[str, str]], comment: str) -> None:
        body = "\n".join(f"    .{k} = {v}," for k, v in fields)
        self.params.append(f"{comment}\nstatic const {ctype} {ident} = {{\n{body}\n}};")

    def _q(self, node: ir.Node) -> dict:
        q = node.attrs.get("q")
        if q is None:
            raise ModelError("int8 node without requantization parameters", where=f"node {node.name!r}",
                             fix="Run edgecomp.passes.requantize first")
        return q

    def _mult_shift(self, node: ir.Node, n: int, live=None) -> tuple[str, str]:
        q = self._q(node)
        m = np.broadcast_to(np.asarray(q["multiplier"], dtype=np.int64), (n,))
        s = np.broadcast_to(np.asarray(q["shift"], dtype=np.int64), (n,))
        if live is not None:  # the computed channels only (gemm_live)
            m, s = m[live], s[live]
        mi = self.const_array(self.ident_base, "multiplier", m, "int32_t",
                              f"{node.name}: Q31 requantization multipliers")
        if s.min() < -128 or s.max() > 127:  # TFLite shifts are within [-31, 30]
            raise UnsupportedError(f"requantization shift out of range ({int(s.min())}..{int(s.max())})",
                                   where=f"node {node.name!r}", fix="Check the model's quantization scales")
        si = self.const_array(self.ident_base, "shift", s, "int8_t",
                              f"{node.name}: requantization shifts (> 0 is left)")
        return mi, si

    def _add_fields(self, q: dict | None, node: ir.Node, out: ir.Tensor, act) -> list[tuple[str, str]]:
        lo, hi, flo, fhi = self._act(node, out, act)
        f: list[tuple[str, str]] = []
        if q is not None:
            for k in ("left_shift", "input1_offset", "input2_offset", "output_offset", "input1_multiplier",
                      "input1_shift", "input2_multiplier", "input2_shift", "output_multiplier", "output_shift"):
                f.append((k, c_int(q[k])))
        return f + [("act_min", lo), ("act_max", hi), ("act_min_f", flo), ("act_max_f", fhi)]

    # -- layers
    def layer(self, index: int, node: ir.Node) -> None:
        g = self.g
        out = g.tensors[node.outputs[0]]
        x = g.tensors[node.inputs[0]] if node.inputs else None
        base = self.ident(node.name)
        self.ident_base = base
        ins = [t for t in reads(node) if not g.tensors[t].is_const]
        head = [f"{index} {node.name}: {node.op}"]
        # tensors by their C names here; the #defines above carry the full model names
        head.append("  " + ", ".join(f"{self.tensor(t)} {_shape(g.tensors[t].shape)} {_fmt_q(g.tensors[t])}"
                                     for t in ins)
                    + f" -> {self.tensor(out.name)} {_shape(out.shape)} {_fmt_q(out)}")
        s8 = out.dtype == "int8"
        if s8 and x is not None and x.dtype not in ("int8", "float32"):
            raise UnsupportedError(f"{x.dtype} input", where=f"node {node.name!r}", fix="Use an int8 model")
        macs = ir.macs(g, node)
        scratch = self.plan.scratch.get(node.name)
        row = "NULL"
        if scratch is not None:
            row = f"({CTYPE[out.dtype]} *)(arena.bytes + {scratch[0]})"
            head.append(f"  in place: output at input {self.plan.offsets[out.name] - self.plan.offsets[x.name]:+d} "
                        f"bytes, rows through the {scratch[1]}-byte scratch row at {scratch[0]}")
        call: str
        op = node.op
        s16_call = c_codegen_s16.layer_call(self, node, x, out, head, row)
        if s16_call is not None:
            call = s16_call
        elif op in ("conv2d", "depthwise_conv2d"):
            call = self._conv(node, x, out, head, row)
        elif op == "fully_connected":
            call = self._fc(node, x, out, head, row)
        elif op == "add":
            b = g.tensors[node.inputs[1]]
            if b.shape != x.shape or x.size != out.size:
                raise UnsupportedError("add with broadcasting", where=f"node {node.name!r}",
                                       fix="Give both inputs the same shape")
            q = self._q(node) if s8 else None
            self._struct("ec_add_params_t", base, self._add_fields(q, node, out, None), c_comment(f"{node.name}: add"))
            k = "ec_add_s8" if s8 else "ec_add_f32"
            call = f"{k}(&{base}, {self.tensor(x.name)}, {self.tensor(b.name)}, {self.tensor(out.name)}, {out.size});"
        elif op in ("max_pool2d", "avg_pool2d"):
            call = self._pool(node, x, out, head, row)
        elif op == "softmax":
            depth = out.shape[-1]
            if s8:
                q = self._q(node)
                if x.dtype != "int8":
                    raise UnsupportedError("softmax other than int8 -> int8", where=f"node {node.name!r}")
                fields = [("rows", str(out.size // depth)), ("depth", str(depth)),
                          ("input_multiplier", c_int(q["input_multiplier"])),
                          ("input_left_shift", c_int(q["input_left_shift"])), ("diff_min", c_int(q["diff_min"])),
                          ("beta", "0.0f")]
            else:
                fields = [("rows", str(out.size // depth)), ("depth", str(depth)),
                          ("beta", c_float(node.attrs.get("beta", 1.0)))]
            head.append(f"  beta {node.attrs.get('beta', 1.0)}")
            self._struct("ec_softmax_params_t", base, fields, c_comment(f"{node.name}: softmax"))
            k = "ec_softmax_s8" if s8 else "ec_softmax_f32"
            call = f"{k}(&{base}, {self.tensor(x.name)}, {self.tensor(out.name)});"
        elif op == "reshape":
            if self.plan.offsets[x.name] != self.plan.offsets[out.name]:
                raise AssertionError("reshape is planned as an alias")
            head.append("  an alias of its input: no code")
            call = f"/* {self.tensor(out.name)} is {self.tensor(x.name)} */"
        elif op == "concat":
            call = self._concat(node, out)
        elif op == "quantize":
            if x.dtype == "float32" and s8:
                qo = out.quant
                call = (f"ec_quantize_f32_s8({self.tensor(x.name)}, {self.tensor(out.name)}, {out.size}, "
                        f"{c_float(qo.scale[0])}, {int(qo.zero_point[0])});")
            elif x.dtype == "int8" and s8:
                q = self._q(node)
                call = (f"ec_requantize_s8({self.tensor(x.name)}, {self.tensor(out.name)}, {out.size}, "
                        f"{c_int(q['input_offset'])}, {c_int(q['multiplier'])}, {c_int(q['shift'])}, "
                        f"{c_int(q['output_offset'])});")
            else:
                raise UnsupportedError(f"quantize {x.dtype} -> {out.dtype}", where=f"node {node.name!r}",
                                       fix="Quantize float32 to int8 or requantize int8 to int8")
        elif op == "dequantize":
            if x.dtype != "int8" or out.dtype != "float32":
                raise UnsupportedError(f"dequantize {x.dtype} -> {out.dtype}", where=f"node {node.name!r}")
            qi = x.quant
            call = (f"ec_dequantize_s8_f32({self.tensor(x.name)}, {self.tensor(out.name)}, {out.size}, "
                    f"{c_float(qi.scale[0])}, {int(qi.zero_point[0])});")
        elif op == "clamp":
            lo, hi, flo, fhi = self._act(node, out)
            call = (f"ec_clamp_s8({self.tensor(x.name)}, {self.tensor(out.name)}, {out.size}, {lo}, {hi});" if s8
                    else f"ec_clamp_f32({self.tensor(x.name)}, {self.tensor(out.name)}, {out.size}, {flo}, {fhi});")
        else:
            raise UnsupportedError(f"op {op!r} in the C backend", where=f"node {node.name!r}")
        if macs:
            head.append(f"  {macs} MACs")
        comment = "\n".join(f"    {c_comment(h.strip() if i else h)}" for i, h in enumerate(head))
        self.code.append(f"{comment}\n    {call}\n    LAYER_DONE({index});")
        self.layers.append({"name": node.name, "op": node.op, "out_shape": list(out.shape), "macs": int(macs),
                            "kernel": kernel_label(call, self.kernel_notes)})
        self.kernel_notes = []

    def _conv(self, node, x, out, head, row) -> str:
        a = node.attrs
        if "hybrid" in a:
            raise UnsupportedError("hybrid (float activations, int8 weights) convolution", where=f"node {node.name!r}",
                                   fix="Quantize the model fully to int8 or keep it float32")
        w = self.g.tensors[node.inputs[1]]
        if len(x.shape) != 4 or len(out.shape) != 4 or len(w.shape) != 4:
            raise ModelError("convolution tensors must be 4-D NHWC", where=f"node {node.name!r}")
        s8 = out.dtype == "int8"
        dw = node.op == "depthwise_conv2d"
        kh, kw = w.shape[1], w.shape[2]
        mult = int(a.get("depth_multiplier", 1)) if dw else 1
        if (dw and w.shape[3] != x.shape[3] * mult) or (not dw and w.shape[3] != x.shape[3]) \
                or (w.shape[0 if not dw else 3] != out.shape[3]):
            raise ModelError(f"weights {_shape(w.shape)} do not match input {_shape(x.shape)} and output "
                             f"{_shape(out.shape)}", where=f"node {node.name!r}")
        sh, sw = a.get("stride", (1, 1))
        dh, dwl = a.get("dilation", (1, 1))
        pt, pl, pb, pr = a.get("pad", (0, 0, 0, 0))
        lay = self.gemm.get(node.name) if s8 and not dw else None
        live = gemm_live(self.g, node) if lay is not None else None
        wflash = "NULL"
        if lay is not None:
            wl = w.data if live is None else w.data[live]
            note = (f"{node.name}: filter {w.name} {_shape(w.shape)} {_fmt_q(w)}, packed for ec_kernels_gemm "
                    f"(channel pairs, 4 taps at a time, {lay.nb} block(s) of {lay.kbp})"
                    + ("" if live is None else f", the {len(live)} channels with non-zero weights"))
            if lay.wflash:
                filt = "NULL"
                wflash = "(const uint32_t *)" + self.const_array(
                    self.ident_base, "filter_wide", widen_gemm_weights(pack_gemm_weights(wl, lay)), "int16_t",
                    note + ", widened to int16 (--optimize speed)", align=8)
            else:
                filt = self.const_array(self.ident_base, "filter_packed", pack_gemm_weights(wl, lay), "int8_t",
                                        note, align=8)
        else:
            filt = self._const(node, 1, "filter", "int8_t" if s8 else "float")
        n_oc = out.shape[3] if live is None else len(live)  # the channels the kernel computes
        dsp_bias = self._dsp_bias(node, self._q(node), out.shape[3], pad_to=2 * ((n_oc + 1) // 2) if lay else 0,
                                  live=live) if s8 and not dw else None
        bias = dsp_bias or self._const(node, 2, "bias", "int32_t" if s8 else "float") or "NULL"
        res = a.get("residual")
        lo, hi, flo, fhi = self._act(node, out)  # the conv's own clamp (before a fused residual add)
        fields = [("batches", x.shape[0]), ("in_h", x.shape[1]), ("in_w", x.shape[2]), ("in_c", x.shape[3]),
                  ("out_h", out.shape[1]), ("out_w", out.shape[2]), ("out_c", out.shape[3]),
                  ("kernel_h", kh), ("kernel_w", kw), ("stride_h", sh), ("stride_w", sw),
                  ("dilation_h", dh), ("dilation_w", dwl), ("pad_top", pt), ("pad_left", pl),
                  ("depth_multiplier", mult)]
        head.append(f"  kernel {kh}x{kw}, stride {sh}x{sw}, dilation {dh}x{dwl}, pad t{pt} l{pl} b{pb} r{pr}"
                    + (f", depth multiplier {mult}" if dw else "") + f", act [{lo if s8 else flo}, {hi if s8 else fhi}]")
        if s8:
            q = self._q(node)
            mi, si = self._mult_shift(node, out.shape[3], live=live if dsp_bias else None)
            fields += [("input_offset", c_int(q["input_offset"])), ("filter_offset", c_int(q["filter_offset"])),
                       ("output_offset", c_int(q["output_offset"]))]
        fields += [("act_min", lo), ("act_max", hi), ("act_min_f", flo), ("act_max_f", fhi)]
        if s8:
            fields += [("multiplier", mi), ("shift", si)]
        skip = "NULL"
        if res:
            rq = res.get("q") if s8 else None
            if s8 and rq is None:
                raise ModelError("fused residual add without parameters", where=f"node {node.name!r}")
            rid = self.ident(f"{node.name}_residual")
            self._struct("ec_add_params_t", rid, self._add_fields(rq, node, out, res.get("act")),
                         c_comment(f"{node.name}: fused residual add of {self.tensor(res['tensor'])}"))
            fields.append(("residual", f"&{rid}"))
            skip = self.tensor(res["tensor"])
            head.append(f"  + residual add of {self.tensor(res['tensor'])} (fused{', from ' + res['add'] if res.get('add') else ''})")
        node_ident = self.ident_base
        conv_fields = [(k, str(v)) for k, v in fields]
        fused = lay is not None and dsp_bias and (node.name in self.fused or node.name in self.fused_b)
        if not fused:  # a fused layer's calls take per-row variants (_row_fusion)
            self._struct("ec_conv_params_t", node_ident, conv_fields, c_comment(f"{node.name}: {node.op}"))
        k = ("ec_depthwise_conv2d_" if dw else "ec_conv2d_") + ("s8" if s8 else "f32")
        if lay is not None and dsp_bias:
            self.used_gemm = True
            ws_off, ws_bytes = self.plan.workspace[node.name]
            direct = 0
            if row != "NULL" and kh == 1 and kw == 1 and (sh, sw) == (1, 1) and (pt, pl, pb, pr) == (0, 0, 0, 0) \
                    and x.shape[0] == 1 and x.shape[3] >= out.shape[3]:
                d = self.plan.offsets[out.name] - self.plan.offsets[x.name]
                direct = int(d <= 2 * (x.shape[3] - out.shape[3]))
            assert row == "NULL" or not _tiled(self.g, node.name, lay), "a tiled layer must not run in place"
            fast = int(gemm_fast_requant(self._q(node), res.get("q") if res else None, out.shape[3], live)
                       and gemm_acc_ok(self.g, node, live))
            dead = [("n_live", "0"), ("live_map", "NULL"), ("dead_row", "NULL")]
            if live is not None:
                dead = [("n_live", str(len(live))),
                        ("live_map", self.const_array(self.ident_base, "live_map", np.asarray(live), "uint16_t",
                                                      f"{node.name}: the output channels computed")),
                        ("dead_row", self.const_array(self.ident_base, "dead_row", dead_channel_row(self.g, node),
                                                      "int8_t", f"{node.name}: the outputs of the channels whose "
                                                      "weights are all zero (their bias requantized)"))]
                head.append(f"  {out.shape[3] - len(live)} of {out.shape[3]} output channels have only zero weights: "
                            "constants, not computed")
                self.kernel_notes.append(f"{len(live)}/{out.shape[3]} channels")
            gemm_fields = [("kbp", str(lay.kbp)), ("nb", str(lay.nb)), ("chunk", str(lay.chunk)),
                           ("fast", str(fast)), ("direct", str(direct)),
                           ("wpk", filt), ("bias", bias), ("row", "NULL" if direct else row),
                           ("skip", skip), ("work", f"(int32_t *)(arena.bytes + {ws_off})"),
                           ("residual_store", "NULL" if not res else "ec_gemm_store_residual"
                            if residual_run_ok(lay, fast, out.shape[3], out.shape[2]) else "ec_gemm_store_residual_any"),
                           ("add_tables", f"(int32_t *)(arena.bytes + {ws_off + ws_bytes - GEMM_ADD_TABLE_BYTES})"
                            if lay.tables else "NULL"),
                           ("wtile", str(lay.wtile)), ("wbuf", wflash if lay.wflash else self._wbuf(node.name, lay)),
                           ("gemm16", "NULL" if not lay.wtile
                            else "ec_gemm16_2x2_1" if lay.kbp <= 64 and self.gemm16_one else "ec_gemm16_2x2")] + dead
            rq = "NULL"
            if lay.wflash and fast and not res and (lo, hi) == ("-128", "127") and n_oc % 2 == 0:
                rq = self.const_array(self.ident_base, "rq", store_constants(q, out.shape[3], live), "int32_t",
                                      f"{node.name}: per channel M, s, (1 + 2 zp) << (s - 1) (ec_gemm_store2k)")
            gemm_fields += [("rq", rq), ("store2k", "NULL" if rq == "NULL" else "ec_gemm_store2k")]
            if lay.wtile:
                self.kernel_notes.append("int16 weights" + (" in flash" if lay.wflash else ""))
            if fused:
                return self._row_fusion(node, x, out, head, conv_fields, gemm_fields)
            gid = self.ident(f"{node.name}_gemm")
            self._struct("ec_gemm_params_t", gid, gemm_fields, c_comment(f"{node.name}: matrix-product layout"))
            head.append(f"  DSP matrix product (2x2 SMLAD blocks), {lay.nb} block(s) of {lay.kbp} taps, "
                        f"{ws_bytes}-byte workspace at {ws_off}" + (", pixel by pixel in place" if direct else "")
                        + ("" if fast else ", reference requantization"))
            if lay.wflash:
                head.append("  weights stored widened to int16 in flash (--optimize speed)")
            elif lay.wtile:
                head.append(f"  weights widened to int16 in the workspace, {lay.wtile} channel pair(s) at a time")
            call = f"ec_conv2d_s8_gemm(&{node_ident}, &{gid}, {self.tensor(x.name)}, {self.tensor(out.name)});"
            if lay.tables:
                head.append("  the residual add through two 256-entry rescale tables (filled first, in the workspace)")
                call = f"ec_gemm_add_tables(&{node_ident}, &{gid});\n    " + call
            return call
        if dsp_bias:
            k += "_dsp"
            head.append("  DSP kernel (SMLAD), input offset folded into the bias")
        elif s8 and dw and self.dsp and mult == 1 and int(self._q(node)["filter_offset"]) == 0:
            self.used_dsp = True
            if dw_fast_ok(self.g, node, self.plan, res):
                head.append("  DSP kernel, 3x3 fast path (4 rows x 2 channels, SMLAD)")
                return (f"ec_depthwise_conv2d_s8_dsp3x3(&{node_ident}, {self.tensor(x.name)}, {filt}, {bias}, "
                        f"{self.tensor(out.name)}, {row});")
            if dw_s2_ok(self.g, node, res):
                head.append("  DSP kernel, 3x3 stride-2 path (row and column pairs, SMLAD)")
                return (f"ec_depthwise_conv2d_s8_dsp3x3s2(&{node_ident}, {self.tensor(x.name)}, {filt}, {bias}, "
                        f"{self.tensor(out.name)}, {row});")
            k += "_dsp"
            head.append("  DSP kernel (SMLABB/SMLATT, 4 channels at a time)")
        return (f"{k}(&{node_ident}, {self.tensor(x.name)}, {filt}, {bias}, {self.tensor(out.name)}, {row}, "
                f"{skip});")

    def _wbuf(self, name: str, lay: GemmLayout) -> str:
        """The address of a layer's widened-weights buffer: in its workspace before the tables, or
        in the row-fused second layer's."""
        if not lay.wtile:
            return "NULL"
        owner = lay.wbuf_in or name
        own = self.gemm[owner]
        ws_off, ws_bytes = self.plan.workspace[owner]
        off = ws_off + ws_bytes - (GEMM_ADD_TABLE_BYTES if own.tables else 0) - own.wbuf_bytes
        return f"(uint32_t *)(arena.bytes + {off})"

    def _row_variants(self, base: str, fields: list[tuple[str, str]], note: str) -> dict[str, str]:
        """ec_conv_params_t for one output row: first (padding above), middle, last (below)."""
        idents = {}
        for part, in_h, pad_top in (("top", 2, 1), ("mid", 3, 0), ("bot", 2, 0)):
            ident = self.ident(f"{base}_row_{part}")
            f = [(k, {"in_h": str(in_h), "out_h": "1", "pad_top": str(pad_top)}.get(k, v)) for k, v in fields]
            self._struct("ec_conv_params_t", ident, f, c_comment(f"{note}: one output row ({part})"))
            idents[part] = ident
        return idents

    def _row_fusion(self, node, x, out, head, conv_fields, gemm_fields) -> str:
        """Row fusion (see find_row_fusions): A's call is deferred; B's is a loop over output rows
        that computes A's rows into a 3-row buffer just ahead of B's."""
        node_ident = self.ident_base
        if node.name in self.fused:  # A: remember, run inside B
            gid = self.ident(f"{node.name}_gemm")
            self._struct("ec_gemm_params_t", gid, gemm_fields, c_comment(f"{node.name}: matrix-product layout"))
            self.fused_a[node.name] = dict(x=x, gid=gid, rows=self._row_variants(node_ident, conv_fields, node.name))
            head.append(f"  computed row by row inside the next layer (its output: a {self.fused[node.name]}-byte "
                        "buffer of 3 rows)")
            return "/* (inside the next layer) */"
        a = self.fused_a[self.fused_b[node.name]]
        rows_b = self._row_variants(node_ident, conv_fields, node.name)
        # B's skip operand is its own output position (the add written over A's input)
        gf = [(k, "NULL" if k in ("skip", "row") else v) for k, v in gemm_fields] + [("skip_at_output", "1")]
        gidf = self.ident(f"{node.name}_gemm_rows")
        self._struct("ec_gemm_params_t", gidf, gf, c_comment(f"{node.name}: matrix-product layout, row by row"))
        h, w = out.shape[1], out.shape[2]
        xrow, yrow, zrow = w * a["x"].shape[3], w * x.shape[3], w * out.shape[3]
        X, Y, Z = self.tensor(a["x"].name), self.tensor(x.name), self.tensor(out.name)
        ra, rb = a["rows"], rows_b
        head.append(f"  fused with the previous layer row by row: its rows {Y} in a 3-row buffer, "
                    f"this layer's output over {X} (the skip operand)")
        lay_b = self.gemm[node.name]
        return "\n    ".join(([f"ec_gemm_add_tables(&{rb['mid']}, &{gidf});"] if lay_b.tables else []) + [
            "{",
            f"    ec_conv2d_s8_gemm(&{ra['top']}, &{a['gid']}, {X}, {Y});",
            f"    ec_conv2d_s8_gemm(&{ra['mid']}, &{a['gid']}, {X}, {Y} + {yrow});",
            f"    ec_conv2d_s8_gemm(&{rb['top']}, &{gidf}, {Y}, {Z});",
            f"    for (int32_t r = 1; r < {h - 1}; r++) {{",
            f"        ec_conv2d_s8_gemm(r + 1 < {h - 1} ? &{ra['mid']} : &{ra['bot']}, &{a['gid']}, "
            f"{X} + r * {xrow}, {Y} + {2 * yrow});",
            f"        ec_conv2d_s8_gemm(&{rb['mid']}, &{gidf}, {Y}, {Z} + r * {zrow});",
            f"        memmove({Y}, {Y} + {yrow}, {2 * yrow});",
            "    }",
            f"    ec_conv2d_s8_gemm(&{rb['bot']}, &{gidf}, {Y}, {Z} + {(h - 1) * zrow});",
            "}"])

    def _fc(self, node, x, out, head, row) -> str:
        w = self.g.tensors[node.inputs[1]]
        s8 = out.dtype == "int8"
        if len(w.shape) != 2 or x.size % w.shape[1] or out.size != (x.size // w.shape[1]) * w.shape[0]:
            raise ModelError(f"weights {_shape(w.shape)} do not match input {_shape(x.shape)} and output "
                             f"{_shape(out.shape)}", where=f"node {node.name!r}")
        if node.attrs.get("residual"):
            raise UnsupportedError("residual add fused into fully_connected", where=f"node {node.name!r}")
        self._const_tensor(node, 1, "filter", "int8_t" if s8 else "float")  # (clear errors first)
        dsp_bias = self._dsp_bias(node, self._q(node), w.shape[0], pad_to=-(-w.shape[0] // 4) * 4) if s8 else None
        if dsp_bias:
            wide = self.speed
            filt = self.const_array(self.ident_base, "filter_quads", pack_fc_weights(w.data, wide),
                                    "int16_t" if wide else "int8_t",
                                    f"{node.name}: filter {w.name} {_shape(w.shape)} {_fmt_q(w)}, in quads of "
                                    "output rows and groups of 4 inputs" + (", widened to int16 (--optimize speed)"
                                                                            if wide else ""), align=4)
            if wide:
                filt = f"(const int8_t *){filt}"
        else:
            filt = self._const(node, 1, "filter", "int8_t" if s8 else "float")
        bias = dsp_bias or self._const(node, 2, "bias", "int32_t" if s8 else "float") or "NULL"
        lo, hi, flo, fhi = self._act(node, out)
        fields = [("batches", x.size // w.shape[1]), ("in_features", w.shape[1]), ("out_features", w.shape[0])]
        if s8:
            q = self._q(node)
            mi, si = self._mult_shift(node, w.shape[0])
            fields += [("input_offset", c_int(q["input_offset"])), ("filter_offset", c_int(q["filter_offset"])),
                       ("output_offset", c_int(q["output_offset"]))]
        fields += [("act_min", lo), ("act_max", hi), ("act_min_f", flo), ("act_max_f", fhi)]
        if s8:
            fields += [("multiplier", mi), ("shift", si)]
        if dsp_bias and gemm_fast_requant(self._q(node), None, w.shape[0]) and gemm_acc_ok(self.g, node):
            fields.append(("fast", 1))
            head.append("  one-multiply requantization (gemm_fast_requant, gemm_acc_ok)")
        head.append(f"  act [{lo if s8 else flo}, {hi if s8 else fhi}]")
        self._struct("ec_fc_params_t", self.ident_base, [(k, str(v)) for k, v in fields],
                     c_comment(f"{node.name}: fully_connected"))
        k = "ec_fully_connected_" + ("s8" if s8 else "f32")
        if dsp_bias:
            k += "_dsp16" if self.speed else "_dsp"
            head.append("  DSP kernel (4 output rows at a time, SMLAD), input offset folded into the bias"
                        + (", int16 weights in flash" if self.speed else ""))
        return f"{k}(&{self.ident_base}, {self.tensor(x.name)}, {filt}, {bias}, {self.tensor(out.name)}, {row});"

    def _pool(self, node, x, out, head, row) -> str:
        a = node.attrs
        s8 = out.dtype == "int8"
        if len(x.shape) != 4 or len(out.shape) != 4 or x.shape[3] != out.shape[3]:
            raise ModelError("pooling tensors must be 4-D NHWC with equal channels", where=f"node {node.name!r}")
        kh, kw = a["kernel"]
        sh, sw = a.get("stride", (1, 1))
        pt, pl, pb, pr = a.get("pad", (0, 0, 0, 0))
        lo, hi, flo, fhi = self._act(node, out)
        fields = [("batches", x.shape[0]), ("in_h", x.shape[1]), ("in_w", x.shape[2]), ("channels", x.shape[3]),
                  ("out_h", out.shape[1]), ("out_w", out.shape[2]), ("kernel_h", kh), ("kernel_w", kw),
                  ("stride_h", sh), ("stride_w", sw), ("pad_top", pt), ("pad_left", pl),
                  ("act_min", lo), ("act_max", hi), ("act_min_f", flo), ("act_max_f", fhi)]
        head.append(f"  window {kh}x{kw}, stride {sh}x{sw}, pad t{pt} l{pl} b{pb} r{pr}")
        self._struct("ec_pool_params_t", self.ident_base, [(k, str(v)) for k, v in fields],
                     c_comment(f"{node.name}: {node.op}"))
        k = ("ec_max_pool2d_" if node.op == "max_pool2d" else "ec_avg_pool2d_") + ("s8" if s8 else "f32")
        if s8 and self.dsp and node.op == "avg_pool2d" and out.shape[1] == out.shape[2] == 1 \
                and (kh, kw) == tuple(x.shape[1:3]) and (pt, pl, pb, pr) == (0, 0, 0, 0) \
                and x.shape[1] * x.shape[2] <= 256:
            k = "ec_global_avg_pool2d_s8_dsp"  # 16-bit sums of at most 256 values
            self.used_dsp = True
            head.append("  global average, 4 channels at a time (SXTAB16)")
        return f"{k}(&{self.ident_base}, {self.tensor(x.name)}, {self.tensor(out.name)}, {row});"

    def _concat(self, node, out) -> str:
        axis = int(node.attrs["axis"])
        eb = ir.dtype_bytes(out.dtype)
        outer = int(math.prod(out.shape[:axis]))
        out_bytes = int(math.prod(out.shape[axis:])) * eb
        calls, off = [], 0
        for name in node.inputs:
            t = self.g.tensors[name]
            if t.is_const:
                raise UnsupportedError("concat of a constant", where=f"node {node.name!r}")
            if t.dtype != out.dtype:
                raise UnsupportedError("concat of different types", where=f"node {node.name!r}")
            in_bytes = int(math.prod(t.shape[axis:])) * eb
            calls.append(f"ec_concat_part({self.tensor(out.name)}, {self.tensor(name)}, {outer}, {in_bytes}, "
                         f"{out_bytes}, {off});")
            off += in_bytes
        return "\n    ".join(calls)


def _prepare(graph: ir.Graph) -> ir.Graph:
    """Fuse residual adds and fill missing requantization parameters (on a copy)."""
    from ..passes.requantize import add_q, conv_out_quant, node_q

    g = fuse_residual_adds(graph)
    for node in g.nodes:
        if "q" not in node.attrs:
            q = node_q(g, node)
            if q is not None:
                node.attrs["q"] = q
        res = node.attrs.get("residual")
        if res and "q" not in res and g.tensors[node.outputs[0]].dtype == "int8":
            res["q"] = add_q(conv_out_quant(node), g.tensors[res["tensor"]].quant, g.tensors[node.outputs[0]].quant)
    return g


def _check_graph(graph: ir.Graph) -> None:
    try:
        graph.validate()
    except ValueError as e:
        raise ModelError(str(e), where=f"graph {graph.name!r}", fix="Re-export the model") from None
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise UnsupportedError(f"{len(graph.inputs)} inputs and {len(graph.outputs)} outputs",
                               where=f"graph {graph.name!r}", fix="The C backend takes one input and one output")
    if not graph.nodes:
        raise ModelError("the graph has no layers", where=f"graph {graph.name!r}")
    for name in graph.inputs + graph.outputs:
        t = graph.tensors[name]
        if t.dtype not in ("int8", "float32"):
            raise UnsupportedError(f"{t.dtype} model input/output {name!r}", where=f"graph {graph.name!r}",
                                   fix="Use int8 or float32 inputs and outputs")
        if t.dtype == "int8" and t.quant is None:
            raise ModelError(f"int8 tensor {name!r} has no quantization", where=f"graph {graph.name!r}")
    for node in graph.nodes:
        if len(node.outputs) != 1:
            raise UnsupportedError(f"{node.op} with {len(node.outputs)} outputs", where=f"node {node.name!r}")


DW_TILE = 5  # EC_DW_TILE in ec_kernels_dsp.c


def kernel_label(call: str, notes: list[str]) -> str:
    """The kernel a layer's generated call runs, for the per-layer table: its ec_ function without
    the prefix (the layer call, not a table fill), plus `notes`; "" for a layer run inside the next."""
    names = [n for n in re.findall(r"\bec_(\w+)\(", call) if n != "gemm_add_tables"]
    if not names:
        return ""
    return ", ".join([names[-1]] + notes)


def dw_fast_ok(g: ir.Graph, node: ir.Node, plan: MemoryPlan, res) -> bool:
    """Whether ec_kernels_dsp's depthwise 3x3 fast path takes this layer (its dw_fast_ok, decided
    here so that the general code is not linked when no layer needs it)."""
    x, y = g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]
    w = g.tensors[node.inputs[1]]
    a, q = node.attrs, node.attrs.get("q")
    if res or q is None or len(x.shape) != 4 or tuple(w.shape[1:3]) != (3, 3):
        return False
    pt, pl = a.get("pad", (0, 0, 0, 0))[:2]
    n, ih, iw, c = (int(v) for v in x.shape)
    oh, ow, oc = (int(v) for v in y.shape[1:])
    if tuple(a.get("stride", (1, 1))) != (1, 1) or tuple(a.get("dilation", (1, 1))) != (1, 1) or c < 2 or oc != c \
            or not (0 <= pt <= 1 and 0 <= pl <= 1 and 0 <= oh + 2 - pt - ih <= 1 and 0 <= ow + 2 - pl - iw <= 1):
        return False
    ox, oy = plan.offsets[x.name], plan.offsets[y.name]
    if oy < ox + n * ih * iw * c and ox < oy + n * oh * ow * c:  # overlapping: only one row behind
        if not (n == 1 and iw * c == ow * c and ow <= DW_TILE and ox - oy == pt * iw * c):
            return False
    return _dw_requant_ok(g, node, c)


def _dw_requant_ok(g: ir.Graph, node: ir.Node, c: int) -> bool:
    """ec_kernels_dsp's dw_requant_ok: every multiplier above 2^30, every shift in [-21, -1],
    |bias| <= 2^29 (the SMMLAR requantization of 2 acc)."""
    q = node.attrs["q"]
    m = np.broadcast_to(np.asarray(q["multiplier"], np.int64), (c,))
    sh = np.broadcast_to(np.asarray(q["shift"], np.int64), (c,))
    b = g.tensors[node.inputs[2]].data.astype(np.int64).reshape(-1) if len(node.inputs) > 2 else np.zeros(c, np.int64)
    return bool((m > 1 << 30).all() and ((sh <= -1) & (sh >= -21)).all() and (np.abs(b) <= 1 << 29).all())


def dw_s2_ok(g: ir.Graph, node: ir.Node, res) -> bool:
    """Whether an int8 depthwise layer takes ec_kernels_dsp's 3x3 stride-2 path (a mirror of its
    dw_s2_ok; debug builds trap when they disagree)."""
    x, w = g.tensors[node.inputs[0]], g.tensors[node.inputs[1]]
    a, q = node.attrs, node.attrs.get("q")
    if res or q is None or len(x.shape) != 4 or tuple(w.shape[1:3]) != (3, 3) or int(x.shape[3]) < 2 \
            or int(a.get("depth_multiplier", 1)) != 1:
        return False
    pt, pl = a.get("pad", (0, 0, 0, 0))[:2]
    return tuple(a.get("stride", (1, 1))) == (2, 2) and tuple(a.get("dilation", (1, 1))) == (1, 1) \
        and pt <= 1 and pl <= 1 and _dw_requant_ok(g, node, int(x.shape[3]))


def kernels_choice(kernels: str | None, dsp_target: bool) -> bool:
    """Whether to use the DSP kernels: ``kernels`` is "auto" (the target's ``dsp``), "reference" or "dsp"."""
    k = "auto" if kernels is None else kernels
    if k not in KERNEL_CHOICES:
        raise EdgecompError(f"unknown kernels option {kernels!r}", None,
                            "use one of: " + ", ".join(KERNEL_CHOICES))
    return k == "dsp" or (k == "auto" and bool(dsp_target))


GEMM_CHUNK = 8  # output-channel pairs per pass when a pixel's whole window is one block
# The matrix-product workspaces may grow the arena by this many bytes plus this fraction of it: a
# layer 1.75x faster for 2.5 % more RAM (ResNet-8's 16x16x32 convolution: 640 bytes on 25,600).
GEMM_ARENA_GROWTH = 0  # tests raise it
GEMM_ADD_TABLE_BYTES = 2048  # EC_GEMM_ADD_TABLE_BYTES: two int32 tables of 256 entries
GEMM_ARENA_GROWTH_FRACTION = 0.03
# --optimize speed: the workspaces may grow the arena by this fraction plus these bytes (the digits
# demo: arena 640 -> 992 bytes, 40 % fewer instructions; ResNet-8: +1.2 KB, 7 % fewer)
GEMM_SPEED_GROWTH_FRACTION = 0.25
GEMM_SPEED_GROWTH = 1024
# Widened (int16) weights in the arena make the inner loop 10 instructions per 16 MACs instead of
# 14; a layer takes them only where they fit in the arena as planned (this many bytes more: tests).
GEMM_WIDE_GROWTH = 0
GEMM_WIDE_MIN_TILE = 4  # fewer channel pairs per tile: copying the kernel windows again costs more
GEMM_WIDE_TILE_CAP = 0  # tests: at most this many channel pairs per tile (0: no cap)


@dataclass
class GemmLayout:
    """How ec_kernels_gemm runs one convolution: nb blocks of kbp taps (kernel rows padded to
    whole words)."""
    kbp: int
    nb: int
    chunk: int  # output-channel pairs per pass
    work_bytes: int
    tables: bool = False  # the fused residual add through two 256-entry tables after the workspace
    wtile: int = 0  # > 0: output-channel pairs whose weights are widened to int16 at a time (ec_gemm16_2x2)
    wbuf_bytes: int = 0  # the widened weights' buffer in this workspace (before the tables), 0: none
    wbuf_in: str = ""  # a row-fused first layer: the buffer is in this (the second) layer's workspace
    wflash: bool = False  # the weights stored widened in flash (--optimize speed): wtile is every pair, no buffer


def gemm_layout(g: ir.Graph, node: ir.Node, blocked: bool, whole: bool = False) -> GemmLayout | None:
    """The matrix-product layout of an int8 conv2d (None: it keeps the other kernels).

    ``blocked``: one kernel row per block (less workspace, the accumulators kept in it).
    ``whole``: every output channel in one pass (one call per pixel pair; GEMM_CHUNK pairs else)."""
    if node.op != "conv2d" or "hybrid" in node.attrs or node.attrs.get("dilation", (1, 1)) != (1, 1):
        return None
    out, x = g.tensors[node.outputs[0]], g.tensors[node.inputs[0]]
    w = g.tensors[node.inputs[1]]
    if out.dtype != "int8" or x.dtype != "int8" or len(w.shape) != 4 or len(x.shape) != 4 or not w.is_const:
        return None
    q = node.attrs.get("q")
    if q is None or int(q["filter_offset"]) != 0:
        return None
    if len(node.inputs) > 2 and (not g.tensors[node.inputs[2]].is_const or g.tensors[node.inputs[2]].dtype != "int32"):
        return None
    oc, kh, kw, ic = (int(v) for v in w.shape)
    live = gemm_live(g, node)
    oc = oc if live is None else len(live)
    nb = kh if blocked and kh > 1 else 1
    kbp = kh * -(-kw * ic // 4) * 4 // nb  # each kernel row in whole words (ec_kernels_gemm: kernel_row_bytes)
    chunk = (oc + 1) // 2 if nb > 1 or whole else min((oc + 1) // 2, GEMM_CHUNK)
    work = (5 if ic % 4 else 4) * kbp + 16 * chunk + (0 if live is None else -(-2 * oc // 4) * 4)
    return GemmLayout(kbp, nb, chunk, work)  # EC_GEMM_WORK_BYTES


def pack_gemm_weights(w: np.ndarray, lay: GemmLayout) -> np.ndarray:
    """OHWI int8 weights -> [pair][block][4-tap chunk][row of the pair][4 taps], each kernel row's
    kernel_w * in_c taps zero padded to whole words (blocks of kbp)."""
    oc, kh = w.shape[0], w.shape[1]
    seg = w.shape[2] * w.shape[3]
    rows = np.zeros((oc, kh, -(-seg // 4) * 4), np.int8)
    rows[:, :, :seg] = w.reshape(oc, kh, seg)
    pairs = (oc + 1) // 2
    a = np.zeros((2 * pairs, lay.nb, lay.kbp), np.int8)
    a[:oc] = rows.reshape(oc, lay.nb, lay.kbp)
    a = a.reshape(pairs, 2, lay.nb, lay.kbp // 4, 4).transpose(0, 2, 3, 1, 4)
    return np.ascontiguousarray(a).reshape(-1)


def widen_gemm_weights(packed: np.ndarray) -> np.ndarray:
    """pack_gemm_weights' bytes as ec_gemm16_2x2 reads them (the kernel's widen() at compile time):
    per 8 bytes (row 0's 4 taps, row 1's), int16 taps (0, 2), (1, 3) of row 0, then of row 1."""
    a = packed.astype(np.int16).reshape(-1, 2, 4)
    return np.ascontiguousarray(a[:, :, [0, 2, 1, 3]]).reshape(-1)


def store_constants(q: dict, n: int, live=None) -> np.ndarray:
    """ec_gemm_store2k's table: per computed channel M, s = -shift, (1 + 2 zp) << (s - 1) as int32
    (the one-multiply path: s in [1, 24])."""
    m = np.broadcast_to(np.asarray(q["multiplier"], np.int64), (n,))
    s = -np.broadcast_to(np.asarray(q["shift"], np.int64), (n,))
    if live is not None:
        m, s = m[live], s[live]
    k = ((1 + 2 * int(q["output_offset"])) << (s - 1)) & 0xFFFFFFFF
    k = np.where(k >= 1 << 31, k - (1 << 32), k)
    return np.stack([m, s, k], axis=1).reshape(-1)


def pack_fc_weights(w: np.ndarray, wide: bool = False) -> np.ndarray:
    """(out, in) int8 -> ec_fully_connected_s8_dsp's layout: rows in quads (zero rows to a multiple
    of 4), inputs in groups of 4 (the last zero padded), per group the quad's 4 rows of 4 weights;
    ``wide``: each row's 4 weights as int16 taps (0, 2, 1, 3) (ec_fully_connected_s8_dsp16)."""
    o, n = w.shape
    a = np.zeros((-(-o // 4) * 4, -(-n // 4) * 4), np.int16 if wide else np.int8)
    a[:o, :n] = w
    a = a.reshape(-1, 4, a.shape[1] // 4, 4).transpose(0, 2, 1, 3)
    if wide:
        a = a[..., [0, 2, 1, 3]]
    return np.ascontiguousarray(a).reshape(-1)


def residual_run_ok(lay: GemmLayout, fast: int, out_c: int, out_w: int) -> bool:
    """Whether every residual store of a layer takes ec_gemm_store_residual's run (its C check
    residual_run_ok, for every call): the one-multiply path, all channels in one pass, room for
    both pixels' outputs in the windows' space, and two pixels in every pair (an even width: also
    row by row and in the row-fused calls)."""
    pairs = (out_c + 1) // 2
    return bool(fast) and lay.chunk >= pairs and (not lay.wtile or lay.wtile >= pairs) \
        and 2 * out_c <= 4 * lay.kbp and out_w % 2 == 0


def gemm_live(g: ir.Graph, node: ir.Node) -> np.ndarray | None:
    """The output channels a matrix-product conv computes when some have only zero weights
    (pruned channels: their outputs are constants, the requantized bias), else None.  Not with a
    fused residual add (the constant is added to a skip value) nor when fewer than two remain."""
    w = g.tensors[node.inputs[1]]
    if node.op != "conv2d" or node.attrs.get("residual") or w.data is None or len(w.shape) != 4:
        return None
    live = np.flatnonzero((w.data.reshape(w.shape[0], -1) != 0).any(axis=1))
    if len(live) == w.shape[0] or len(live) < 2:
        return None
    return live


def dead_channel_row(g: ir.Graph, node: ir.Node) -> np.ndarray:
    """One output pixel of a conv with its zero-weight channels' values (TFLM: the accumulator is
    the bias; requantized, plus the zero point, clamped); 0 at the computed channels."""
    from ..numerics import multiply_by_quantized_multiplier
    out = g.tensors[node.outputs[0]]
    n = out.shape[3]
    q = node.attrs["q"]
    b = g.tensors[node.inputs[2]].data.astype(np.int64).reshape(-1) if len(node.inputs) > 2 else np.zeros(n, np.int64)
    m = np.broadcast_to(np.asarray(q["multiplier"], np.int64), (n,))
    sh = np.broadcast_to(np.asarray(q["shift"], np.int64), (n,))
    v = np.array([int(multiply_by_quantized_multiplier(np.int64(b[c]), int(m[c]), int(sh[c]))) for c in range(n)])
    lo, hi = node.attrs["act"] if node.attrs.get("act") is not None else (None, None)
    lo, hi = -128 if lo is None else max(int(lo), -128), 127 if hi is None else min(int(hi), 127)
    row = np.clip(v + int(q["output_offset"]), lo, hi)
    row[gemm_live(g, node)] = 0
    return row.astype(np.int8)


def gemm_acc_ok(g: ir.Graph, node: ir.Node, live=None) -> bool:
    """Whether every accumulator of a conv2d or fully connected layer stays below 2^30 in magnitude
    with room for the output constant (the SMMLAR form of ec_gemm_store2 and of the DSP fully
    connected kernel: 2a and a + (1 + 2 zp) 2^(s-1) fit 32 bits):
    |bias| + 255 * sum|w| bounds TFLM's accumulator (inputs minus their zero point span 255)."""
    w = g.tensors[node.inputs[1]].data.astype(np.int64)
    bound = 255 * np.abs(w.reshape(w.shape[0], -1)).sum(axis=1)
    if len(node.inputs) > 2:
        bound = bound + np.abs(g.tensors[node.inputs[2]].data.astype(np.int64).reshape(-1))
    q = node.attrs["q"]
    sh = np.broadcast_to(np.asarray(q["shift"], np.int64), bound.shape)
    if live is not None:
        bound, sh = bound[live], sh[live]
    const = (255 << np.maximum(-sh - 1, 0)).astype(np.int64)
    return bool((bound < 1 << 30).all() and (bound + const + 1 < 1 << 31).all())


def gemm_fast_requant(q: dict, rq: dict | None, n: int, live=None) -> bool:
    """Whether every multiplier is in (2^30, 2^31) and every shift in [-24, -1] (ec_kernels_gemm's
    one-multiply requantization; the fused residual add's too)."""
    pairs = [(np.broadcast_to(np.asarray(q["multiplier"], np.int64), (n,)),
              np.broadcast_to(np.asarray(q["shift"], np.int64), (n,)))]
    if live is not None:
        pairs = [(m[live], sh[live]) for m, sh in pairs]
    if rq is not None:
        for k in ("input1", "input2", "output"):
            m, s = int(rq[f"{k}_multiplier"]), int(rq[f"{k}_shift"])
            if k != "output" and m == 1 << 30 and s == 0:
                continue  # x / 2 exactly (x is even: left_shift >= 1)
            pairs.append((np.asarray([m], np.int64), np.asarray([s], np.int64)))
        if not 1 <= int(rq["left_shift"]) <= 20:
            return False
    return all(bool(((m > 1 << 30) & (m < 1 << 31)).all() and ((s >= -24) & (s <= -1)).all()) for m, s in pairs)


def _conv3x3_same(g: ir.Graph, node: ir.Node) -> bool:
    a = node.attrs
    w = g.tensors[node.inputs[1]]
    x, y = g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]
    return (node.op == "conv2d" and len(w.shape) == 4 and tuple(w.shape[1:3]) == (3, 3)
            and tuple(a.get("stride", (1, 1))) == (1, 1) and tuple(a.get("dilation", (1, 1))) == (1, 1)
            and tuple(a.get("pad", (0, 0, 0, 0))) == (1, 1, 1, 1) and len(x.shape) == 4 and x.shape[0] == 1
            and tuple(y.shape[1:3]) == tuple(x.shape[1:3]) and x.shape[1] >= 4)


def find_row_fusions(g: ir.Graph) -> dict[str, int]:
    """Pairs of int8 3x3 stride-1 'same' convolutions A -> B (ResNet's blocks) where B adds A's
    input back (a fused residual add) and is A's only reader: A can run row by row inside B, its
    output kept in a 3-row buffer instead of a whole tensor.  {A: buffer bytes}."""
    readers: dict[str, int] = {}
    for n in g.nodes:
        for t in reads(n):
            readers[t] = readers.get(t, 0) + 1
    out: dict[str, int] = {}
    for a, b in zip(g.nodes, g.nodes[1:]):
        res = b.attrs.get("residual")
        y = a.outputs[0]
        if (res is None or res.get("tensor") != a.inputs[0] or b.inputs[0] != y or readers.get(y) != 1
                or y in g.outputs or a.name in out or not _conv3x3_same(g, a) or not _conv3x3_same(g, b)
                or gemm_layout(g, a, False) is None or gemm_layout(g, b, False) is None or gemm_live(g, a) is not None
                or a.attrs.get("residual")):
            continue
        t = g.tensors[y]
        out[a.name] = 3 * t.shape[2] * t.shape[3]
    return out


def _tiled(g: ir.Graph, name: str, lay: GemmLayout) -> bool:
    """Whether a layer runs its output channels in several tiles (its whole input read per tile)."""
    node = next(n for n in g.nodes if n.name == name)
    return 0 < lay.wtile < (g.tensors[node.outputs[0]].shape[3] + 1) // 2


def _plan(g: ir.Graph, lays: dict[str, GemmLayout], fused: dict[str, int], apart=frozenset()) -> MemoryPlan:
    return plan_memory(g, workspace={n: x.work_bytes for n, x in lays.items()}, fused=fused,
                       apart={n for n, x in lays.items() if _tiled(g, n, x)} | set(apart))


def _dw_dsp(g: ir.Graph, node: ir.Node) -> bool:
    """Whether an int8 depthwise conv takes ec_kernels_dsp (as c_codegen's _conv decides)."""
    q = node.attrs.get("q")
    return node.op == "depthwise_conv2d" and q is not None and g.tensors[node.outputs[0]].dtype == "int8" \
        and int(node.attrs.get("depth_multiplier", 1)) == 1 and int(q["filter_offset"]) == 0


def _dw_apart(g: ir.Graph, plan: MemoryPlan, apart: set[str], trial) -> MemoryPlan:
    """Depthwise 3x3 layers that miss the fast path only because they run in place (wide rows:
    the fast path takes in-place layers of one column tile only) are planned apart from their
    input where the arena does not grow (the general depthwise code is about 4x slower)."""
    for n in g.nodes:
        if not _dw_dsp(g, n) or dw_fast_ok(g, n, plan, n.attrs.get("residual")):
            continue
        t = trial(apart | {n.name})
        if t.arena_bytes <= plan.arena_bytes and dw_fast_ok(g, n, t, n.attrs.get("residual")):
            apart.add(n.name)
            plan = t
    return plan


def _widen_weights(g, nodes, lays, plan, fused, macs, trial):
    """Layers (the biggest first) take widened int16 weights where the buffer fits in the arena as
    planned: all their channel pairs at once, else (output apart from the input, no residual add)
    the most pairs per tile that fit, at least GEMM_WIDE_MIN_TILE.  A row-fused pair shares one
    buffer in the second layer's workspace (each row call widens its own weights again)."""
    limit = plan.arena_bytes + GEMM_WIDE_GROWTH
    dw = [n for n in g.nodes if n.op == "depthwise_conv2d" and dw_fast_ok(g, n, plan, n.attrs.get("residual"))]
    apart = [n for n in lays if n not in plan.scratch and g.tensors[nodes[n].outputs[0]].shape[2] % 2]

    def keeps(t: MemoryPlan) -> bool:
        """Within the limit, and the new placement pushes no depthwise layer off its fast path and
        puts no matrix-product layer of odd width that wrote apart from its input in place (row by
        row, pixel pairs do not cross rows: each row would end with a single pixel)."""
        return t.arena_bytes <= limit and all(dw_fast_ok(g, n, t, n.attrs.get("residual")) for n in dw) \
            and not any(n in t.scratch for n in apart)
    index = {n.name: i for i, n in enumerate(g.nodes)}
    first_of = {g.nodes[index[a] + 1].name: a for a in fused}  # a fused pair's second layer -> its first
    for name in sorted(lays, key=lambda n: -macs[n]):
        lay = lays[name]
        if lay.nb > 1 or name in fused or lay.wtile:
            continue
        pairs = (g.tensors[nodes[name].outputs[0]].shape[3] + 1) // 2
        a = first_of.get(name)
        if a is not None:  # the pair: both single tiles, one buffer
            if lays.get(a) is None or lays[a].nb > 1:
                continue
            pa = (g.tensors[nodes[a].outputs[0]].shape[3] + 1) // 2
            nbytes = 4 * max(lay.kbp * pairs, lays[a].kbp * pa)
            wide = dataclasses.replace(lay, wtile=pairs, wbuf_bytes=nbytes, work_bytes=lay.work_bytes + nbytes)
            t = trial(name, wide)
            if keeps(t):
                lays[name], lays[a], plan = wide, dataclasses.replace(lays[a], wtile=pa, wbuf_in=name), t
            continue

        def fits(tile):
            nb_ = 4 * lay.kbp * tile
            w = dataclasses.replace(lay, wtile=tile, wbuf_bytes=nb_, work_bytes=lay.work_bytes + nb_)
            t = trial(name, w)
            ok = keeps(t) and (tile == pairs or name not in t.scratch)  # (tiled: never in place)
            return (w, t) if ok else None
        cap = min(pairs, GEMM_WIDE_TILE_CAP or pairs)
        got = fits(pairs) if cap == pairs else None
        if got is None and not nodes[name].attrs.get("residual"):
            lo, hi = min(GEMM_WIDE_MIN_TILE, cap), min(pairs - 1, cap)  # the most pairs per tile that fit
            while lo <= hi:
                mid = (lo + hi) // 2
                r = fits(mid)
                if r is not None:
                    got, lo = r, mid + 1
                else:
                    hi = mid - 1
        if got is not None:
            lays[name], plan = got
    return plan


def plan_with_gemm(g: ir.Graph, dsp: bool, fusions: bool = True, speed: bool = False) \
        -> tuple[MemoryPlan, dict[str, GemmLayout], dict[str, int]]:
    """The memory plan, with the matrix-product convolutions' workspaces when ``dsp``.

    ``speed`` (--optimize speed): the workspaces may grow the arena more (GEMM_SPEED_GROWTH_*),
    and every one-block layer stores its weights widened to int16 in flash (twice their bytes)
    instead of widening them in the arena where it has room.

    A workspace must not grow the arena beyond GEMM_ARENA_GROWTH_FRACTION: each layer takes whole
    kernel windows, else one kernel row per block, else keeps the DSP kernel without a workspace,
    whichever first fits.  Then a layer whose accumulators for all its output channels still fit
    (no bigger arena) takes them: one pass per pixel pair."""
    if not dsp:
        return plan_memory(g), {}, {}
    fused = find_row_fusions(g) if fusions else {}
    base = plan_memory(g, fused=fused)
    macs = {n.name: ir.macs(g, n) for n in g.nodes}
    cands = [(n.name, [lay for lay in (gemm_layout(g, n, False), gemm_layout(g, n, True)) if lay is not None])
             for n in g.nodes]
    lays: dict[str, GemmLayout] = {}
    plan = base
    limit = base.arena_bytes * (1 + GEMM_ARENA_GROWTH_FRACTION) + GEMM_ARENA_GROWTH
    if speed:
        limit = max(limit, base.arena_bytes * (1 + GEMM_SPEED_GROWTH_FRACTION) + GEMM_SPEED_GROWTH)

    dw_apart: set[str] = set()  # depthwise layers kept off their input (_dw_apart)

    def trial(name: str, lay: GemmLayout) -> MemoryPlan:  # the plan with ``name`` taking ``lay``
        return _plan(g, {**lays, name: lay}, fused, dw_apart)
    for name, options in sorted(cands, key=lambda c: -macs[c[0]]):  # the biggest layers first
        for lay in options[:1] + [o for o in options[1:] if o.nb > 1]:
            t = trial(name, lay)
            if t.arena_bytes <= limit:
                lays[name], plan = lay, t
                break
    # then every output channel in one pass where the accumulators still fit (fewer calls)
    nodes = {n.name: n for n in g.nodes}
    for name in sorted(lays, key=lambda n: -macs[n]):
        whole = gemm_layout(g, nodes[name], False, whole=True)
        if lays[name].nb > 1 or whole == lays[name]:
            continue
        t = trial(name, whole)
        if t.arena_bytes <= (max(plan.arena_bytes, limit) if speed else plan.arena_bytes):
            lays[name], plan = whole, t
    # a fused residual add on the one-multiply path takes its two rescale tables (2 KB) where
    # they fit in the same allowance
    for name in sorted(lays, key=lambda n: -macs[n]):
        node, lay = nodes[name], lays[name]
        res = node.attrs.get("residual")
        if not res or not gemm_fast_requant(node.attrs["q"], res.get("q"), g.tensors[node.outputs[0]].shape[3]) \
                or not gemm_acc_ok(g, node):
            continue
        tab = dataclasses.replace(lay, tables=True, work_bytes=lay.work_bytes + GEMM_ADD_TABLE_BYTES)
        t = trial(name, tab)
        if t.arena_bytes <= max(plan.arena_bytes, limit):
            lays[name], plan = tab, t
    plan = _dw_apart(g, plan, dw_apart, lambda apart: _plan(g, lays, fused, apart))
    if speed:  # the weights widened in flash: no buffer in the arena, the plan stays
        for name, lay in lays.items():
            if lay.nb == 1:
                pairs = (g.tensors[nodes[name].outputs[0]].shape[3] + 1) // 2
                lays[name] = dataclasses.replace(lay, wtile=pairs, wflash=True)
    else:
        plan = _widen_weights(g, nodes, lays, plan, fused, macs, trial)
    # a fused pair runs both layers through the matrix product, its output over the skip tensor
    # (A's input) or apart from it
    nodes_i = {n.name: i for i, n in enumerate(g.nodes)}
    for a in fused:
        b = g.nodes[nodes_i[a] + 1]
        x, z = g.nodes[nodes_i[a]].inputs[0], b.outputs[0]
        ox, oz, n = plan.offsets[x], plan.offsets[z], plan.sizes[x]
        if a not in lays or b.name not in lays or lays[a].nb > 1 or lays[b.name].nb > 1 \
                or not (oz == ox or oz + plan.sizes[z] <= ox or ox + n <= oz) or b.name in plan.scratch:
            return plan_with_gemm(g, dsp, fusions=False, speed=speed)
    if fused:  # fused only where it saves memory (tiny layers: the two live workspaces cost more)
        plain = plan_with_gemm(g, dsp, fusions=False, speed=speed)
        if plain[0].arena_bytes <= plan.arena_bytes:
            return plain
    return plan, lays, fused


def generate(graph: ir.Graph, out_dir: Path, *, name: str = "model", probe: bool = True,
             dsp: bool = False, speed: bool = False) -> CodegenInfo:
    """Write model.h, model.c, weights.c, ec_kernels.h, ec_kernels.c into ``out_dir``.

    ``dsp``: int8 convolutions and fully connected layers use ec_kernels_dsp (copied then).
    ``speed``: --optimize speed (plan_with_gemm): more flash for fewer instructions.
    """
    _check_graph(graph)
    g = _prepare(graph)
    plan, gemm, fused = plan_with_gemm(g, dsp, speed=speed)
    gen = _Gen(g, plan, name, dsp=dsp, gemm=gemm, fused=fused, speed=speed)
    for i, node in enumerate(g.nodes):
        gen.layer(i, node)
    # the reserved runtime identifiers are not used by sanitize (no ec_ prefix)
    in_t, out_t = g.tensors[g.inputs[0]], g.tensors[g.outputs[0]]
    in_id, out_id = gen.tensor(in_t.name), gen.tensor(out_t.name)
    if in_t.dtype == "int8":
        qi = in_t.quant
        qin = (f"    ec_quantize_f32_s8(x, q, EC_INPUT_SIZE, {c_float(qi.scale[0])}, {int(qi.zero_point[0])});")
    else:
        qin = "    memcpy(q, x, EC_INPUT_SIZE * sizeof(float));"
    if out_t.dtype == "int8":
        qo = out_t.quant
        dqo = (f"    ec_dequantize_s8_f32(q, y, EC_OUTPUT_SIZE, {c_float(qo.scale[0])}, "
               f"{int(qo.zero_point[0])});")
    else:
        dqo = "    memcpy(y, q, EC_OUTPUT_SIZE * sizeof(float));"
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir() / "cortex_m")),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    model_comment = c_comment_text(repr(name) if name else "model")
    dtype_note = ("int16" if c_codegen_s16.uses_s16(g) else "int8") if g.quantized else "float32"
    ctx = dict(
        model_comment=model_comment, model_string=c_string(name),
        input_comment=c_comment_text(f"{in_t.name} {_shape(in_t.shape)} {_fmt_q(in_t)}"),
        output_comment=c_comment_text(f"{out_t.name} {_shape(out_t.shape)} {_fmt_q(out_t)}"),
        input_size=in_t.size, output_size=out_t.size, arena_bytes=plan.arena_bytes,
        num_layers=len(g.nodes), in_ctype=CTYPE[in_t.dtype], out_ctype=CTYPE[out_t.dtype],
        macs=ir.total_macs(g), dtype_note=dtype_note, extern_decls=gen.externs, plan_end=plan.end(),
        tensor_macros=gen.tensor_macros, params=gen.params,
        layer_names=[c_string(n.name) for n in g.nodes], layer_ops=[c_string(n.op) for n in g.nodes],
        input_tensor=in_id, output_tensor=out_id, layer_code=gen.code,
        quantize_input_body=qin, dequantize_output_body=dqo,
        weight_bytes=gen.weight_bytes, arrays=gen.arrays,
        extra_includes=(['#include "ec_kernels_s16.h"'] if c_codegen_s16.uses_s16(g) else [])
        + (['#include "ec_kernels_dsp.h"'] if gen.used_dsp else [])
        + (['#include "ec_kernels_gemm.h"'] if gen.used_gemm else []),
    )
    for i, lay in enumerate(gen.layers):  # row fusion: the producer's time is counted in the consumer's
        if lay["name"] in fused:
            lay["fused_into"] = gen.layers[i + 1]["name"]
    texts = {f: env.get_template(f + ".j2").render(**ctx) for f in ("model.h", "model.c", "weights.c")}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for f, text in texts.items():
        (out_dir / f).write_text(text)
    kernel_files = KERNEL_FILES + (GENERATED_FILES_S16 if c_codegen_s16.uses_s16(g) else ()) \
        + (DSP_KERNEL_FILES if gen.used_dsp else ()) + (GEMM_KERNEL_FILES if gen.used_gemm else ()) \
        + (SIMD_FILES if gen.used_dsp or gen.used_gemm else ())
    for f in kernel_files:
        kfiles.write(out_dir, f)
    return CodegenInfo(
        arena_bytes=plan.arena_bytes,
        scratch_bytes=max((n for _, n in plan.scratch.values()), default=0),
        static_bytes=4 * len(g.nodes) if probe else 0,
        weight_bytes=gen.weight_bytes,
        layers=gen.layers,
        offsets=dict(plan.offsets),
        files=list(GENERATED_FILES) + [f for f in kernel_files if f not in KERNEL_FILES],
        plan=plan,
    )
