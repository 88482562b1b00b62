"""Choosing among the trials: budgets, ranking with explicit ties, the Pareto set, table and plot.

Selection reads only the *validation* score of each trial (``row["score"]``: accuracy, or minus
the error).  Among the candidates that meet every budget the ranking is: higher validation score,
then (a tie) higher tie-break score (the mean log-probability of the true class, or minus the
mean squared error: finer than a count of right answers), then less flash, fewer instructions,
less RAM, then the label (so the order never depends on which trial finished first).
The test split is only read for the chosen candidate, on its compiled firmware
(:mod:`edgecomp.compress.finalize`).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["violations", "ranked", "select", "pareto_front", "results_markdown", "plot_pareto", "fmt_bytes"]

INF = float("inf")


def fmt_bytes(n) -> str:
    return "n/a" if n is None else f"{n / 1024:.1f} KiB"


def _num(v):
    return INF if v is None else v


def violations(r: dict, budgets: dict, base: float, task) -> dict:
    """{budget: relative excess} for every budget ``r`` misses (empty: it fits)."""
    v = {}
    for key, col in (("flash", "flash_bytes"), ("ram", "ram_bytes"), ("latency", "instructions")):
        lim = budgets.get(key)
        if lim is not None and r.get(col) is not None and r[col] > lim:
            v[key] = r[col] / lim - 1.0
    lim = budgets.get("max_drop")
    if lim is not None:
        drop = task.drop(base, r["score"])
        if drop > lim + 1e-9:
            v[task.budget_name.replace("max_", "")] = (drop - lim) / max(lim, 0.1)
    return v


def rank_key(r: dict) -> tuple:
    return (-r["score"], -(r.get("tiebreak") if r.get("tiebreak") is not None else -INF),
            _num(r.get("flash_bytes")), _num(r.get("instructions")), _num(r.get("ram_bytes")), r["label"])


def ranked(rows: list[dict], budgets: dict, base: float, task) -> list[dict]:
    """The rows meeting every budget, best first (see the module docstring for the order)."""
    return sorted((r for r in rows if not r.get("rejected") and not violations(r, budgets, base, task)), key=rank_key)


def select(rows: list[dict], budgets: dict, base: float, task) -> dict:
    """The chosen candidate (the best that fits), or the closest one and the budgets it misses."""
    fits = ranked(rows, budgets, base, task)
    if fits:
        return {"fits": True, "chosen": fits[0], "failing": {}, "ranked": fits}
    live = [r for r in rows if not r.get("rejected")] or rows
    if not live:
        return {"fits": False, "chosen": None, "failing": {}, "ranked": []}
    closest = min(live, key=lambda r: (sum(violations(r, budgets, base, task).values()), rank_key(r)))
    failing = {}
    keys = set().union(*(violations(r, budgets, base, task) for r in live))
    for key in sorted(keys):
        if all(key in violations(r, budgets, base, task) for r in live):
            failing[key] = "no candidate meets it"
    return {"fits": False, "chosen": closest, "failing": failing, "ranked": [],
            "closest_misses": violations(closest, budgets, base, task)}


def _metrics(r: dict) -> tuple:
    return (-r["score"], _num(r.get("flash_bytes")), _num(r.get("ram_bytes")), _num(r.get("instructions")))


def pareto_front(rows: list[dict]) -> list[dict]:
    """Rows not dominated on (score up; flash, RAM, instructions down)."""
    front = []
    for r in rows:
        a = _metrics(r)
        if not any(all(x <= y for x, y in zip(_metrics(o), a)) and _metrics(o) != a for o in rows if o is not r):
            front.append(r)
    return sorted(front, key=lambda r: _num(r.get("flash_bytes")))


def _budget_text(budgets: dict, task) -> str:
    parts = []
    for k in ("flash", "ram"):
        if budgets.get(k) is not None:
            parts.append(f"{k} {fmt_bytes(budgets[k])}")
    if budgets.get("latency") is not None:
        parts.append(f"latency {budgets['latency']:,.0f} instructions")
    if budgets.get("max_drop") is not None:
        parts.append(f"{task.budget_name} {budgets['max_drop']:g} {task.drop_unit}")
    return ", ".join(parts) or "none"


def results_markdown(rows: list[dict], budgets: dict, base: float, target: str, task, *, final: dict | None = None,
                     notes: list[str] = ()) -> str:
    """The search's table (validation scores) and, when given, the chosen candidate's test numbers."""
    front = {id(r) for r in pareto_front(rows)}
    sel = select(rows, budgets, base, task)
    est = any(r.get("estimated") for r in rows)
    name = task.score_name
    lines = [f"# Compression search ({target})", "",
             f"Baseline fp32 validation {name} {task.fmt(base)}. Budgets: {_budget_text(budgets, task)}.", ""]
    lines += [f"* {n}" for n in notes]
    if notes:
        lines.append("")
    lines += [f"| candidate | val {name} (int8, ORT) | drop ({task.drop_unit}) | params | flash | RAM | instructions "
              "| Pareto | fits |", "|---|---:|---:|---:|---:|---:|---:|:-:|:-:|"]
    for r in sorted(rows, key=lambda r: (_num(r.get("flash_bytes")), r["label"])):
        mark = "*" if r.get("estimated") else ""
        v = violations(r, budgets, base, task)
        fit = "rejected: " + r["rejected"] if r.get("rejected") else ("yes" if not v else "no: " + ", ".join(v))
        lines.append(f"| {r['label']} | {task.fmt(r['score'])} | {task.drop(base, r['score']):+.2f} | {r['params']:,} | "
                     f"{fmt_bytes(r.get('flash_bytes'))}{mark} | {fmt_bytes(r.get('ram_bytes'))}{mark} | "
                     f"{r['instructions'] if r.get('instructions') is not None else 'n/a'}{mark} | "
                     f"{'yes' if id(r) in front else ''} | {fit} |")
    lines.append("")
    if est:
        why = next((r.get("estimate_reason") for r in rows if r.get("estimate_reason")), None)
        lines.append("`*` estimated from params and MACs, not measured on the target ("
                     + (f"the compiler/QEMU run failed: {why}" if why else "estimates requested")
                     + "); the finalists are compiled before one is chosen.")
        lines.append("")
    if final is not None and final.get("chosen"):
        c = final["chosen"]
        lines.append(f"**Chosen:** {c['label']}: validation {task.fmt(c['score'])} "
                     f"({task.drop(base, c['score']):+.2f} {task.drop_unit}), flash {fmt_bytes(c.get('flash_bytes'))}, "
                     f"RAM {fmt_bytes(c.get('ram_bytes'))}, instructions {c.get('instructions')}.")
        t = final.get("test")
        if t:
            lines.append("")
            lines.append(f"**Test** ({t['samples']:,} samples never used for selection): {t['where']} "
                         f"{task.fmt(t['score'])} vs fp32 {task.fmt(t['baseline'])} "
                         f"({task.drop(t['baseline'], t['score']):+.2f} {task.drop_unit})"
                         + (f"; ONNX Runtime on the same int8 model {task.fmt(t['ort'])}" if t.get("ort") is not None
                            else "") + ".")
            if t.get("misses_budget"):
                lines.append(f"The test drop is above the {task.budget_name} budget that the validation split met.")
        if final.get("skipped"):
            lines.append("")
            lines.append("Compiled but over budget (not chosen): " + "; ".join(final["skipped"]) + ".")
    elif sel["fits"]:
        c = sel["chosen"]
        lines.append(f"**Best so far:** {c['label']}: validation {task.fmt(c['score'])}, "
                     f"flash {fmt_bytes(c.get('flash_bytes'))}.")
    elif sel["chosen"] is not None:
        c = sel["chosen"]
        lines.append("**No candidate meets every budget.** " + (
            "Budgets no candidate meets: " + ", ".join(sel["failing"]) + ". " if sel["failing"] else "") +
            f"Closest: {c['label']} (misses " + ", ".join(
                f"{k} by {v * 100:.0f} %" for k, v in sel["closest_misses"].items()) + ").")
    lines.append("")
    lines.append("Unstructured sparsity is not among the candidates: the C backend stores dense weights, "
                 "so zeroed weights do not shrink flash.")
    return "\n".join(lines) + "\n"


def _place_labels(ax, pts: list[tuple[float, float, str, bool]]) -> None:
    """Annotate points without overlapping labels: for each (in order of x) try eight offsets and
    keep the first whose box overlaps no earlier label or point; else leave a numbered marker."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    taken = []
    disp = [ax.transData.transform((x, y)) for x, y, _, _ in pts]
    for (dx, dy) in disp:
        taken.append((dx - 4, dy - 4, dx + 4, dy + 4))
    offsets = [(5, 4), (5, -11), (-5, 4), (-5, -11), (5, 12), (-5, 12), (5, -19), (-5, -19)]
    overflow = []
    for (x, y, text, bold), (px, py) in sorted(zip(pts, disp), key=lambda p: p[1][0]):
        placed = False
        for ox, oy in offsets:
            t = ax.annotate(text, (x, y), xytext=(ox, oy), textcoords="offset points", fontsize=7,
                            ha="left" if ox > 0 else "right", fontweight="bold" if bold else "normal")
            bb = t.get_window_extent(renderer)
            box = (bb.x0, bb.y0, bb.x1, bb.y1)
            inside = ax.get_window_extent(renderer)
            if all(box[2] < o[0] or box[0] > o[2] or box[3] < o[1] or box[1] > o[3] for o in taken) and \
                    box[0] >= inside.x0 - 2 and box[2] <= inside.x1 + 2:
                taken.append(box)
                placed = True
                break
            t.remove()
        if not placed:
            overflow.append(text)
            n = len(overflow)
            ax.annotate(str(n), (x, y), xytext=(3, 3), textcoords="offset points", fontsize=6, color="dimgray")
    if overflow:
        ax.text(1.01, 0.0, "\n".join(f"{i}: {t}" for i, t in enumerate(overflow, 1)), transform=ax.transAxes,
                fontsize=6, va="bottom")


def plot_pareto(rows: list[dict], base: float, budgets: dict, task, path: Path, chosen: str | None = None) -> None:
    """Validation score against flash: Pareto set in red, estimates as crosses, the chosen
    candidate as a star, the flash budget and score floor as lines; labels placed not to overlap."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401
    front = {id(r) for r in pareto_front(rows)}
    fig, ax = plt.subplots(figsize=(8, 5))
    sign = 100 if task.classification else -1
    pts = []
    for r in rows:
        if r.get("flash_bytes") is None:
            continue
        x, y = r["flash_bytes"] / 1024, r["score"] * sign
        ax.scatter(x, y, c="tab:red" if id(r) in front else "tab:gray",
                   marker="x" if r.get("estimated") else "o", s=22, zorder=3)
        pts.append((x, y, r["label"], r["label"] == chosen))
        if r["label"] == chosen:
            ax.scatter(x, y, marker="*", s=260, facecolors="none", edgecolors="black", linewidths=1.4, zorder=4,
                       label=f"chosen: {chosen}")
    if budgets.get("flash"):
        ax.axvline(budgets["flash"] / 1024, ls="--", c="tab:blue", label="flash budget")
    if budgets.get("max_drop") is not None:
        floor = base - budgets["max_drop"] / 100 if task.classification else base * (1 + budgets["max_drop"] / 100)
        ax.axhline(floor * sign, ls=":", c="tab:green", label=f"{task.score_name} floor")
    ax.set_xscale("log")
    plain = matplotlib.ticker.FuncFormatter(lambda v, _pos: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("flash (KiB, log scale)")
    ax.set_ylabel(f"validation {task.score_name}" + (" (%)" if task.classification else ""))
    ax.set_title("compression candidates (red: Pareto set, x: estimated, star: chosen)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    _place_labels(ax, pts)
    fd, tmp = tempfile.mkstemp(prefix=f".{Path(path).name}.", suffix=".png", dir=Path(path).parent)
    os.close(fd)
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
