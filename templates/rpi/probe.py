#!/usr/bin/env python3
"""Latency probe for this bundle, run on the Raspberry Pi.

    python3 probe.py [--runs 100] [--warmup 10] [--threads 1,2,4] [--profile]
                     [--data labelled.npz] [--input x.npy] [--json probe.json]

For each thread count: load the model, run ``--warmup`` untimed inferences, then
``--runs`` inferences each timed with time.perf_counter_ns; report p50/p90/p99,
mean and min in milliseconds.  CPU model, governor, frequency and temperature are
read from /proc and /sys before and after (missing values are recorded as null).
``--profile`` adds ONNX Runtime's per-node profile summed per op type.
``--data`` (a .npz with the inputs as ``x`` or by input name, and integer labels
``y``) adds top-1 accuracy.  Prints a table and the same p50s as ``@ec`` probe lines (unit ns,
one block per thread count); ``--json`` also writes the results.
Needs only numpy and the runtime in requirements.txt.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import HERE, Model, as_input, load_inputs, run_batches  # noqa: E402

SCHEMA = "edgecomp.rpi.probe/1"


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def cpu_model() -> str | None:
    model = _read("/proc/device-tree/model")
    if model:
        return model.rstrip("\x00")
    info = _read("/proc/cpuinfo") or ""
    fields = {}
    for line in info.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            fields.setdefault(k.strip(), v.strip())
    if "Model" in fields:
        return fields["Model"]
    if "model name" in fields:
        return fields["model name"]
    if "CPU part" in fields:
        parts = {"0xd03": "Cortex-A53", "0xd08": "Cortex-A72", "0xd0b": "Cortex-A76", "0xd05": "Cortex-A55"}
        return "Arm " + parts.get(fields["CPU part"], "CPU part " + fields["CPU part"])
    return None


def system_state() -> dict:
    """CPU governor, frequencies (MHz) and SoC temperature (C); None where not readable."""
    cpu = "/sys/devices/system/cpu/cpu0/cpufreq/"
    cur = _int(_read(cpu + "scaling_cur_freq"))
    mx = _int(_read(cpu + "cpuinfo_max_freq"))
    temp = _int(_read("/sys/class/thermal/thermal_zone0/temp"))
    throttled = None
    try:  # Raspberry Pi firmware: under-voltage / throttling flags
        import subprocess
        r = subprocess.run(["vcgencmd", "get_throttled"], capture_output=True, text=True, timeout=5)
        if r.returncode == 0 and "=" in r.stdout:
            throttled = r.stdout.strip().split("=", 1)[1]
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "governor": _read(cpu + "scaling_governor"),
        "freq_mhz": cur / 1000 if cur else None,
        "max_freq_mhz": mx / 1000 if mx else None,
        "temp_c": temp / 1000 if temp is not None else None,
        "throttled": throttled,
        "loadavg": _read("/proc/loadavg"),
    }


def percentile(sorted_ms: list, p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    return float(np.percentile(np.asarray(sorted_ms), p))


def stats(ns: list) -> dict:
    ms = sorted(v / 1e6 for v in ns)
    return {"runs": len(ms), "p50_ms": percentile(ms, 50), "p90_ms": percentile(ms, 90),
            "p99_ms": percentile(ms, 99), "mean_ms": float(sum(ms) / len(ms)), "min_ms": ms[0], "max_ms": ms[-1]}


def example_feeds(model: Model, x_path: str | None) -> dict:
    if x_path:
        feeds = load_inputs(x_path, model.inputs)
        return {k: v[:1] for k, v in feeds.items()}
    rng = np.random.default_rng(0)
    feeds = {}
    for io in model.inputs:
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in io["shape"]]
        dt = np.dtype(io["dtype"])
        if dt.kind == "f":
            feeds[io["name"]] = rng.standard_normal(shape).astype(dt)
        else:
            info = np.iinfo(dt)
            feeds[io["name"]] = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dt)
    return feeds


def time_runs(model: Model, feeds: dict, warmup: int, runs: int) -> list:
    for _ in range(warmup):
        model.run(feeds)
    out = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        model.run(feeds)
        out.append(time.perf_counter_ns() - t0)
    return out


def summarize_profile(path: str) -> list:
    """ORT's chrome-trace profile -> [{op_type, nodes, calls, total_us, share}] sorted by time."""
    with open(path) as f:
        events = json.load(f)
    by = {}
    for e in events:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time"):
            continue
        op = e.get("args", {}).get("op_name", "?")
        d = by.setdefault(op, {"op_type": op, "nodes": set(), "calls": 0, "total_us": 0})
        d["nodes"].add(e["name"][:-len("_kernel_time")])
        d["calls"] += 1
        d["total_us"] += int(e.get("dur", 0))
    total = sum(d["total_us"] for d in by.values()) or 1
    rows = []
    for d in sorted(by.values(), key=lambda d: -d["total_us"]):
        rows.append({"op_type": d["op_type"], "nodes": len(d["nodes"]), "calls": d["calls"],
                     "total_us": d["total_us"], "share": d["total_us"] / total})
    return rows


def accuracy(model: Model, data_path: str) -> dict:
    data = np.load(data_path, allow_pickle=False)
    if "y" not in data:
        raise SystemExit(f"probe.py: {data_path} has no labels 'y' (arrays: {list(data.keys())})")
    y = np.asarray(data["y"]).astype(np.int64).reshape(-1)
    feeds = load_inputs(data_path, model.inputs) if len(model.inputs) > 1 or model.inputs[0]["name"] in data \
        else {model.inputs[0]["name"]: as_input(data["x"], model.inputs[0])}
    out = run_batches(model, feeds)[0]
    pred = np.asarray(out).reshape(len(y), -1).argmax(axis=1)
    correct = int((pred == y).sum())
    return {"samples": int(len(y)), "correct": correct, "top1": correct / max(1, len(y))}


def table(result: dict) -> str:
    lines = [f"{result['model']}  ({result['runtime']} {result['runtime_version']}, "
             f"{result['machine']}, {result.get('cpu_model') or 'unknown CPU'})",
             "| threads | p50 ms | p90 ms | p99 ms | mean ms | min ms | runs |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["results"]:
        lines.append(f"| {r['threads']} | {r['p50_ms']:.3f} | {r['p90_ms']:.3f} | {r['p99_ms']:.3f} | "
                     f"{r['mean_ms']:.3f} | {r['min_ms']:.3f} | {r['runs']} |")
    for when in ("before", "after"):
        s = result["system"][when]
        lines.append(f"{when}: governor={s['governor']} freq={s['freq_mhz']} MHz temp={s['temp_c']} C "
                     f"throttled={s['throttled']}")
    if result.get("profile"):
        lines.append("| op type | nodes | time us | share |")
        lines.append("|---|---:|---:|---:|")
        for p in result["profile"]:
            lines.append(f"| {p['op_type']} | {p['nodes']} | {p['total_us']} | {100 * p['share']:.1f}% |")
    if result.get("accuracy"):
        a = result["accuracy"]
        lines.append(f"accuracy: {a['correct']}/{a['samples']} = {100 * a['top1']:.2f}% top-1")
    return "\n".join(lines)


def probe_lines(result: dict) -> str:
    """The same numbers in edgecomp's line format (one block per thread count; total = p50 in ns),
    the format every edgecomp probe prints, for `edgecomp.probe.parse_probe_blocks`."""
    name = "".join(c if c.isalnum() or c in "._-" else "_" for c in str(result.get("model", "model"))) or "model"
    out = []
    for r in result["results"]:
        out += [f"@ec begin model={name} layers=0 unit=ns threads={r['threads']}",
                f"@ec total {int(round(r['p50_ms'] * 1e6))}", "@ec end"]
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", default="1,2,4", help="comma-separated thread counts to sweep")
    ap.add_argument("--profile", action="store_true", help="ONNX Runtime per-node profile, summed per op type")
    ap.add_argument("--data", help="labelled .npz (x, y) for top-1 accuracy")
    ap.add_argument("--input", help="a .npy/.npz sample to time (default: random input, seed 0)")
    ap.add_argument("--json", help="also write the results to this JSON file")
    a = ap.parse_args(argv)
    try:
        threads = [int(t) for t in a.threads.split(",") if t.strip()]
    except ValueError:
        raise SystemExit(f"probe.py: --threads wants numbers like 1,2,4, got {a.threads!r}")
    if a.runs < 1 or a.warmup < 0 or not threads or min(threads) < 1:
        raise SystemExit("probe.py: --runs must be >= 1, --warmup >= 0, threads >= 1")

    manifest = None
    result = {"schema": SCHEMA, "python": platform.python_version(), "machine": platform.machine(),
              "cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "warmup": a.warmup,
              "system": {"before": system_state()}, "results": []}
    first = None
    for t in threads:
        model = Model(HERE, threads=t)
        manifest = model.manifest
        first = first or model
        feeds = example_feeds(model, a.input)
        r = stats(time_runs(model, feeds, a.warmup, a.runs))
        result["results"].append({"threads": t, **r})
        print(f"threads={t}: p50 {r['p50_ms']:.3f} ms", file=sys.stderr)
    result.update(model=manifest.get("name", "model"), target=manifest.get("target"),
                  runtime=first.runtime, runtime_version=first.version, precision=manifest.get("precision"))
    result["profile"] = None
    if a.profile and first.runtime == "onnxruntime":
        pm = Model(HERE, threads=threads[0], profile=True)
        time_runs(pm, example_feeds(pm, a.input), 1, min(a.runs, 20))
        path = pm.end_profiling()
        result["profile"] = summarize_profile(path)
        os.remove(path)
    elif a.profile:
        print("probe.py: per-node profile is only available with ONNX Runtime", file=sys.stderr)
    result["accuracy"] = accuracy(first, a.data) if a.data else None
    result["system"]["after"] = system_state()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2, sort_keys=True)
    print(table(result))
    print(probe_lines(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
