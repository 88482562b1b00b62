"""`edgecomp compress` on the user's own model: a network the built-in examples do not know (two
branches concatenated, a residual depthwise branch), given as FILE.py:FACTORY + a state dict, data as
.npz files; the search must meet half the plain int8 bundle's flash within 1.5 points of the fp32
accuracy *on the compiled firmware*, and write the bundle."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]

USER_MODEL = '''
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 24, 3, padding=1), nn.BatchNorm2d(24), nn.ReLU())
        self.a = nn.Sequential(nn.Conv2d(24, 24, 1), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(24, 24, 3, padding=1, groups=24), nn.BatchNorm2d(24), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(48, 48, 3, stride=2, padding=1), nn.ReLU())
        self.fc1 = nn.Linear(48 * 16, 96)
        self.fc2 = nn.Linear(96, 10)

    def forward(self, x):
        s = self.stem(x)
        y = torch.cat([self.a(s), self.b(s) + s], 1)
        return self.fc2(torch.relu(self.fc1(self.down(y).flatten(1))))


def make_net():
    return Net()
'''


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    """The model file, trained weights (a few seconds on digits) and the data as .npz files."""
    from edgecomp.compress.distill import accuracy, fit
    from edgecomp.compress.models import load_user_model
    from edgecomp.datasets import load_digits_split
    d = tmp_path_factory.mktemp("user")
    (d / "net.py").write_text(USER_MODEL)
    xtr, ytr, xte, yte = load_digits_split(0)
    model, _ = load_user_model(f"{d / 'net.py'}:make_net")
    torch.manual_seed(0)
    torch.set_num_threads(1)
    fit(model, xtr, ytr, epochs=8, lr=3e-3, verbose=False)
    assert accuracy(model, xte, yte) > 0.9
    torch.save(model.state_dict(), d / "net.pt")
    np.savez(d / "train.npz", x=xtr, y=ytr)
    np.savez(d / "val.npz", x=xte[:150], y=yte[:150])  # the user's own validation and test sets
    np.savez(d / "test.npz", x=xte[150:], y=yte[150:])
    return d, model, xtr, xte[150:]


def test_user_model_loading_errors_are_one_clear_message(user_files, tmp_path, capsys):
    d, *_ = user_files
    from edgecomp.cli import main
    cases = [(["--model", f"{d / 'net.py'}:nope", "--data", str(d / "train.npz")], "no function or class 'nope'"),
             (["--model", f"{d / 'net.py'}:make_net", "--weights", str(d / "train.npz"), "--data",
               str(d / "train.npz")], "cannot read the weights"),
             (["--model", str(d / "net.py"), "--data", str(d / "train.npz")], "is not FILE.py:FACTORY"),
             (["--model", str(d / "net.pt"), "--data", str(d / "train.npz")], "is a saved model"),
             (["--model", f"{d / 'net.py'}:make_net", "--weights", str(d / "net.pt")], "--model needs --data"),
             (["--model", f"{d / 'net.py'}:make_net", "--weights", str(d / "net.pt"), "--data",
               str(d / "missing.npz")], "does not exist")]
    for argv, msg in cases:
        rc = main(["compress", *argv, "-o", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert rc == 2 and msg in err and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "o" / "bundle").exists()


@pytest.mark.slow
@pytest.mark.toolchain
@pytest.mark.qemu
def test_cli_compresses_a_user_model_to_half_the_int8_flash_within_1_5_points(user_files, tmp_path):
    from edgecomp import api
    d, model, xtr, xte = user_files
    target = "cortex-m4"
    plain = api.compile_model(model, target, tmp_path / "plain", example_input=torch.from_numpy(xte[:1]),
                              calib=xtr[:200])
    budget = plain["flash_bytes"] // 2
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "edgecomp.cli", "compress", "--model", f"{d / 'net.py'}:make_net",
                        "--weights", str(d / "net.pt"), "--data", str(d / "train.npz"), "--val", str(d / "val.npz"),
                        "--test", str(d / "test.npz"),
                        "--flash", str(budget), "--max-accuracy-drop", "1.5", "--target", target, "--quick",
                        "-o", str(out)], capture_output=True, text=True, cwd=tmp_path,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin:/usr/local/bin"}, timeout=3000)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    man = json.loads((out / "bundle" / "manifest.json").read_text())
    assert s["fits"] and man["flash_bytes"] <= budget and man["target"] == target
    t = s["test"]
    assert t["where"].startswith("firmware under QEMU") and t["samples"] == len(xte)
    assert (t["baseline"] - t["score"]) * 100 <= 1.5, t
    # the report names what the search did to the user's own network
    md = (out / "pareto.md").read_text()
    assert "sized by compiling" in md and "estimated" not in md and (out / "sensitivity.md").read_text().count("|") > 20
    assert "chosen:" in r.stdout and str(out / "bundle") in r.stdout
