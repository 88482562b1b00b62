"""Run a Cortex-M bundle: under QEMU (``emulate=True``) or natively with gcc.

The firmware reads ``ec_input.bin`` and writes ``ec_output.bin`` through
semihosting in the folder QEMU runs in, and prints the probe lines.  QEMU runs
with ``-icount shift=0``: one instruction is one virtual nanosecond, so SysTick
counts are deterministic instruction counts (``insns_per_systick`` in the
target file; 40 on the 25 MHz mps2 boards).
"""
from __future__ import annotations

import math
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EdgecompError, ToolError
from ..targets import Target, load_target
from .emulator import INPUT_FILE, OUTPUT_FILE, FirmwareRun, qemu_command, run_firmware  # noqa: F401

@dataclass
class RunResult:
    outputs: Any  # [N, ...] raw outputs as the firmware produced them (a list, one per output, for several)
    layer_ticks: list[int]  # first inference, per layer, in `unit`
    total_ticks: int | None
    unit: str | None  # "systick" (QEMU, Cortex-M0), "cycles" (DWT), "ns" (host)
    stack_peak: int | None  # bytes of stack used by one ec_invoke
    instructions_per_inference: int | None  # QEMU only: total_ticks * insns_per_systick
    emulated: bool = False
    machine: str | None = None
    log: str = field(default="", repr=False)
    cycles: Any = None  # edgecomp.cycles.CycleReport when run with cycles=True (estimated cycles per layer)


def run_bundle(bundle_dir: str | Path, inputs: np.ndarray, *, target: str | Target | None = None,
               emulate: bool = True, timeout: float | None = None, progress: bool = True,
               cycles: bool = False, clock_hz: float | None = None) -> RunResult:
    """Build the bundle if needed and run ``inputs`` [N, ...] through it (a list of such arrays, one
    per input in the manifest's order, for a model of several inputs; the outputs are then a list).

    ``emulate=True`` runs the Cortex-M firmware under QEMU (a board without an
    emulator runs on its ``emulate_with`` target); ``emulate=False`` or target
    ``host`` builds the same sources with the host's gcc and runs them natively.
    ``cycles=True`` also traces the first inference under QEMU and estimates its cycles per layer on
    the target's core (``RunResult.cycles``, :mod:`edgecomp.cycles`; ms at ``clock_hz`` or the target's).
    """
    from .. import workdirs
    from ..integrity import read_checked_manifest
    from .cortex_m import build, stage_bundle, write_firmware

    bundle_dir = Path(bundle_dir).resolve()
    man = read_checked_manifest(bundle_dir)
    tgt = load_target(target or man.get("target") or "")
    if tgt.kind not in ("cortex-m", "host"):
        raise EdgecompError(f"target {tgt.name!r} does not run C firmware", str(bundle_dir),
                            "run a Raspberry Pi bundle on the Pi (edgecomp deploy)")
    if not man.get("inputs") or not man.get("outputs"):
        raise EdgecompError("the bundle's manifest lists no inputs or outputs", str(bundle_dir),
                            "compile the bundle again")
    several = isinstance(inputs, (list, tuple))
    xs = list(inputs) if several else [inputs]
    if len(xs) != len(man["inputs"]):
        raise EdgecompError(f"{len(xs)} input array(s) for a model of {len(man['inputs'])} inputs", str(bundle_dir),
                            "pass one array [N, ...] per input, in the manifest's order")
    xs = [_checked_input(bundle_dir, io, x) for io, x in zip(man["inputs"], xs)]
    outs = [_io_shape(bundle_dir, io) for io in man["outputs"]]
    n = xs[0].shape[0]
    if any(v.shape[0] != n for v in xs):
        raise EdgecompError(f"input arrays of {[v.shape[0] for v in xs]} samples", str(bundle_dir),
                            "pass the same number of samples for every input")
    x = xs[0]
    out_bytes = sum(math.prod(s) * d.itemsize for s, d in outs)  # (bytes per sample)

    host = tgt.is_host or not emulate
    if host and (bundle_dir / "ec_kernels_mve.c").is_file():  # (the bundle's own files are checked below)
        raise EdgecompError("the bundle runs Helium (MVE) kernels, which only a core with MVE executes "
                            "(they have no plain C version for the host)", str(bundle_dir),
                            "run it under QEMU (edgecomp run without --host), or compile it with --kernels dsp "
                            "(or for target host) to run it natively")
    if cycles:
        from ..cycles import check_target
        if host:
            raise EdgecompError("estimated cycles need the emulator", str(bundle_dir),
                                "run with --emulate (the default) on a Cortex-M bundle")
        check_target(tgt)
    emu: Target | None = None
    if not host:
        if tgt.emulated:
            emu = tgt
        elif tgt.emulate_with:
            import dataclasses
            emu = dataclasses.replace(load_target(tgt.emulate_with), cpu_flags=tgt.cpu_flags)
        else:
            raise EdgecompError(f"target {tgt.name!r} has no emulator", str(bundle_dir),
                                "flash it to the board (edgecomp flash) or run natively with emulate=False")
    if emu is not None and shutil.which("qemu-system-arm") is None:  # before building anything
        raise ToolError("qemu-system-arm was not found on PATH", None,
                        "install it (Debian/Ubuntu: apt-get install qemu-system-arm), or run the bundle "
                        "natively with emulate=False (edgecomp run --host)")
    if timeout is None:
        timeout = 60.0 + 2.0 * n
    # Everything happens in a private folder outside the bundle: the checked copy of its
    # listed files, the build, the input and output files.  The bundle stays as compiled.
    with workdirs.work_dir("run") as work:
        src = work / "bundle"
        src.mkdir()
        stage_bundle(bundle_dir, src)  # the checked copy; the build below compiles exactly it
        if emu is not None and emu is not tgt:
            # Same core, emulated machine's memory map: the same sources with that machine's shell.
            write_firmware(src, emu, str(man.get("name") or "model"), probe=True)
        built = build(src, emu or tgt, build_dir=work / "build", host=host)
        io_dir = work / "io"
        io_dir.mkdir()
        # each sample's inputs one after the other (the harness reads them so)
        np.concatenate([np.ascontiguousarray(v).reshape(n, -1).view(np.uint8) for v in xs], axis=1).tofile(
            io_dir / INPUT_FILE)
        if progress and n > 1 and emu is not None:
            print(f"running {n} input(s) under QEMU {emu.qemu_machine} (-icount shift=0)...", file=sys.stderr,
                  flush=True)
        fr = run_firmware(built.elf, emu, io_dir, timeout=timeout, progress_total=n if progress else None,
                          output_bytes=out_bytes)
        raw = (io_dir / OUTPUT_FILE).read_bytes() if (io_dir / OUTPUT_FILE).exists() else b""
        rep = fr.report
        insns = None
        if emu is not None and rep.unit == "systick" and rep.total is not None and emu.insns_per_systick:
            insns = int(round(rep.total * emu.insns_per_systick))
        est = None
        if cycles:  # (inside the private folder: the traced run needs the ELF just built)
            from ..cycles import estimate_firmware
            est = estimate_firmware(built.elf, emu, tgt, x[:1], man, clock_hz=clock_hz, probe_instructions=insns,
                                    timeout=timeout + 60.0)
    want = n * out_bytes
    if len(raw) != want:
        raise ToolError(f"the firmware wrote {len(raw)} output bytes, expected {want}", str(bundle_dir),
                        "the bundle's manifest and its model.h disagree; compile the bundle again")
    per, at, got = np.frombuffer(raw, np.uint8).reshape(n, out_bytes), 0, []
    for s_, d in outs:
        b = math.prod(s_) * d.itemsize
        got.append(per[:, at:at + b].copy().view(d).reshape((n,) + s_))
        at += b
    outputs = got if several or len(outs) > 1 else got[0]
    return RunResult(outputs=outputs, layer_ticks=[t if t is not None else 0 for t in rep.ticks_list()],
                     total_ticks=rep.total, unit=rep.unit, stack_peak=rep.stack,
                     instructions_per_inference=insns, emulated=emu is not None,
                     machine=emu.qemu_machine if emu else None, log=fr.stdout, cycles=est)


def _io_shape(bundle_dir, io: dict) -> tuple[tuple[int, ...], np.dtype]:
    """A manifest entry's per-sample shape and dtype (checked)."""
    try:
        dtype, shape = np.dtype(io["dtype"]), [int(d) for d in io["shape"]]
        if dtype.kind not in "iuf" or min(shape) < 1 or math.prod(shape) > 1 << 28:
            raise ValueError
    except (KeyError, TypeError, ValueError):
        raise EdgecompError("the bundle's manifest has malformed inputs or outputs", str(bundle_dir),
                            "compile the bundle again") from None
    return (tuple(shape[1:]) if len(shape) > 1 else tuple(shape)), dtype


def _checked_input(bundle_dir, io: dict, x) -> np.ndarray:
    """Samples [N, ...] of one input, whole and of its dtype."""
    shape, dtype = _io_shape(bundle_dir, io)
    elems = math.prod(shape)
    x = np.asarray(x)
    if x.ndim == 0 or x.shape[0] == 0 or x.size != x.shape[0] * elems:
        raise EdgecompError(f"inputs of shape {x.shape} do not hold whole samples of {elems} elements",
                            str(bundle_dir), f"pass an array [N, {', '.join(map(str, shape))}]")
    if x.dtype != dtype:
        if dtype.kind == "i" and x.dtype.kind == "f":
            raise EdgecompError(f"float inputs given to an {dtype} model", str(bundle_dir),
                                "quantize them first (edgecomp.api.run_bundle does it from the manifest)")
        x = x.astype(dtype)
    return x
