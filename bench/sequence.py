"""Sequence models on a Cortex-M4: agreement with the reference, flash, RAM, instructions per inference.

    python bench/sequence.py [--target cortex-m4] [--inputs 8] [--out bench/results/sequence.md]

Rows (each family is one function in ROWS; other sequence models add theirs there):

* recurrent (``rnn_rows``): an LSTM(64) over 49 frames of 10 features (keyword-spotting sized) and a
  GRU of the same size.
  - TFLite int8 LSTM (UNIDIRECTIONAL_SEQUENCE_LSTM as TFLite quantizes it, tests/rnn_models.py):
    outputs against TensorFlow Lite Micro (LSB, all 49 steps' hidden states) and TFLM's arena
    (its recording allocator) beside edgecomp's RAM.
  - ONNX int8 LSTM and GRU (PyTorch, random weights, last step -> Linear(12)): outputs against ONNX
    Runtime running the QDQ graph (LSB) and top-1 agreement with the float model on the inputs.
  - The same LSTM streamed: one frame per ec_invoke (instructions per frame).
  Flash and RAM from the linker (the whole firmware's model part: ``model_flash_bytes``; RAM =
  arena + static + measured stack), instructions under QEMU ``-icount shift=0``.
* attention (``transformer_rows``): a 2-layer PyTorch ``nn.TransformerEncoder`` (d=64, 4 heads, 32
  tokens, GELU feed-forward of 128; tests/transformer_models.py): float32 against ONNX Runtime's
  float run (largest absolute difference), and int8 (edgecomp's QDQ quantization, 64 random
  calibration sequences; layer norms float32) against ORT running the QDQ graph (LSB).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

T, F, H, CLASSES = 49, 10, 64, 12


def _torch_rnn(kind: str, work: Path, n_cal: int = 64):
    import torch

    from edgecomp.compress.quantize import quantize_onnx
    from edgecomp.frontends.torch import export_onnx

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = getattr(torch.nn, kind)(F, H, batch_first=True)
            self.fc = torch.nn.Linear(H, CLASSES)

        def forward(self, x):
            _, h = self.rnn(x)
            h = h[0] if isinstance(h, tuple) else h
            return self.fc(h.squeeze(0))

    torch.manual_seed(0)
    f = export_onnx(Net().eval(), torch.zeros(1, T, F), work / f"{kind.lower()}.onnx")
    cal = np.random.default_rng(1).normal(0, 1, (n_cal, T, F)).astype(np.float32)
    return f, quantize_onnx(f, cal, work / f"{kind.lower()}.int8.onnx", progress=False)


def _row(name, man, res, n_frames=1, **extra) -> dict:
    return {"model": name, "flash": man["model_flash_bytes"], "ram": man["ram_bytes"],
            "arena": man["ram"]["arena_bytes"], "macs": man["macs"],
            "instructions": res.instructions_per_inference, **extra}


def rnn_rows(target: str, n: int, work: Path) -> list[dict]:
    import onnxruntime as ort

    from edgecomp import api
    from edgecomp.compress.quantize import reference_session
    from edgecomp.reference import tflm_arena_bytes, tflm_run
    from rnn_models import tflite_lstm, write

    rows = []
    # TFLite int8 LSTM against TFLM
    p = write(work / "lstm64.tflite", tflite_lstm(T=T, I=F, H=H, cell_log2=-11, seed=0))
    x = np.random.default_rng(2).integers(-128, 128, (n, T, F), dtype=np.int8)
    man = api.compile_model(str(p), target, work / "tfl")
    pr = api.run_bundle(work / "tfl", x, progress=False)
    want = tflm_run(p, x[:, None]).reshape(n, -1).astype(np.int32)
    diff = int(np.abs(pr.outputs.reshape(n, -1).astype(np.int32) - want).max())
    rows.append(_row("LSTM(64) TFLite int8 (every step out)", man, pr.result, reference="TFLM",
                     agreement=f"{diff} LSB max ({n} x {T} x {H} values)", tflm_arena=tflm_arena_bytes(p)))
    # ONNX int8 LSTM / GRU against ORT's QDQ run and the float model
    xf = np.random.default_rng(3).normal(0, 1, (n, T, F)).astype(np.float32)
    for kind in ("LSTM", "GRU"):
        f, q = _torch_rnn(kind, work)
        man = api.compile_model(str(q), target, work / kind)
        pr = api.run_bundle(work / kind, xf, progress=False)
        oq = man["outputs"][0]["quantization"]
        s, z = oq["scale"][0], oq["zero_point"][0]
        got = pr.outputs.reshape(n, -1).astype(np.int32)
        sess = reference_session(q)
        ref = np.concatenate([sess.run(None, {"input": xi[None]})[0] for xi in xf])
        lsb = int(np.abs(got - (np.round(ref / s).astype(np.int32) + z)).max())
        fl = ort.InferenceSession(str(f))
        fref = np.concatenate([fl.run(None, {"input": xi[None]})[0] for xi in xf])
        top1 = float(((got - z) * s).argmax(1).__eq__(fref.argmax(1)).mean())
        rows.append(_row(f"{kind}(64) ONNX int8 (last step -> Linear)", man, pr.result, reference="ORT QDQ",
                         agreement=f"{lsb} LSB max; top-1 = float on {100 * top1:.0f} %", tflm_arena=None))
        if kind == "LSTM":  # streamed: one frame per inference
            man = api.compile_model(str(q), target, work / "stream", options={"streaming": True})
            pr = api.run_bundle(work / "stream", xf[0][:, None], progress=False)
            same = bool(np.array_equal(pr.outputs.reshape(T, -1)[-1], got[0]))
            rows.append(_row("LSTM(64) ONNX int8, streamed (per frame)", man, pr.result, reference="the whole build",
                             agreement=f"last frame {'==' if same else '!='} whole sequence", tflm_arena=None))
    return rows


def transformer_rows(target: str, n: int, work: Path) -> list[dict]:
    """The 2-layer transformer encoder (d=64, 4 heads, 32 tokens, GELU), float32, against ONNX Runtime."""
    import onnxruntime as ort

    from edgecomp import api
    from transformer_models import D, TOKENS, export_encoder

    f = export_encoder(work / "encoder.onnx")
    x = np.random.default_rng(4).normal(0, 1, (n, TOKENS, D)).astype(np.float32)
    man = api.compile_model(str(f), target, work / "enc", precision="float32")
    pr = api.run_bundle(work / "enc", x, progress=False)
    s = ort.InferenceSession(str(f))
    ref = np.concatenate([s.run(None, {"x": xi[None]})[0] for xi in x])
    diff = float(np.abs(pr.outputs.reshape(ref.shape) - ref).max())
    rows = [_row("Transformer encoder 2 x (d=64, 4 heads), 32 tokens, ONNX float32", man, pr.result,
                 reference="ORT float", agreement=f"{diff:.1e} max abs ({n} x {TOKENS} x {D} values)",
                 tflm_arena=None)]
    # int8 (QDQ by edgecomp's quantizer; layer norms stay float) against ORT running the QDQ graph
    from edgecomp.compress.quantize import reference_session
    cal = np.random.default_rng(1).normal(0, 1, (64, TOKENS, D)).astype(np.float32)
    q = work / "encoder.int8.onnx"
    api.compile_model(str(f), "host", work / "enc_q0", calib=cal, keep_onnx=q)
    man = api.compile_model(str(q), target, work / "enc_q")
    pr = api.run_bundle(work / "enc_q", x, progress=False)
    oq = man["outputs"][0]["quantization"]
    sc, z = oq["scale"][0], oq["zero_point"][0]
    sq = reference_session(q)
    qref = np.concatenate([sq.run(None, {"x": xi[None]})[0] for xi in x])
    d = np.abs(pr.outputs.reshape(qref.shape).astype(np.int32) - (np.round(qref / sc).astype(np.int32) + z))
    rows.append(_row("Transformer encoder, ONNX int8 (layer norms float32)", man, pr.result, reference="ORT QDQ",
                     agreement=f"{int(d.max())} LSB max, {100 * (d > 1).mean():.1f} % > 1 LSB", tflm_arena=None))
    return rows


ROWS = [rnn_rows, transformer_rows]


def render(rows: list[dict], target: str, n: int) -> str:
    lines = [f"# Sequence models on {target}", "",
             f"`python bench/sequence.py --target {target} --inputs {n}` (instructions under QEMU -icount shift=0; "
             "flash: the model's part of the firmware; RAM: arena + static (recurrent state included) + stack)", "",
             "| model | reference | agreement | flash (B) | RAM (B) | arena (B) | TFLM arena (B) | MACs | "
             "instructions / inference | instructions / MAC |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ta = f"{r['tflm_arena']:,}" if r.get("tflm_arena") else "-"
        lines.append(f"| {r['model']} | {r['reference']} | {r['agreement']} | {r['flash']:,} | {r['ram']:,} | "
                     f"{r['arena']:,} | {ta} | {r['macs']:,} | {r['instructions']:,} | "
                     f"{r['instructions'] / max(r['macs'], 1):.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="cortex-m4")
    ap.add_argument("--inputs", type=int, default=8)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "sequence.md"))
    ap.add_argument("--only", choices=[f.__name__ for f in ROWS], help="run one family of rows")
    a = ap.parse_args(argv)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="edgecomp-seq-") as td:
        for fam in ROWS:
            if a.only and fam.__name__ != a.only:
                continue
            rows += fam(a.target, a.inputs, Path(td))
    text = render(rows, a.target, a.inputs)
    Path(a.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
