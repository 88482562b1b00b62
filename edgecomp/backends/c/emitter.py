"""The emitter: one readable C call per layer, dispatched through the kernel catalogue.

:class:`Emitter` holds what every layer's code shares: C names (every model name goes through
:mod:`edgecomp.sanitize`), the constant arrays of ``weights.c``, the parameter blocks and the
tensor macros of ``model.c``.  :meth:`Emitter.layer` writes a layer's comment (op, shapes,
quantization, in-place notes, MACs), asks the catalogue which kernel runs it
(:func:`~edgecomp.backends.c.kernels.catalogue.choose`) and lets that kernel's emitter (in
``backends/c/emit/``) write its parameters and call.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ... import ir
from ...errors import ModelError, UnsupportedError
from ...options import CodegenOptions
from ...passes.memory_plan import MemoryPlan, reads
from ...sanitize import c_comment, c_identifier
from . import emit  # noqa: F401  (the emitters' @kernel records fill the catalogue)
from .kernels.catalogue import choose
from .literals import CTYPE, RESERVED, array_body, c_float, c_int, fmt_q, shape_text


@dataclass
class Layer:
    """One layer as its emitter sees it."""
    index: int
    node: ir.Node
    x: ir.Tensor | None  # the first input (None for a node without inputs)
    out: ir.Tensor
    head: list[str]  # the comment above the call: emitters append lines
    row: str  # the scratch row of a layer in place ("NULL" when none)
    base: str  # the layer's C identifier (prefix of its arrays and parameter block)
    notes: list[str] = field(default_factory=list)  # kernel details for the per-layer table

    @property
    def s8(self) -> bool:
        return self.out.dtype == "int8"


def kernel_label(call: str, notes: list[str]) -> str:
    """The kernel a layer's generated call runs, for the per-layer table: its ec_ function without
    the prefix (the layer call, not a table fill), plus ``notes``; "" for a layer run inside the
    next.

    >>> kernel_label("ec_gemm_add_tables(&a, &b);\\n    ec_conv2d_s8_gemm(&a, &b, x, y);", ["x"])
    'conv2d_s8_gemm, x'
    """
    names = [n for n in re.findall(r"\bec_(\w+)\(", call) if n != "gemm_add_tables"]
    if not names:
        return ""
    return ", ".join([names[-1]] + notes)


class Emitter:
    def __init__(self, graph: ir.Graph, plan: MemoryPlan, name: str, opts: CodegenOptions):
        self.g = graph
        self.opts = opts
        self.dsp = opts.dsp  # int8 conv / fully connected through the DSP kernels where they apply
        self.speed = opts.speed  # --optimize speed: int16 weights in flash where a kernel reads them
        self.gemm = {n.name: n.attrs["gemm"] for n in graph.nodes if n.attrs.get("gemm") is not None}
        self.fused = dict(graph.meta.get("row_fusions", {}))  # row fusion: {A: buffer bytes}
        # the consumer B of each fused producer A: {B: A}
        self.fused_b = {graph.nodes[i + 1].name: n.name for i, n in enumerate(graph.nodes) if n.name in self.fused}
        self.fused_a: dict[str, Any] = {}  # A's row structs, for the consumer's loop
        self.groups: set[str] = set()  # kernel file groups the layers use (catalogue.KERNEL_GROUPS)
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
        self.ident_base = ""
        self.state_bytes = 0  # recurrent layers' state (ec_state, outside the arena)
        self.state_resets: list[str] = []  # C statements of ec_state_reset()
        self.sigmoid_table: str | None = None

    # -- names
    def ident(self, text: str) -> str:
        # TFLite joins fused names with ';': the first part is the readable one
        return c_identifier(str(text).split(";")[0] or str(text), self.taken)

    def tensor(self, name: str) -> str:
        if name not in self.tensor_id:
            t = self.g.tensors[name]
            if t.dtype not in ("int8", "int16", "int32", "float32"):
                raise UnsupportedError(f"{t.dtype} activation {name!r}", where=f"tensor {name!r}",
                                       fix="Use an int8, int16 or float32 model")
            ident = self.ident(name)
            self.tensor_id[name] = ident
            off = self.plan.offsets[name]
            self.tensor_macros.append(
                f"#define {ident} (({CTYPE[t.dtype]} *)(arena.bytes + {off})) "
                f"{c_comment(f'{name}: {shape_text(t.shape)} {fmt_q(t)}, {t.nbytes} bytes at {off}')}")
        return self.tensor_id[name]

    # -- constants (weights.c) and parameter blocks (model.c)
    def const_array(self, base: str, suffix: str, data: np.ndarray, ctype: str, note: str,
                    align: int = 0) -> str:
        ident = self.ident(f"{base}_{suffix}")
        data = np.asarray(data)
        n = max(int(data.size), 1)
        if ctype == "float":
            body = array_body(data.astype(np.float32), c_float, 8)
            nbytes = 4 * n
        else:
            body = array_body(data.astype(np.int64), c_int, 16 if ctype == "int8_t" else 8)
            nbytes = {"int8_t": 1, "int16_t": 2, "uint16_t": 2, "int32_t": 4}[ctype] * n
        if data.size == 0:
            body = "    0,"
        attr = f" __attribute__((aligned({align})))" if align else ""
        self.arrays.append(f"{c_comment(note)}\nconst {ctype} {ident}[{n}]{attr} = {{\n{body}\n}};")
        self.externs.append(f"extern const {ctype} {ident}[{n}];")
        self.weight_bytes += nbytes
        return ident

    def const(self, node: ir.Node, idx: int, suffix: str, want: str) -> str | None:
        """A node's constant input ``idx`` as a const array of C type ``want``, or None if absent."""
        t = self.const_tensor(node, idx, suffix, want)
        if t is None:
            return None
        return self.const_array(self.ident_base, suffix, t.data, want,
                                f"{node.name}: {suffix} {t.name} {shape_text(t.shape)} {fmt_q(t)}")

    def const_tensor(self, node: ir.Node, idx: int, suffix: str, want: str) -> ir.Tensor | None:
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

    def struct(self, ctype: str, ident: str, fields: list[tuple[str, str]], comment: str) -> None:
        body = "\n".join(f"    .{k} = {v}," for k, v in fields)
        self.params.append(f"{comment}\nstatic const {ctype} {ident} = {{\n{body}\n}};")

    # -- quantization helpers
    def act(self, node: ir.Node, out: ir.Tensor, act=None) -> tuple[str, str, str, str]:
        """(int lo, int hi, float lo, float hi) of a clamp range as C literals (int8 or float)."""
        act = node.attrs.get("act") if act is None else act
        if out.dtype == "float32":
            lo, hi = act if act is not None else (-math.inf, math.inf)
            return "0", "0", c_float(lo), c_float(hi)
        lo, hi = act if act is not None else (-128, 127)
        lo = -128 if lo is None else max(int(lo), -128)
        hi = 127 if hi is None else min(int(hi), 127)
        return str(lo), str(hi), "0.0f", "0.0f"

    def q(self, node: ir.Node) -> dict:
        q = node.attrs.get("q")
        if q is None:
            raise ModelError("int8 node without requantization parameters", where=f"node {node.name!r}",
                             fix="Run edgecomp.passes.requantize first")
        return q

    def mult_shift(self, node: ir.Node, n: int, live=None, multipliers: bool = True) -> tuple[str, str]:
        """Per-channel Q31 multipliers and shifts as const arrays (the channels ``live`` only;
        ``multipliers=False``: "NULL" for the kernels that read them from their packed filter)."""
        q = self.q(node)
        m = np.broadcast_to(np.asarray(q["multiplier"], dtype=np.int64), (n,))
        s = np.broadcast_to(np.asarray(q["shift"], dtype=np.int64), (n,))
        if live is not None:  # the computed channels only (gemm_live)
            m, s = m[live], s[live]
        mi = self.const_array(self.ident_base, "multiplier", m, "int32_t",
                              f"{node.name}: Q31 requantization multipliers") if multipliers else "NULL"
        if s.min() < -128 or s.max() > 127:  # TFLite shifts are within [-31, 30]
            raise UnsupportedError(f"requantization shift out of range ({int(s.min())}..{int(s.max())})",
                                   where=f"node {node.name!r}", fix="Check the model's quantization scales")
        si = self.const_array(self.ident_base, "shift", s, "int8_t",
                              f"{node.name}: requantization shifts (> 0 is left)")
        return mi, si

    def add_fields(self, q: dict | None, node: ir.Node, out: ir.Tensor, act) -> list[tuple[str, str]]:
        """ec_add_params_t fields (TFLM's add parameters) and the clamp range."""
        lo, hi, flo, fhi = self.act(node, out, act)
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
        head.append("  " + ", ".join(f"{self.tensor(t)} {shape_text(g.tensors[t].shape)} {fmt_q(g.tensors[t])}"
                                     for t in ins)
                    + " -> " + ", ".join(f"{self.tensor(o)} {shape_text(g.tensors[o].shape)} {fmt_q(g.tensors[o])}"
                                         for o in node.outputs))
        if out.dtype == "int8" and x is not None and x.dtype not in ("int8", "float32"):
            raise UnsupportedError(f"{x.dtype} input", where=f"node {node.name!r}", fix="Use an int8 model")
        macs = ir.macs(g, node)
        scratch = self.plan.scratch.get(node.name)
        row = "NULL"
        if scratch is not None:
            row = f"({CTYPE[out.dtype]} *)(arena.bytes + {scratch[0]})"
            head.append(f"  in place: output at input {self.plan.offsets[out.name] - self.plan.offsets[x.name]:+d} "
                        f"bytes, rows through the {scratch[1]}-byte scratch row at {scratch[0]}")
        lay = Layer(index, node, x, out, head, row, base)
        k = choose(self, node)
        call = k.emit(self, lay, k)
        self.groups.update(k.groups)
        if macs:
            head.append(f"  {macs} MACs")
        comment = "\n".join(f"    {c_comment(h.strip() if i else h)}" for i, h in enumerate(head))
        self.code.append(f"{comment}\n    {call}\n    LAYER_DONE({index});")
        self.layers.append({"name": node.name, "op": node.op, "out_shape": list(out.shape), "macs": int(macs),
                            "kernel": kernel_label(call, lay.notes)})
