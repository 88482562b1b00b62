"""An LSTM on the UEA JapaneseVowels set, trained here, compiled to int8 firmware for a Cortex-M4.

    python examples/lstm_vowels.py [--target cortex-m4] [--output out/lstm_vowels] [--units 32] [--epochs 60]

Data: JapaneseVowels from aeon's wheel (nothing is downloaded): 9 speakers, 12 LPC cepstra per
frame, 7-29 frames (zero-padded at the start to 29), the archive's 270 / 370 train / test split,
channels normalized with the training set's statistics.  Model: LSTM(12 -> units) over the 29
frames, its last hidden state into a Linear(units -> 9); trained in float32 on CPU (a few
seconds).  Then edgecomp quantizes it (ONNX Runtime's calibration and QDQ, plus calibrated QDQ
pairs on the LSTM), lowers the LSTM to the integer LSTM (int8 weights and hidden state, int16
gates and cell state) and builds the firmware; QEMU runs every test sequence through it.

Prints the float model's accuracy beside the firmware's, their top-1 agreement (the goal:
>= 98 %), flash, RAM and instructions per inference; then the same model built for streaming
(one frame per ec_invoke, state kept) on the host, checked frame by frame against the whole
sequence.  Writes ``results.json`` in the output folder.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def make_model(units: int, channels: int = 12, classes: int = 9):
    import torch

    class VowelLSTM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(channels, units, batch_first=True)
            self.fc = torch.nn.Linear(units, classes)

        def forward(self, x):
            _, (h, _) = self.lstm(x)
            return self.fc(h.squeeze(0))

    return VowelLSTM()


def train(model, x, y, epochs: int, seed: int = 0):
    import numpy as np
    import torch

    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        model.train()
        for idx in np.array_split(rng.permutation(len(x)), max(1, len(x) // 32)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    return model.eval()


def run(target: str = "cortex-m4", out: str | Path = "out/lstm_vowels", units: int = 32, epochs: int = 60,
        seed: int = 0) -> dict:
    import numpy as np
    import torch

    from edgecomp import api
    from edgecomp.datasets import load_uea_split

    torch.set_num_threads(2)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    xtr, ytr, xte, yte = load_uea_split("JapaneseVowels")
    model = train(make_model(units), xtr, ytr, epochs, seed)
    with torch.no_grad():
        float_pred = model(torch.from_numpy(xte)).argmax(1).numpy()
    man = api.compile_model(model, target, out / target, example_input=torch.from_numpy(xte[:1]), calib=xtr,
                            keep_onnx=out / "lstm.int8.onnx")
    pred = api.run_bundle(out / target, xte, progress=False)
    fw_pred = pred.outputs.reshape(len(xte), -1).argmax(1)
    res = {
        "dataset": "JapaneseVowels (aeon)", "test_sequences": int(len(xte)), "units": units,
        "float_accuracy": float((float_pred == yte).mean()), "firmware_accuracy": float((fw_pred == yte).mean()),
        "agreement": float((fw_pred == float_pred).mean()), "target": target,
        "flash_bytes": man["flash_bytes"], "ram_bytes": man["ram_bytes"], "macs": man["macs"],
        "instructions_per_inference": pred.result.instructions_per_inference,
    }
    # streaming: the same model, one frame per ec_invoke on the host; the last frame's output is the
    # whole sequence's
    smap = api.compile_model(str(out / "lstm.int8.onnx"), "host", out / "stream", options={"streaming": True})
    frames = api.run_bundle(out / "stream", xte[0][:, None], progress=False).outputs.reshape(xte.shape[1], -1)
    whole = pred.outputs.reshape(len(xte), -1)[0]  # the firmware's output for the whole first sequence
    res["streaming_last_frame_equals_whole"] = bool(np.array_equal(frames[-1], whole))
    res["streaming_input_shape"] = smap["inputs"][0]["shape"]
    (out / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="cortex-m4")
    ap.add_argument("--output", default="out/lstm_vowels")
    ap.add_argument("--units", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=60)
    a = ap.parse_args(argv)
    r = run(a.target, a.output, a.units, a.epochs)
    print(f"JapaneseVowels, {r['test_sequences']} test sequences, LSTM({r['units']}) -> 9 on {r['target']}")
    print(f"  float32 accuracy   {100 * r['float_accuracy']:.1f} %")
    print(f"  int8 firmware      {100 * r['firmware_accuracy']:.1f} %   (QEMU)")
    print(f"  top-1 agreement    {100 * r['agreement']:.1f} %   (goal >= 98 %)")
    print(f"  flash {r['flash_bytes']:,} B, RAM {r['ram_bytes']:,} B, {r['macs']:,} MACs, "
          f"{r['instructions_per_inference']:,} instructions per inference")
    print(f"  streaming (host, one frame per ec_invoke): last frame == whole sequence: "
          f"{r['streaming_last_frame_equals_whole']}")
    return 0 if r["agreement"] >= 0.98 else 1


if __name__ == "__main__":
    sys.exit(main())
