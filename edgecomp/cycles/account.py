"""Price a trace with a timing model: cycles, instructions and their mix per segment.

A segment of :class:`~edgecomp.cycles.trace.Trace` counts how often block A ran followed by block
B. A's cycles depend on B only through A's last instruction (a branch is taken when B does not
start where A falls through) and through B's first instruction (it may pipeline or pair with A's
last, :meth:`TimingModel.boundary_adjust`), so each (A, B, times) prices exactly.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .model import TBCost, TimingModel
from .trace import Trace

#: Classes grouped for tables and charts (every class belongs to one group).
GROUPS = {
    "load/store": ("load", "store", "load_double", "store_double", "load_multiple", "store_multiple",
                   "vfp_load", "vfp_store", "vfp_load_multiple", "vfp_store_multiple", "vector_load",
                   "vector_store"),
    "multiply/MAC": ("mul", "mla", "mul_long", "mla_long", "mac", "mac_long", "div"),
    "ALU/SIMD": ("alu", "simd", "it", "hint"),
    "branch": ("branch", "call", "branch_indirect", "table_branch"),
    "FP/vector": ("vfp", "vfp_mac", "vfp_div", "vfp_move", "vector"),
    "other": ("barrier", "system", "other", "flash_wait"),
}
GROUP_OF = {c: g for g, cs in GROUPS.items() for c in cs}


@dataclass
class SegmentStats:
    instructions: int = 0
    cycles: float = 0.0
    class_instructions: dict[str, int] = field(default_factory=dict)
    class_cycles: dict[str, float] = field(default_factory=dict)
    functions: dict[str, list[float]] = field(default_factory=dict)  # name -> [instructions, cycles]
    taken: int = 0
    not_taken: int = 0
    blocks: dict[int, list[float]] = field(default_factory=dict)  # block id -> [runs, instructions, cycles]

    def add(self, other: "SegmentStats") -> None:
        self.instructions += other.instructions
        self.cycles += other.cycles
        self.taken += other.taken
        self.not_taken += other.not_taken
        for k, v in other.class_instructions.items():
            self.class_instructions[k] = self.class_instructions.get(k, 0) + v
        for k, v in other.class_cycles.items():
            self.class_cycles[k] = self.class_cycles.get(k, 0.0) + v
        for k, (i, c) in other.functions.items():
            f = self.functions.setdefault(k, [0, 0.0])
            f[0] += i
            f[1] += c
        for k, v in other.blocks.items():
            b = self.blocks.setdefault(k, [0, 0, 0.0])
            for j in range(3):
                b[j] += v[j]

    def hot_blocks(self, blocks, top: int = 10) -> list[dict[str, Any]]:
        """The blocks that took the most estimated cycles (``blocks``: the trace's list)."""
        out = []
        for bid, (runs, ninsn, cyc) in sorted(self.blocks.items(), key=lambda kv: -kv[1][2])[:top]:
            b = blocks[bid]
            out.append({"function": b.func, "pc": f"{b.pc:#x}", "runs": int(runs), "instructions": int(ninsn),
                        "cycles": round(cyc, 1), "cycles_per_run": round(cyc / runs, 2) if runs else None,
                        "share_pct": round(100.0 * cyc / self.cycles, 2) if self.cycles else None,
                        "code": [i.text for i in b.insns]})
        return out

    def groups(self) -> dict[str, float]:
        out = {g: 0.0 for g in GROUPS}
        for k, v in self.class_cycles.items():
            out[GROUP_OF.get(k, "other")] += v
        return out

    def to_json(self, top_functions: int = 8) -> dict[str, Any]:
        funcs = sorted(self.functions.items(), key=lambda kv: -kv[1][1])[:top_functions]
        return {
            "instructions": self.instructions, "cycles": round(self.cycles, 1),
            "cycles_per_instruction": round(self.cycles / self.instructions, 4) if self.instructions else None,
            "classes": {k: {"instructions": self.class_instructions.get(k, 0), "cycles": round(v, 1)}
                        for k, v in sorted(self.class_cycles.items(), key=lambda kv: -kv[1])},
            "branches_taken": self.taken, "branches_not_taken": self.not_taken,
            "functions": [{"name": n, "instructions": int(i), "cycles": round(c, 1)} for n, (i, c) in funcs],
        }


def price(trace: Trace, model: TimingModel) -> list[SegmentStats]:
    """Statistics of every segment of ``trace`` under ``model``."""
    blocks = trace.blocks
    costs: dict[int, TBCost] = {}
    adjust: dict[tuple[int, int], float] = {}
    out = []
    for seg in trace.segments:
        st = SegmentStats()
        for key, n in seg.items():
            a, b = Trace.unpack(key)
            if a == 0:
                continue  # a block that did not run
            A = blocks[a]
            c = costs.get(a)
            if c is None:
                c = costs[a] = model.block_cost(A.insns, A.nbytes, A.pc)
            taken = c.branch_last and (not c.cond_last or b == 0 or blocks[b].pc != A.fallthrough)
            cyc = c.cycles_taken if taken else c.cycles_nt
            classes = c.classes_taken if taken else c.classes_nt
            if c.branch_last:
                if taken:
                    st.taken += n
                else:
                    st.not_taken += n
            adj = 0.0
            if b and not taken:
                adj = adjust.get((a, b))
                if adj is None:
                    B = blocks[b]
                    adj = adjust[(a, b)] = model.boundary_adjust(A.insns[-1] if A.insns else None,
                                                                 B.insns[0] if B.insns else None)
                if adj:
                    first = blocks[b].insns[0].cls
                    st.class_cycles[first] = st.class_cycles.get(first, 0.0) + adj * n
            ninsn = len(A.insns)
            st.instructions += ninsn * n
            st.cycles += (cyc + adj) * n
            for k, v in classes.items():
                st.class_cycles[k] = st.class_cycles.get(k, 0.0) + v * n
            for k, v in c.counts.items():
                st.class_instructions[k] = st.class_instructions.get(k, 0) + v * n
            f = st.functions.setdefault(A.func, [0, 0.0])
            f[0] += ninsn * n
            f[1] += (cyc + adj) * n
            bl = st.blocks.setdefault(a, [0, 0, 0.0])
            bl[0] += n
            bl[1] += ninsn * n
            bl[2] += (cyc + adj) * n
        out.append(st)
    return out
