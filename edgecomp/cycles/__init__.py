"""Estimated cycles, not only instructions: a Cortex-M timing model over the emulated run.

``edgecomp run --emulate --cycles`` runs the firmware a second time under QEMU with its
instruction log on (:mod:`.trace`), prices every executed instruction with the core's timing
table (:mod:`.model`, ``targets/timing/<core>.toml``) and reports estimated cycles per layer
beside the exact instruction counts (:mod:`.report`). docs/cycles.md describes the model, its
sources and its validation.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EdgecompError, ToolError
from .account import SegmentStats, price
from .model import TimingModel, load_model, model_for_target
from .report import CycleReport
from .trace import Trace, collect

__all__ = ["CycleReport", "TimingModel", "Trace", "check_target", "collect", "estimate_firmware", "load_model",
           "model_for_target", "price"]


def check_target(target) -> TimingModel:
    """The timing model for ``target``, or a clear error before anything runs."""
    if getattr(target, "kind", "cortex-m") != "cortex-m":
        raise EdgecompError(f"estimated cycles need a Cortex-M target, not {target.name!r}", None,
                            "run a Cortex-M bundle under QEMU (edgecomp run BUNDLE --emulate --cycles)")
    return model_for_target(target)


def estimate_firmware(elf: Path, emu, target, sample: np.ndarray, manifest: dict[str, Any], *,
                      clock_hz: float | None = None, probe_instructions: int | None = None,
                      timeout: float = 300.0) -> CycleReport:
    """Trace one inference of a bundle's firmware (``elf``, built for the emulated target ``emu``) on
    ``sample`` and estimate its cycles per layer on ``target``'s core (a board's own core, clock and
    flash wait states when it runs on ``emulate_with``).

    ``probe_instructions`` (the probe's count of the same inference) is checked against the trace:
    they must agree to within two SysTick ticks, or the trace was misread.
    """
    model = check_target(target)
    layers = list(manifest.get("layers", []))
    n = len(layers)
    with tempfile.TemporaryDirectory(prefix="edgecomp-cycles-") as td:
        from ..backends.emulator import INPUT_FILE
        np.ascontiguousarray(sample[:1]).tofile(Path(td) / INPUT_FILE)
        # Entries into ec_timer_now: measured_invoke's start, ec_invoke's LAYER_START, one per layer,
        # measured_invoke's end. Reading stops there.
        trace = collect(elf, emu, Path(td), stop_after=n + 3, timeout=timeout)
    if trace.boundaries < n + 3:
        raise ToolError(f"the traced run reached {trace.boundaries} probe points, expected {n + 3}", str(elf),
                        "the firmware must be built with the probe (edgecomp run builds it so); compile the "
                        "bundle again")
    stats = price(trace, model)
    per_layer = stats[2:n + 2]
    overhead = SegmentStats()
    overhead.add(stats[1])
    overhead.add(stats[n + 2])
    total = SegmentStats()
    for st in stats[1:n + 3]:
        total.add(st)
    if probe_instructions is not None:
        tick = float(getattr(emu, "insns_per_systick", None) or 1.0)
        if abs(total.instructions - probe_instructions) > 2 * tick + 64:
            raise ToolError(f"the instruction trace counts {total.instructions:,} instructions for the inference, "
                            f"the probe {probe_instructions:,}", str(elf),
                            "this is a bug in edgecomp's trace reader; report it with the QEMU version")
    return CycleReport(model=model.describe(), layers=per_layer, probe_overhead=overhead, total=total,
                       manifest_layers=layers, clock_hz=clock_hz or getattr(target, "clock_hz", None),
                       trace_seconds=trace.seconds, probe_instructions=probe_instructions,
                       hot_blocks=[st.hot_blocks(trace.blocks, top=8) for st in per_layer],
                       total_hot_blocks=total.hot_blocks(trace.blocks, top=16))
