"""Latency probes: parse the ``@ec`` lines a bundle prints, and report them.

Every device prints the same line-oriented format (docs/internals.md, "Probe
lines") on semihosting, a UART or the host's stdout::

    @ec begin model=<name> layers=<n> unit=<cycles|systick|instructions|ns>
    @ec layer <index> <ticks>
    @ec total <ticks>
    @ec stack <bytes>
    @ec end

:func:`parse_probe` reads them out of any text (boot messages, noise, ``\\r``,
a partial last line and garbage are skipped); :func:`layer_table` joins the
ticks with the layers recorded in the bundle's ``manifest.json`` and renders a
table, JSON or a bar chart.  :func:`read_serial` collects the lines from a
board's serial port.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections import deque
from typing import Any, Iterable, Iterator

from .errors import EdgecompError, ToolError

UNITS = ("cycles", "systick", "instructions", "ns")
_LINE = re.compile(r"@ec (begin|layer|total|stack|end|fault|error)\b(.*)$")
_UINT = re.compile(r"[0-9]{1,20}")
#: More layers than any bundle has: a larger count or index in a probe line is noise, not a reason
#: to build a table of billions of rows.
MAX_LAYERS = 1 << 16


@dataclass
class ProbeReport:
    """One ``@ec begin`` ... ``@ec end`` block."""

    model: str | None = None
    layers: int | None = None
    unit: str | None = None
    layer_ticks: dict[int, int] = field(default_factory=dict)
    total: int | None = None
    stack: int | None = None
    complete: bool = False  # saw "@ec end"
    faults: list[str] = field(default_factory=list)  # "@ec fault" / "@ec error" lines

    def ticks_list(self) -> list[int | None]:
        """Ticks per layer index 0..layers-1 (None where a line is missing)."""
        n = self.layers if self.layers is not None else (max(self.layer_ticks, default=-1) + 1)
        return [self.layer_ticks.get(i) for i in range(n)]

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "layers": self.layers, "unit": self.unit,
                "layer_ticks": self.ticks_list(), "total": self.total, "stack": self.stack,
                "complete": self.complete, "faults": list(self.faults)}


#: Blocks kept while parsing (the last ones): 20 MB of "@ec begin" lines must not become
#: half a million reports in memory.
MAX_BLOCKS = 64
#: Characters of one line looked at (its end, where the marker is); longer lines are noise.
MAX_LINE = 4096
_EOL = re.compile(r"\r\n|\r|\n")
_NONPRINT = re.compile(r"[^ -~]+")


def _lines(text: str | bytes | Iterable[str]) -> Iterator[str]:
    """Complete lines of ``text`` (each cut to its last MAX_LINE characters), one at a time;
    an unterminated last fragment is dropped unless it is ``@ec end``."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if not isinstance(text, str):
        text = "\n".join(text) + "\n"
    pos = 0
    for m in _EOL.finditer(text):
        yield text[max(pos, m.start() - MAX_LINE):m.start()]
        pos = m.end()
    last = text[pos:]  # after the final newline: empty, or a partial line
    if last.strip() == "@ec end":
        yield last


def parse_probe_blocks(text: str | bytes | Iterable[str]) -> list[ProbeReport]:
    """Every probe block found in ``text``, in order."""
    blocks: deque[ProbeReport] = deque(maxlen=MAX_BLOCKS)
    cur: ProbeReport | None = None
    for raw in _lines(text):
        # Keep only printable ASCII; a line may carry noise before the marker
        # (a boot message without a newline), so start at the last "@ec ".
        if "@" not in raw:
            continue
        line = _NONPRINT.sub("", raw).rstrip()
        at = line.rfind("@ec ")
        if at < 0:
            continue
        m = _LINE.match(line[at:])
        if not m:
            continue
        kind, rest = m.group(1), m.group(2).split()
        if kind == "begin":
            kv = dict(tok.split("=", 1) for tok in rest if "=" in tok)
            layers = kv.get("layers", "")
            cur = ProbeReport(model=kv.get("model") or None,
                              layers=int(layers) if _UINT.fullmatch(layers) and int(layers) <= MAX_LAYERS else None,
                              unit=kv.get("unit") if kv.get("unit") in UNITS else None)
            blocks.append(cur)
            continue
        if kind in ("fault", "error"):
            if cur is None:
                cur = ProbeReport()
                blocks.append(cur)
            if len(cur.faults) < 16:
                cur.faults.append(f"{kind}: {' '.join(rest)}"[:200].strip())
            continue
        if cur is None or cur.complete:
            continue  # a line outside a block: the start was lost
        if kind == "end":
            cur.complete = True
        elif kind == "layer":
            if len(rest) == 2 and all(_UINT.fullmatch(t) for t in rest):
                idx, ticks = int(rest[0]), int(rest[1])
                if idx < (MAX_LAYERS if cur.layers is None else cur.layers):
                    cur.layer_ticks[idx] = ticks
        elif len(rest) == 1 and _UINT.fullmatch(rest[0]):
            if kind == "total":
                cur.total = int(rest[0])
            else:
                cur.stack = int(rest[0])
    return list(blocks)


def parse_probe(text: str | bytes | Iterable[str]) -> ProbeReport:
    """The last complete probe block in ``text`` (or the last partial one).

    Raises :class:`EdgecompError` when there is no ``@ec begin`` line at all.
    """
    blocks = parse_probe_blocks(text)
    if not blocks:
        raise EdgecompError("no probe lines (@ec begin ...) in the device output", None,
                            "check that the firmware was built with the probe and that the right port/baud is read")
    complete = [b for b in blocks if b.complete]
    return complete[-1] if complete else blocks[-1]


# --------------------------------------------------------------------------- tables
def _as_report(result: Any) -> tuple[list[int | None], int | None, str | None, int | None, float | None]:
    """(layer ticks, total, unit, stack, instructions per tick) from a RunResult or ProbeReport."""
    if isinstance(result, ProbeReport):
        return result.ticks_list(), result.total, result.unit, result.stack, None
    if isinstance(result, (str, bytes)):
        return _as_report(parse_probe(result))
    ticks = list(getattr(result, "layer_ticks", []) or [])
    total = getattr(result, "total_ticks", None)
    insns = getattr(result, "instructions_per_inference", None)
    per_tick = insns / total if insns and total else None
    return ticks, total, getattr(result, "unit", None), getattr(result, "stack_peak", None), per_tick


def _ms_per_tick(unit: str | None, clock_hz: float | None, insns_per_tick: float | None = None) -> float | None:
    if unit == "ns":
        return 1e-6
    if unit in ("cycles", "systick", "instructions") and clock_hz:
        # On silicon SysTick counts core cycles.  Under QEMU a tick is
        # `insns_per_tick` instructions, each taken as one cycle.
        return (insns_per_tick or 1.0) * 1e3 / float(clock_hz)
    return None


@dataclass
class LayerTable:
    rows: list[dict[str, Any]]
    unit: str | None
    total_ticks: int | None
    stack_bytes: int | None = None
    clock_hz: float | None = None
    total_ms: float | None = None
    insns_per_tick: float | None = None
    model: str | None = None

    def to_json(self) -> dict[str, Any]:
        d = {"model": self.model, "unit": self.unit, "total_ticks": self.total_ticks,
             "stack_bytes": self.stack_bytes, "clock_hz": self.clock_hz, "total_ms": self.total_ms,
             "layers": self.rows}
        if self.insns_per_tick:
            d["instructions_per_tick"] = self.insns_per_tick
            d["total_instructions"] = round(self.total_ticks * self.insns_per_tick) if self.total_ticks else None
        return d

    def render(self) -> str:
        from .report import format_table

        ms = self.clock_hz is not None or self.unit == "ns"
        kernels = any(r.get("kernel") for r in self.rows)  # bundles of this version say which kernel ran
        headers = ["#", "layer", "op", "output", "MACs", f"ticks ({self.unit or '?'})", "share %", "MACs/tick"]
        insns = bool(self.insns_per_tick)
        if insns:
            headers.append("instructions")
        if ms:
            headers.append("ms")
        if kernels:
            headers.append("kernel")
        rows = []
        for r in self.rows:
            row = [r["index"], r["name"], r["op"], "x".join(map(str, r["out_shape"])) if r["out_shape"] else "",
                   r["macs"], "-" if r["ticks"] is None else r["ticks"],
                   "-" if r["share_pct"] is None else f"{r['share_pct']:.1f}",
                   "-" if r["macs_per_tick"] is None else f"{r['macs_per_tick']:.2f}"]
            if insns:
                row.append("-" if r.get("instructions") is None else r["instructions"])
            if ms:
                row.append("-" if r.get("ms") is None else f"{r['ms']:.4g}")
            if kernels:
                row.append(r.get("kernel") or "")
            rows.append(row)
        text = format_table(headers, rows, "rlllrrrr" + "r" * (insns + ms) + "l" * kernels)
        lines = [text, ""]
        total = f"total: {self.total_ticks if self.total_ticks is not None else '?'} {self.unit or 'ticks'}"
        if self.insns_per_tick and self.total_ticks:
            total += f" = {round(self.total_ticks * self.insns_per_tick):,} instructions (QEMU -icount)"
        if self.total_ms is not None:
            total += f" = {self.total_ms:.4g} ms" + (f" at {self.clock_hz / 1e6:g} MHz" if self.clock_hz else "")
        lines.append(total)
        if self.stack_bytes is not None:
            lines.append(f"stack peak: {self.stack_bytes} bytes")
        return "\n".join(lines)

    __str__ = render

    def plot(self, path: str | Path) -> Path:
        """Horizontal bar chart of ticks per layer, as a PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = [f"{r['index']} {r['name']}" for r in self.rows]
        vals = [r["ticks"] or 0 for r in self.rows]
        fig, ax = plt.subplots(figsize=(8, 0.35 * max(len(names), 3) + 1.2))
        ax.barh(range(len(names)), vals, color="#3b75af")
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(f"ticks ({self.unit or '?'})")
        ax.set_title(f"latency per layer{' - ' + self.model if self.model else ''}")
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path, format="png", dpi=100)
        plt.close(fig)
        return path


def layer_table(manifest: dict | None, result: Any, clock_hz: float | None = None) -> LayerTable:
    """Join probe ticks (a RunResult, ProbeReport or raw text) with the manifest's layers."""
    ticks, total, unit, stack, per_tick = _as_report(result)
    layers = list((manifest or {}).get("layers", []))
    if manifest is not None and layers and ticks and len(ticks) != len(layers):
        raise EdgecompError(f"the probe reports {len(ticks)} layers but the bundle has {len(layers)}",
                            "probe output", "read the probe of the firmware built from this bundle")
    if clock_hz is None and unit == "cycles":
        clock_hz = ((manifest or {}).get("target_info") or {}).get("clock_hz")
    msk = _ms_per_tick(unit, clock_hz, per_tick)
    known = [t for t in ticks if t is not None]
    denom = total if total else sum(known) or None
    rows = []
    carried = 0  # MACs of a layer computed row by row inside the next one (its ticks are that one's)
    for i in range(max(len(layers), len(ticks))):
        info = layers[i] if i < len(layers) else {}
        t = ticks[i] if i < len(ticks) else None
        macs = int(info.get("macs", 0) or 0)
        op = info.get("op", "")
        if info.get("fused_into"):
            op += f" (in {info['fused_into']})"
        rate_macs = macs + carried
        carried = macs if info.get("fused_into") else 0
        rows.append({
            "index": i, "name": info.get("name", f"layer{i}"), "op": op, "kernel": info.get("kernel", ""),
            "out_shape": list(info.get("out_shape", [])), "macs": macs, "ticks": t,
            "share_pct": (100.0 * t / denom) if (t is not None and denom) else None,
            "macs_per_tick": (rate_macs / t) if (t and rate_macs and not carried) else None,
            "ms": (t * msk) if (t is not None and msk) else None,
        })
        if per_tick:
            rows[-1]["instructions"] = round(t * per_tick) if t is not None else None
    return LayerTable(rows=rows, unit=unit, total_ticks=total, stack_bytes=stack, clock_hz=clock_hz,
                      total_ms=(total * msk) if (total is not None and msk) else None,
                      insns_per_tick=per_tick, model=(manifest or {}).get("name"))


# --------------------------------------------------------------------------- serial
def read_serial(port: str, baud: int = 115200, timeout: float = 10.0) -> str:
    """Read a board's serial output until ``@ec end`` (or ``timeout`` seconds); return the text."""
    try:
        import serial
    except ImportError:  # pragma: no cover
        raise ToolError("pyserial is not installed", None, "pip install pyserial") from None
    try:
        ser = serial.Serial(port, baudrate=baud, timeout=0.1)
    except (serial.SerialException, OSError, ValueError) as e:
        raise ToolError(f"cannot open serial port {port}: {e}", port,
                        "check the port name (e.g. /dev/ttyACM0), that the board is plugged in and "
                        "that you may use it (group dialout)") from None
    buf = bytearray()
    deadline = time.monotonic() + timeout
    try:
        with ser:
            while time.monotonic() < deadline:
                chunk = ser.read(4096)
                if chunk:
                    buf += chunk
                    if re.search(rb"@ec end\s*[\r\n]", bytes(buf)):
                        break
    except serial.SerialException as e:
        raise ToolError(f"serial port {port} failed while reading: {e}", port,
                        "check the cable and that no other program uses the port") from None
    return buf.decode("utf-8", errors="replace")


def probe_serial(port: str, baud: int = 115200, timeout: float = 10.0, bundle: str | Path | None = None,
                 clock_hz: float | None = None, as_json: bool = False, plot: str | Path | None = None) -> int:
    """`edgecomp probe`: read the probe from a board's serial port and print the table."""

    text = read_serial(port, baud, timeout)
    try:
        report = parse_probe(text)
    except EdgecompError:
        raise ToolError(f"no probe lines arrived on {port} within {timeout:g} s", port,
                        "reset the board after starting the probe, check the baud rate, "
                        "and make sure ec_putc() sends to this UART") from None
    if report.faults:
        raise ToolError(f"the firmware reported: {'; '.join(report.faults)}", port,
                        "check the model's RAM use against the board and the stack size")
    if not report.complete:
        got = f"{len(report.layer_ticks)} of {report.layers if report.layers is not None else '?'} layer lines"
        raise ToolError(f"the probe block from {port} has no end line (@ec end) within {timeout:g} s ({got}, "
                        f"total {'missing' if report.total is None else 'seen'})", port,
                        "The board may have stopped or reset during the inference: reset it after starting "
                        "the probe, or give a longer --timeout")
    from .bundle import read_bundle_manifest
    manifest = read_bundle_manifest(Path(bundle)) if bundle else None
    table = layer_table(manifest, report, clock_hz=clock_hz)
    if as_json:
        print(json.dumps(table.to_json(), indent=2))
    else:
        print(table.render())
    if plot:
        table.plot(plot)
    return 0
