"""At 85 % fewer parameters: the search's best candidate vs a same-size network trained from scratch.

    python bench/compress_width.py [--params 0.15] [--target cortex-m4]

MNIST example (the search's splits: 3,200 train / 800 validation / 1,000 test, seed 0).  The
reference is written independently of the search: ``mnist_cnn(width)`` with the largest width whose
parameters are at most ``--params`` of the baseline's, trained from scratch by distillation from the
baseline (``compress.distill.distill``, the search's epochs and temperature).  The search runs its
structural candidates at the same size (structured pruning, the narrowed network re-initialised or
kept from the most salient channels, global ratios from the sensitivity), chooses by validation
accuracy, and reports the chosen one's test accuracy on its cortex-m4 firmware under QEMU.  Every
candidate's test accuracy (ONNX Runtime, int8) is listed too, for the comparison only.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", type=float, default=0.15, help="fraction of the parameters kept")
    p.add_argument("--target", default="cortex-m4")
    p.add_argument("--work", default=None)
    p.add_argument("--results", default=str(ROOT / "bench" / "results" / "compress_width.md"))
    a = p.parse_args(argv)
    import torch

    from edgecomp.compress.distill import distill, fit
    from edgecomp.compress.qat import export_qdq
    from edgecomp.compress.report import onnx_predict
    from edgecomp.compress.search import _example, mnist_cnn, run_compress
    from edgecomp.compress.width import param_count
    torch.set_num_threads(1)
    t0 = time.time()
    splits, make, epochs, lr = _example("mnist", 0)
    torch.manual_seed(0)
    base = fit(make(), splits.x_train, splits.y_train, epochs=epochs, lr=lr, seed=0, verbose=False)
    total = param_count(base)
    # the reference: the widest mnist_cnn(width) within the parameter budget, distilled from scratch
    width = max((w / 1000 for w in range(50, 1001)), key=lambda w: w if param_count(mnist_cnn(w)) <= a.params * total
                else -1)
    torch.manual_seed(1)
    ref = distill(mnist_cnn(width), base, splits.x_train, splits.y_train, epochs=epochs, lr=lr, seed=0,
                  temperature=4.0, alpha=0.7, verbose=False)
    ex = torch.from_numpy(splits.x_val[:1])
    with tempfile.TemporaryDirectory(prefix="edgecomp-width-") as td:
        work = Path(a.work or td)
        q = export_qdq(ref, ex, splits.x_train[:200], work / "reference.int8.onnx")
        ref_test = float((onnx_predict(q, splits.x_test).argmax(1) == splits.y_test).mean())
        cands = [{"method": "prune", "params": a.params}, {"method": "width", "params": a.params, "init": "scratch"},
                 {"method": "width", "params": a.params, "init": "pruned"}, {"method": "global", "params": a.params}]
        s = run_compress(base, (splits.x_train, splits.y_train, splits.x_val, splits.y_val, splits.x_test,
                                splits.y_test), target=a.target, out_dir=work / "search", candidates=cands,
                         max_accuracy_drop=None, epochs=epochs, lr=lr, verbose=False)
        rows = [json.loads(line) for line in (work / "search" / "trials.jsonl").read_text().splitlines()]
        for r in rows:
            r["test"] = float((onnx_predict(r["onnx"], splits.x_test).argmax(1) == splits.y_test).mean())
    base_test = s["test"]["baseline"]
    lines = [f"Command: `python bench/compress_width.py --params {a.params} --target {a.target}` "
             f"({time.time() - t0:.0f} s). MNIST: {splits.sizes()}; baseline {total:,} parameters, fp32 test "
             f"{base_test * 100:.2f} %.", "",
             "| network | params | share | val (int8, ORT) | test (int8, ORT) | flash |", "|---|---:|---:|---:|---:|---:|",
             f"| reference: mnist_cnn({width:.3f}) from scratch, distilled | {param_count(ref):,} | "
             f"{param_count(ref) / total:.1%} | | {ref_test * 100:.2f} % | |"]
    for r in sorted(rows, key=lambda r: -r["score"]):
        mark = " (chosen)" if r["label"] == s["chosen"] else ""
        lines.append(f"| {r['label']}{mark} | {r['params']:,} | {r['params'] / total:.1%} | {r['score'] * 100:.2f} % | "
                     f"{r['test'] * 100:.2f} % | {(r.get('flash_bytes') or 0) / 1024:.1f} KiB |")
    t = s["test"]
    gap = (ref_test - t["score"]) * 100
    lines += ["", f"Chosen by validation: **{s['chosen']}**, test {t['score'] * 100:.2f} % on the {t['where']}: "
              f"{gap:+.2f} points behind the reference ({ref_test * 100:.2f} %)." if gap > 0 else
              f"Chosen by validation: **{s['chosen']}**, test {t['score'] * 100:.2f} % on the {t['where']}: "
              f"{-gap:.2f} points ahead of the reference ({ref_test * 100:.2f} %)."]
    md = "\n".join(lines) + "\n"
    print(md)
    out = Path(a.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(md)
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
