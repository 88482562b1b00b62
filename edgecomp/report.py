"""Human-readable reports of a bundle's manifest."""
from __future__ import annotations

from pathlib import Path


def _kib(n) -> str:
    return "n/a" if n is None else f"{n:,} B ({n / 1024:.1f} KiB)"


def format_table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    """A plain-text table; ``align`` is one char per column, 'l' or 'r' (default: r for numbers)."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    if align is None:
        align = "".join("r" if rows and isinstance(rows[0][i], (int, float)) else "l" for i in range(len(headers)))

    def line(vals):
        return "  ".join(v.rjust(w) if a == "r" else v.ljust(w) for v, w, a in zip(vals, widths, align)).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    return "\n".join(out)


def compile_report(man: dict, where: str | Path | None = None) -> str:
    lines = []
    title = f"edgecomp bundle for {man.get('target', '?')}"
    if where is not None:
        title += f": {where}"
    lines.append(title)
    opts = man.get("options", {})
    if opts:
        lines.append("  options: " + ", ".join(f"{k}={v}" for k, v in sorted(opts.items())))
    for io_key in ("inputs", "outputs"):
        for io in man.get(io_key, []):
            q = io.get("quantization")
            qs = f" scale={q['scale'][0]:.6g} zero_point={q['zero_point'][0]}" if q else ""
            lines.append(f"  {io_key[:-1]:6s} {io.get('name')}: {io.get('dtype')} {io.get('shape')} "
                         f"{io.get('layout', '')}{qs}")
    if "params" in man:
        lines.append(f"  parameters: {man['params']:,}")
    if "macs" in man:
        lines.append(f"  MACs per inference: {man['macs']:,}")
    if "flash_bytes" in man:
        lines.append(f"  flash (.text+.rodata+.data): {_kib(man['flash_bytes'])}")
    if "ram_bytes" in man:
        ram = man.get("ram", {})
        parts = ", ".join(f"{k.replace('_bytes', '')} {v:,}" for k, v in ram.items() if isinstance(v, int))
        lines.append(f"  RAM: {_kib(man['ram_bytes'])}" + (f" = {parts}" if parts else ""))
    fit = man.get("fits")
    if isinstance(fit, dict):
        for k, v in fit.items():
            lines.append(f"  fits {k}: {v}")
    q = man.get("quantization")
    if isinstance(q, dict):
        from .compress.quant_report import format_report
        lines += format_report(q)
    layers = man.get("layers", [])
    if layers:
        rows = [[i, l.get("name", ""), l.get("op", ""), "x".join(map(str, l.get("out_shape", []))), l.get("macs", 0)]
                for i, l in enumerate(layers)]
        lines.append("")
        lines.append(format_table(["#", "layer", "op", "output", "MACs"], rows, "rllrr"))
    return "\n".join(lines)


def print_compile_report(man: dict, where=None) -> None:
    print(compile_report(man, where))
