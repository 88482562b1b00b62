"""Estimated cycles of one inference, per layer: the table, JSON and bar chart `edgecomp run
--cycles` shows beside the exact instruction counts.

Every output says what the numbers are: estimates from a timing table over the instructions
QEMU executed, not measurements on silicon (docs/cycles.md lists what the model cannot see).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .account import GROUPS, SegmentStats

DISCLAIMER = ("estimated cycles: the core's timing table ({table}) applied to the instructions QEMU executed; "
              "not a measurement (no flash misses, bus contention or branch mispredictions: docs/cycles.md)")
_SHORT = {"load/store": "ld/st", "multiply/MAC": "mul", "ALU/SIMD": "alu", "branch": "br", "FP/vector": "fp",
          "other": "other"}


@dataclass
class CycleReport:
    """Estimated cycles per layer of one inference (``layers[i]`` is the probe's layer i)."""

    model: dict[str, Any]                 # TimingModel.describe()
    layers: list[SegmentStats]
    probe_overhead: SegmentStats          # the probe's own timer reads around the layers
    total: SegmentStats                   # the whole measured inference (layers + overhead)
    manifest_layers: list[dict[str, Any]] = field(default_factory=list)
    clock_hz: float | None = None
    trace_seconds: float = 0.0
    probe_instructions: int | None = None  # the probe's count for the same inference (SysTick-exact)
    hot_blocks: list[list[dict[str, Any]]] = field(default_factory=list)  # per layer, the costliest blocks
    total_hot_blocks: list[dict[str, Any]] = field(default_factory=list)

    # ------------------------------------------------------------------ rows
    def rows(self) -> list[dict[str, Any]]:
        out = []
        carried = 0  # MACs of a layer computed row by row inside the next one
        for i, st in enumerate(self.layers):
            info = self.manifest_layers[i] if i < len(self.manifest_layers) else {}
            macs = int(info.get("macs", 0) or 0)
            rate_macs = macs + carried
            fused = bool(info.get("fused_into"))
            carried = macs if fused else 0
            groups = st.groups()
            mix = {g: round(100.0 * v / st.cycles, 1) for g, v in groups.items() if st.cycles and v}
            out.append({
                "index": i, "name": info.get("name", f"layer{i}"), "op": info.get("op", ""),
                "fused_into": info.get("fused_into"), "macs": macs, "instructions": st.instructions,
                "cycles": round(st.cycles, 1),
                "cycles_per_instruction": round(st.cycles / st.instructions, 3) if st.instructions else None,
                "cycles_per_mac": round(st.cycles / rate_macs, 3) if (rate_macs and st.cycles and not fused) else None,
                "ms": round(st.cycles * 1e3 / self.clock_hz, 4) if self.clock_hz else None,
                "share_pct": round(100.0 * st.cycles / self.total.cycles, 2) if self.total.cycles else None,
                "mix_pct": mix,
            })
        return out

    def macs(self) -> int:
        return sum(int(m.get("macs", 0) or 0) for m in self.manifest_layers)

    def to_json(self) -> dict[str, Any]:
        tot = self.total
        macs = self.macs()
        return {
            "estimate": True,
            "note": DISCLAIMER.format(table=self.model.get("table")),
            "timing_model": self.model,
            "clock_hz": self.clock_hz,
            "total_instructions": tot.instructions,
            "total_cycles": round(tot.cycles, 1),
            "total_ms": round(tot.cycles * 1e3 / self.clock_hz, 4) if self.clock_hz else None,
            "cycles_per_instruction": round(tot.cycles / tot.instructions, 4) if tot.instructions else None,
            "cycles_per_mac": round(tot.cycles / macs, 4) if macs else None,
            "probe_instructions": self.probe_instructions,
            "probe_overhead": {"instructions": self.probe_overhead.instructions,
                               "cycles": round(self.probe_overhead.cycles, 1)},
            "layers": [dict(r, detail=dict(st.to_json(), hot_blocks=hb))
                       for r, st, hb in zip(self.rows(), self.layers, self.hot_blocks or [[]] * len(self.layers))],
            "total_detail": dict(tot.to_json(top_functions=12), hot_blocks=self.total_hot_blocks),
            "trace_seconds": round(self.trace_seconds, 2),
        }

    # ------------------------------------------------------------------ text
    def render(self) -> str:
        from ..report import format_table

        ms = self.clock_hz is not None
        headers = ["#", "layer", "MACs", "instructions", "est. cycles", "cyc/instr", "cyc/MAC"]
        if ms:
            headers.append("est. ms")
        headers.append("cycles by class (%)")
        rows = []
        for r in self.rows():
            mix = " ".join(f"{_SHORT[g]} {v:.0f}" for g, v in sorted(r["mix_pct"].items(), key=lambda kv: -kv[1])
                           if v >= 1)
            row = [r["index"], r["name"] + (f" (in {r['fused_into']})" if r["fused_into"] else ""), r["macs"],
                   f"{r['instructions']:,}", f"{r['cycles']:,.0f}",
                   "-" if r["cycles_per_instruction"] is None else f"{r['cycles_per_instruction']:.2f}",
                   "-" if r["cycles_per_mac"] is None else f"{r['cycles_per_mac']:.2f}"]
            if ms:
                row.append("-" if r["ms"] is None else f"{r['ms']:.3f}")
            row.append(mix)
            rows.append(row)
        text = format_table(headers, rows, "rlrrrrr" + "r" * ms + "l")
        tot, macs = self.total, self.macs()
        line = (f"total (estimate): {tot.cycles:,.0f} cycles for {tot.instructions:,} instructions "
                f"({tot.cycles / max(tot.instructions, 1):.2f} cycles per instruction")
        if macs:
            line += f", {tot.cycles / macs:.2f} per MAC"
        line += ")"
        if ms:
            line += f" = {tot.cycles * 1e3 / self.clock_hz:.3f} ms at {self.clock_hz / 1e6:g} MHz"
        m = self.model
        mem = m.get("memory", {})
        model_line = (f"timing model: {m.get('table')} (table v{m.get('table_version')}, rules "
                      f"v{m.get('rules_version')}, {m.get('issue')}-issue; {m.get('source')})")
        if mem.get("flash_wait_states"):
            model_line += (f"; flash {mem['flash_wait_states']} wait states, "
                           + ("taken as hidden by the accelerator" if mem.get("flash_accelerator") else "counted"))
        return "\n".join([text, "", line, model_line, DISCLAIMER.format(table=m.get("table")) + "."])

    __str__ = render

    def plot(self, path: str | Path) -> Path:
        """Horizontal stacked bars: estimated cycles per layer by instruction group (PNG)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.rows()
        names = [f"{r['index']} {r['name']}" for r in rows]
        colors = ["#3b75af", "#e1812c", "#3a923a", "#c03d3e", "#9372b2", "#845b53"]
        fig, ax = plt.subplots(figsize=(9, 0.35 * max(len(names), 3) + 1.6))
        left = [0.0] * len(rows)
        for g, col in zip(GROUPS, colors):
            vals = [st.groups()[g] for st in self.layers]
            ax.barh(range(len(rows)), vals, left=left, color=col, label=g)
            left = [a + b for a, b in zip(left, vals)]
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(f"estimated cycles ({self.model.get('table')}; an estimate, not a measurement)")
        ax.set_title("estimated cycles per layer")
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path, format="png", dpi=100)
        plt.close(fig)
        return path
