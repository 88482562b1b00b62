"""Human-readable reports of a bundle's manifest."""
from __future__ import annotations

from pathlib import Path

from .sanitize import terminal_text


def _kib(n) -> str:
    return "n/a" if n is None else f"{n:,} B ({n / 1024:.1f} KiB)"


def format_table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    """A plain-text table; ``align`` is one char per column, 'l' or 'r' (default: r for numbers)."""
    # cells may hold names from a model file: control characters are shown escaped, never sent raw
    cells = [[terminal_text(c, limit=120) for c in r] for r in rows]
    headers = [terminal_text(h) for h in headers]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    if align is None:
        align = "".join("r" if rows and isinstance(rows[0][i], (int, float)) else "l" for i in range(len(headers)))

    def line(vals):
        return "  ".join(v.rjust(w) if a == "r" else v.ljust(w) for v, w, a in zip(vals, widths, align)).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    return "\n".join(out)


def compile_report(man: dict, where: str | Path | None = None, run: dict | None = None) -> str:
    """The compile summary of a manifest; ``run``: the bundle's checked ``run.json``
    (:func:`edgecomp.run_results.load`), whose instructions the float layers' lines show."""
    t = terminal_text
    lines = []
    title = f"edgecomp bundle for {t(man.get('target', '?'))}"
    if where is not None:
        title += f": {t(where)}"
    lines.append(title)
    opts = man.get("options", {})
    if isinstance(opts, dict) and opts:
        lines.append("  options: " + ", ".join(f"{t(k)}={t(v)}" for k, v in sorted(opts.items())))
    if isinstance(man.get("kernels_note"), str):
        lines.append(f"  kernels: {t(man['kernels_note'])}")
    for io_key in ("inputs", "outputs"):
        for io in man.get(io_key, []):
            if not isinstance(io, dict):
                continue
            q = io.get("quantization")
            try:
                qs = f" scale={float(q['scale'][0]):.6g} zero_point={int(q['zero_point'][0])}" if q else ""
            except (KeyError, IndexError, TypeError, ValueError):
                qs = " (quantization unreadable)"
            lines.append(f"  {io_key[:-1]:6s} {t(io.get('name'))}: {t(io.get('dtype'))} {t(io.get('shape'))} "
                         f"{t(io.get('layout', ''))}{qs}")
    num = lambda k: isinstance(man.get(k), int) and not isinstance(man.get(k), bool)  # noqa: E731
    if num("params"):
        lines.append(f"  parameters: {man['params']:,}")
    if num("macs"):
        lines.append(f"  MACs per inference: {man['macs']:,}")
    if num("flash_bytes"):
        lines.append(f"  flash (.text+.rodata+.data): {_kib(man['flash_bytes'])}")
    if num("ram_bytes"):
        ram = man.get("ram", {}) if isinstance(man.get("ram"), dict) else {}
        parts = ", ".join(f"{t(k).replace('_bytes', '')} {v:,}" for k, v in ram.items() if isinstance(v, int))
        lines.append(f"  RAM: {_kib(man['ram_bytes'])}" + (f" = {parts}" if parts else ""))
    fit = man.get("fits")
    if isinstance(fit, dict):
        for k, v in fit.items():
            lines.append(f"  fits {t(k)}: {t(v)}")
    q = man.get("quantization")
    if isinstance(q, dict):
        lines += quantization_lines(q, run, bundle=where, target=man.get("target"))
    layers = [l for l in man.get("layers", []) or [] if isinstance(l, dict)]
    if layers:
        rows = [[i, l.get("name", ""), l.get("op", ""),
                 "x".join(map(str, l.get("out_shape", []))) if isinstance(l.get("out_shape"), list) else "",
                 l.get("macs", 0)] for i, l in enumerate(layers)]
        lines.append("")
        lines.append(format_table(["#", "layer", "op", "output", "MACs"], rows, "rllrr"))
    return "\n".join(lines)


def print_compile_report(man: dict, where=None, run: dict | None = None) -> None:
    print(compile_report(man, where, run))


#: The SQNR the quantization report writes for a tensor computed exactly (quant_report.EXACT_DB).
_EXACT_DB = 99.0


def _float_instructions(floats: list, run: dict | None, bundle, target) -> tuple[dict, list[str]]:
    """({float layer name: its line's instruction part}, summary lines): from ``run`` (run.json), or
    one line saying how to measure them."""
    if not floats:
        return {}, []
    if run is None:
        b = str(bundle) if bundle is not None else "BUNDLE"
        how = (f"`edgecomp run {b}` (QEMU) measures them; `edgecomp report {b}` then shows them"
               if target != "host" else "compile for a Cortex-M target (-t cortex-m4), `edgecomp run` the bundle "
               "(QEMU), then `edgecomp report` it")
        return {}, [f"    instructions of the float layers: not measured yet; {how}"]
    total = run["total_instructions"]
    by_name = {}
    for layer in run["layers"]:
        by_name.setdefault(layer["name"], layer.get("instructions"))
    parts, own = {}, 0
    for f in floats:
        n = by_name.get(str(f.get("name")))
        if n is not None:
            own += n
            parts[str(f.get("name"))] = f"{n:,} instructions ({100 * n / total:.1f} % of the inference)" if total                 else f"{n:,} instructions"
    conv = sum(layer.get("instructions") or 0 for layer in run["layers"]
               if layer.get("op") in ("quantize", "dequantize"))
    summary = (f"    float layers: {own:,} of {total:,} instructions per inference"
               + (f" ({100 * own / total:.1f} %)" if total else "")
               + (f", plus {conv:,} in quantize / dequantize conversions" if conv else "")
               + f", measured by `edgecomp run` ({run['emulator']})")
    return parts, [summary]


def quantization_lines(rep: dict, run: dict | None = None, bundle=None, target=None) -> list[str]:
    """The manifest's quantization report (edgecomp.compress.quant_report) as text lines; the float
    layers' measured instructions from ``run`` (the bundle's run.json), or how to measure them."""
    if not isinstance(rep, dict):
        return []
    lines = []
    if rep.get("samples"):
        lines.append(f"  quantization: int8 against the float model on {rep['samples']} {rep.get('data', '')} "
                     "sample(s)")
        e = rep.get("end_to_end") or {}
        parts = []
        if e.get("top1_agreement") is not None:
            parts.append(f"top-1 agreement {100 * e['top1_agreement']:.1f} %")
        if e.get("accuracy_float") is not None:
            parts.append(f"accuracy float {100 * e['accuracy_float']:.1f} % -> int8 {100 * e['accuracy_int8']:.1f} %")
        if e.get("output_sqnr_db") is not None:
            parts.append(f"output SQNR {e['output_sqnr_db']:.1f} dB")
        if e.get("cosine") is not None:
            parts.append(f"cosine {e['cosine']:.4f}")
        if rep.get("input_sqnr_db") is not None:
            db = rep["input_sqnr_db"]
            parts.append("input exact" if db == _EXACT_DB else f"input SQNR {db:.1f} dB")
        if parts:
            lines.append("    end to end: " + ", ".join(parts))
        layers = rep.get("layers") or []
        if layers:
            w = max(len(str(l.get("name", ""))) for l in layers)
            lines.append(f"    {'layer'.ljust(w)}  {'op':18s} SQNR dB")
            for l in layers:
                db = l.get("sqnr_db")
                lines.append(f"    {str(l.get('name', '')).ljust(w)}  {str(l.get('op', '')):18s} "
                             f"{'-' if db is None else ('exact' if db == _EXACT_DB else format(db, '.1f'))}")
    elif rep.get("note"):
        lines.append(f"  quantization: {rep['note']}")
    floats = [f for f in rep.get("float_layers") or [] if isinstance(f, dict)]
    measured, summary = _float_instructions(floats, run, bundle, target)
    for f in floats:
        lines.append(f"    left in float: {f.get('name')} ({f.get('op')}): {f.get('reason')}; "
                     f"{f.get('float_macs', 0):,} float MACs, +{f.get('extra_flash_bytes', 0):,} B of weights"
                     + (f", {f['float_ram_bytes']:,} B float32 output" if isinstance(f.get("float_ram_bytes"), int)
                        else "")
                     + (f"; {measured[str(f.get('name'))]}" if str(f.get("name")) in measured else ""))
    lines += summary
    for w in rep.get("warnings") or []:
        lines.append(f"    warning: {w}")
    return [terminal_text(line) for line in lines]  # layer names come from the model: escaped
