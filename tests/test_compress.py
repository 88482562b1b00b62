"""Compression suite: pruning, low-rank, distillation, QAT, search (digits data, small models)."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
torch.set_num_threads(1)

from edgecomp.compress import distill as D  # noqa: E402
from edgecomp.compress import lowrank as L  # noqa: E402
from edgecomp.compress import prune as P  # noqa: E402
from edgecomp.compress.report import compare_table, layer_stats, onnx_predict, totals, SPARSITY_NOTE  # noqa: E402
from edgecomp.datasets import load_digits_split  # noqa: E402
from edgecomp.errors import EdgecompError, ModelError  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    return load_digits_split(0)


class ResNetish(nn.Module):
    """conv -> BN -> relu, a residual block (two producers added), depthwise, flatten -> linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU())
        self.b1 = nn.Sequential(nn.Conv2d(12, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU())
        self.b2 = nn.Sequential(nn.Conv2d(12, 12, 3, padding=1), nn.BatchNorm2d(12))
        self.dw = nn.Sequential(nn.Conv2d(12, 12, 3, padding=1, groups=12), nn.BatchNorm2d(12), nn.ReLU())
        self.down = nn.Conv2d(12, 16, 3, stride=2, padding=1)
        self.fc1 = nn.Linear(16 * 4 * 4, 24)
        self.fc2 = nn.Linear(24, 10)

    def forward(self, x):
        s = self.stem(x)
        x = torch.relu(s + self.b2(self.b1(s)))
        x = torch.relu(self.down(self.dw(x)))
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


def _trained(digits, epochs=6, seed=0):
    torch.manual_seed(seed)
    m = ResNetish()
    D.fit(m, digits[0], digits[1], epochs=epochs, lr=3e-3, verbose=False)
    return m


@pytest.fixture(scope="module")
def trained(digits):
    return _trained(digits)


def _params(m):
    return sum(p.numel() for p in m.parameters())


# --------------------------------------------------------------------------- structured pruning
def test_channel_groups_residual_shared_and_output_locked(trained):
    groups = {g.name: g for g in P.channel_groups(trained, torch.zeros(1, 1, 8, 8))}
    res = next(g for g in groups.values() if "stem.0" in g.producers)
    assert set(res.producers) == {"stem.0", "b2.0"}  # residual: one shared channel set
    assert ("dw.0", "dw") in res.carriers and ("stem.1", "bn") in res.carriers
    assert groups["down"].consumers == [("fc1", 16)]  # flatten -> linear: 4x4 features per channel
    assert groups["fc2"].locked  # the model output is never pruned


def test_structured_pruning_shrinks_and_onnx_matches(trained, digits, tmp_path):
    from edgecomp.frontends.torch import export_onnx
    x = digits[2]
    pruned = P.structured_prune(trained, torch.zeros(1, 1, 8, 8), 0.5)
    assert pruned.b1[0].out_channels == 6 and pruned.b1[1].num_features == 6
    assert pruned.stem[0].out_channels == pruned.b2[0].out_channels == pruned.dw[0].groups == 6
    assert pruned.down.out_channels == 8 and pruned.fc1.in_features == 8 * 16 and pruned.fc1.out_features == 12
    assert trained.stem[0].out_channels == 12  # original untouched
    assert _params(pruned) < 0.4 * _params(trained)
    f0 = export_onnx(trained, torch.from_numpy(x[:1]), tmp_path / "orig.onnx")
    f1 = export_onnx(pruned, torch.from_numpy(x[:1]), tmp_path / "pruned.onnx")
    assert f1.stat().st_size < 0.5 * f0.stat().st_size
    ort_out = onnx_predict(f1, x[:64])
    np.testing.assert_allclose(ort_out, D.predict(pruned, x[:64]), rtol=1e-4, atol=1e-4)
    # MACs really go down (what the C backend executes)
    assert totals(layer_stats(pruned, x[:1]))["macs"] < 0.4 * totals(layer_stats(trained, x[:1]))["macs"]


def test_structured_prune_keeps_the_most_salient_channels(trained):
    m = copy.deepcopy(trained)
    with torch.no_grad():
        m.fc1.weight[:5].mul_(1e-4)  # make 5 hidden units tiny: L1 pruning must drop exactly those
    pruned = P.structured_prune(m, torch.zeros(1, 1, 8, 8), {"fc1": 5 / 24})
    kept = pruned.fc1.weight.detach()
    np.testing.assert_allclose(kept.numpy(), m.fc1.weight.detach()[5:].numpy())
    assert pruned.fc2.in_features == 19 and pruned.stem[0].out_channels == 12


def test_structured_prune_finetune_recovers_accuracy(trained, digits):
    xtr, ytr, xte, yte = digits
    base = D.accuracy(trained, xte, yte)
    assert base > 0.9
    pruned = P.iterative_prune(trained, xtr, ytr, final_amount=0.4, steps=2, epochs_per_step=2,
                               example_input=torch.zeros(1, 1, 8, 8), saliency="taylor", verbose=False)
    assert _params(pruned) < 0.55 * _params(trained)
    assert D.accuracy(pruned, xte, yte) > base - 0.06


class CatGrouped(nn.Module):
    """Two branches concatenated with the image, a 1x1 conv over the concatenation, a grouped conv
    (2 groups), a depthwise conv, flatten -> linear."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 8, 3, padding=1)
        self.b = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(13)
        self.c = nn.Conv2d(13, 8, 1)
        self.g = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.fc = nn.Linear(8 * 64, 10)

    def forward(self, x):
        y = self.bn(torch.cat([torch.relu(self.a(x)), x, torch.relu(self.b(x))], 1))
        return self.fc(torch.relu(self.dw(torch.relu(self.g(torch.relu(self.c(y)))))).flatten(1))


def _zero_channels(conv, idx):
    with torch.no_grad():
        conv.weight[idx] = 0
        conv.bias[idx] = 0


def test_pruning_through_concat_and_grouped_convs_keeps_outputs_exact():
    """Channels whose weights are zero carry nothing: pruning exactly those (L1) through a
    concatenation (offsets of later segments move), batch norm over the concatenation and a grouped
    conv (the same number kept per group) must leave the outputs unchanged."""
    torch.manual_seed(0)
    m = CatGrouped().eval()
    with torch.no_grad():
        m.bn.running_mean.uniform_(-0.5, 0.5)
        m.bn.running_var.uniform_(0.5, 2)
    _zero_channels(m.a, [1, 6])
    _zero_channels(m.b, [2])
    _zero_channels(m.c, [0, 5])  # one channel in each of the grouped conv's two input blocks
    _zero_channels(m.g, [3, 4])  # and one of its outputs in each group
    with torch.no_grad():  # a zero channel still passes bn's shift and the depthwise bias: zero them too
        m.dw.bias[[3, 4]] = 0
        for i in (1, 6, 8 + 1 + 2):
            m.bn.bias[i] = m.bn.running_mean[i] * m.bn.weight[i] / torch.sqrt(m.bn.running_var[i] + m.bn.eps)
    groups = {g.name: g for g in P.channel_groups(m, torch.zeros(1, 1, 8, 8))}
    assert not groups["a"].locked and not groups["b"].locked and groups["c"].blocks == 2 and groups["g"].blocks == 2
    assert {(n, i) for n, _, _, i in groups["b"].seg_carriers} == {("bn", 2)}
    x = torch.randn(5, 1, 8, 8)
    p = P.structured_prune(m, torch.zeros(1, 1, 8, 8), {"a": 0.25, "b": 0.25, "c": 0.25, "g": 0.25})
    assert (p.a.out_channels, p.b.out_channels, p.bn.num_features, p.c.in_channels) == (6, 3, 10, 10)
    assert (p.c.out_channels, p.g.in_channels, p.g.out_channels, p.dw.groups, p.fc.in_features) == (6, 6, 6, 6, 6 * 64)
    torch.testing.assert_close(p.eval()(x), m(x), rtol=1e-5, atol=1e-5)
    # the two least salient channels in the same block: still one pruned per block of the grouped conv
    m2 = CatGrouped().eval()
    _zero_channels(m2.c, [0, 1])
    p2 = P.structured_prune(m2, torch.zeros(1, 1, 8, 8), {"c": 0.25})
    assert p2.g.weight.shape[1] == 3 and p2.eval()(x).shape == (5, 10)


def test_unsupported_pattern_is_locked_not_broken():
    class Split(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 8, 3, padding=1)
            self.c = nn.Conv2d(4, 4, 1)
            self.fc = nn.Linear(4 * 64, 10)

        def forward(self, x):
            lo, hi = torch.chunk(self.a(x), 2, 1)
            return self.fc(self.c(lo * hi).flatten(1))

    m = Split()
    groups = {g.name: g for g in P.channel_groups(m, torch.zeros(1, 1, 8, 8))}
    assert "chunk" in groups["a"].locked and not groups["c"].locked
    p = P.structured_prune(m, torch.zeros(1, 1, 8, 8), 0.5)
    assert p.a.out_channels == 8 and p.c.out_channels == 2
    assert p(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_bad_amount_is_a_user_error(trained):
    with pytest.raises(ModelError, match="fraction"):
        P.structured_prune(trained, torch.zeros(1, 1, 8, 8), 1.5)
    with pytest.raises(ModelError):
        P.magnitude_prune(copy.deepcopy(trained), 0.3, scope="everything")


# --------------------------------------------------------------------------- unstructured
def test_unstructured_sparsity_and_report_says_no_flash_gain(trained, digits):
    m = P.magnitude_prune(copy.deepcopy(trained), 0.6, scope="global")
    P.make_permanent(m)
    assert abs(P.sparsity(m) - 0.6) < 0.01
    m2 = P.magnitude_prune(copy.deepcopy(trained), 0.5, scope="layer")
    assert all(abs(float((mod.weight == 0).float().mean()) - 0.5) < 0.05 for _, mod in P.prunable_layers(m2))
    m3 = P.taylor_prune(copy.deepcopy(trained), 0.5, digits[0], digits[1])
    P.make_permanent(m3)
    assert abs(P.sparsity(m3) - 0.5) < 0.02
    before, after = layer_stats(trained, digits[2][:1]), layer_stats(m, digits[2][:1])
    assert totals(after)["bytes"] == totals(before)["bytes"]  # dense storage: no flash saved
    assert SPARSITY_NOTE in compare_table(before, after)


# --------------------------------------------------------------------------- low-rank
def test_svd_full_rank_is_exact():
    torch.manual_seed(0)
    lin, conv = nn.Linear(20, 30), nn.Conv2d(4, 6, 3, stride=2, padding=1)
    x, xc = torch.randn(5, 20), torch.randn(2, 4, 9, 9)
    torch.testing.assert_close(L.svd_factor(lin, 20)(x), lin(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(L.svd_factor(conv, 6)(xc), conv(xc), rtol=1e-5, atol=1e-5)
    two = L.svd_factor(conv, 3)
    assert two[0].out_channels == 3 and two[1].kernel_size == (1, 1) and two(xc).shape == conv(xc).shape


def test_lowrank_energy_budget_and_finetune(trained, digits):
    xtr, ytr, xte, yte = digits
    f, done = L.factorize(trained, ratio=0.5)
    assert done and all(r < full for r, full in done.values())
    assert _params(f) < _params(trained)
    assert L.choose_rank(trained.fc1, energy=1.0) == min(trained.fc1.weight.shape)
    assert L.choose_rank(trained.fc1, energy=0.5) < L.choose_rank(trained.fc1, energy=0.95)
    D.fit(f, xtr, ytr, epochs=2, lr=1e-3, verbose=False)
    assert D.accuracy(f, xte, yte) > D.accuracy(trained, xte, yte) - 0.05


# --------------------------------------------------------------------------- distillation
def test_kd_loss_and_distillation_beats_hard_labels(trained, digits):
    xtr, ytr, xte, yte = digits
    s = torch.randn(4, 10)
    assert float(D.kd_loss(s, s.clone(), temperature=3.0, alpha=1.0)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ModelError):
        D.kd_loss(torch.randn(4, 10), torch.randn(4, 5))
    # a small student on few labelled samples: the teacher's soft targets on all inputs help
    few = np.concatenate([np.where(ytr == c)[0][:3] for c in range(10)])

    def student():
        torch.manual_seed(1)
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))

    base = D.fit(student(), xtr[few], ytr[few], epochs=30, lr=3e-3, verbose=False)
    kd = student()
    teacher_labels = D.predict(trained, xtr).argmax(1)
    D.distill(kd, trained, xtr, teacher_labels, epochs=8, temperature=4.0, alpha=0.9, verbose=False)
    assert D.accuracy(kd, xte, yte) > D.accuracy(base, xte, yte) + 0.05
    assert _params(kd) < _params(trained) / 4


def test_feature_distillation_with_adapter_reduces_loss(trained, digits):
    xtr, ytr = digits[0][:256], digits[1][:256]
    torch.manual_seed(0)
    st = ResNetish()
    st.stem = nn.Sequential(nn.Conv2d(1, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU())
    losses = []
    import io
    import contextlib
    buf = io.StringIO()
    with contextlib.redirect_stderr(buf):
        D.distill(st, trained, xtr, ytr, epochs=4, features=[("down", "down")], verbose=True)
    for line in buf.getvalue().splitlines():
        losses.append(float(line.split("loss ")[1].split(",")[0]))
    assert losses[-1] < losses[0]
    with pytest.raises(ModelError, match="names no module"):
        D.distill(st, trained, xtr, ytr, epochs=1, features=[("nope", "down")], verbose=False)


# --------------------------------------------------------------------------- QAT
def test_qat_exports_qdq_that_ort_runs_accurately(trained, digits, tmp_path):
    import onnx
    from edgecomp.compress.qat import export_qdq, fold_batchnorm, qat
    xtr, ytr, xte, yte = digits
    folded = fold_batchnorm(trained)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    np.testing.assert_allclose(D.predict(folded, xte[:32]), D.predict(trained, xte[:32]), rtol=1e-4, atol=1e-4)
    q = qat(trained, xtr, ytr, epochs=1, verbose=False)
    w = q.b1[0].weight.detach()
    scale = w.abs().amax(dim=(1, 2, 3), keepdim=True) / 127
    np.testing.assert_allclose((w / scale).numpy(), np.round((w / scale).numpy()), atol=1e-3)  # on the int8 grid
    path = export_qdq(q, xte[:1], xtr[:200], tmp_path / "qat.int8.onnx")
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    acc = float((onnx_predict(path, xte).argmax(1) == yte).mean())
    assert acc > D.accuracy(trained, xte, yte) - 0.02


# --------------------------------------------------------------------------- search
@pytest.mark.toolchain
@pytest.mark.qemu
def test_search_writes_pareto_and_respects_budgets(digits, tmp_path):
    from edgecomp.compress.search import mnist_cnn, run_compress
    xtr, ytr, xte, yte = digits
    torch.manual_seed(0)
    model = mnist_cnn(0.5, 32, in_hw=8)
    D.fit(model, xtr, ytr, epochs=10, lr=3e-3, verbose=False)
    cands = [{"method": "ptq"}, {"method": "prune", "amount": 0.3, "steps": 1}, {"method": "fp32"}]
    s = run_compress(model, (xtr, ytr, xte, yte), out_dir=tmp_path / "o", flash=16 * 1024, max_accuracy_drop=3.0,
                     candidates=cands, executor="inline", epochs=3, measure="estimate", verbose=False)
    rows = [json.loads(line) for line in (tmp_path / "o" / "trials.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and s["trials"] == 3
    md = (tmp_path / "o" / "pareto.md").read_text()
    assert "| candidate |" in md and "ptq" in md and "estimated" in md
    assert (tmp_path / "o" / "pareto.png").stat().st_size > 1000
    by = {r["label"]: r for r in rows}
    assert by["fp32"]["flash_bytes"] > 16 * 1024  # fp32 is too big: it must not be chosen
    assert s["fits"] and s["chosen"] != "fp32"
    chosen = s["chosen_row"]  # compiled before it was chosen: measured, not estimated
    assert not chosen["estimated"] and chosen["compiled_final"]
    assert chosen["flash_bytes"] <= 16 * 1024 and (s["baseline_accuracy"] - chosen["accuracy"]) * 100 <= 3.0
    assert (tmp_path / "o" / "chosen.int8.onnx").is_file() and (tmp_path / "o" / "bundle" / "manifest.json").is_file()
    # the reported test number is the firmware's, on samples the selection never saw
    t = s["test"]
    assert t["where"].startswith("firmware under QEMU") and t["samples"] == len(xte) // 2
    assert abs(t["score"] - t["ort"]) <= 0.02
    # an impossible budget: says which one fails and what came closest
    s2 = run_compress(model, (xtr, ytr, xte, yte), out_dir=tmp_path / "o2", flash=100, max_accuracy_drop=3.0,
                      candidates=[{"method": "ptq"}], executor="inline", epochs=1, measure="estimate", verbose=False)
    assert not s2["fits"] and "flash" in s2["failing_budgets"] and s2["chosen"] == "ptq"
    assert "No candidate meets every budget" in (tmp_path / "o2" / "pareto.md").read_text()
    assert not (tmp_path / "o2" / "chosen.int8.onnx").exists() and not (tmp_path / "o2" / "bundle").exists()


def test_selection_ties_and_budgets():
    from edgecomp.compress.selection import ranked, select
    from edgecomp.compress.task import make_task
    task = make_task()
    rows = [dict(label="b", score=0.95, tiebreak=-0.30, flash_bytes=900, instructions=10, ram_bytes=1),
            dict(label="a", score=0.95, tiebreak=-0.20, flash_bytes=1000, instructions=10, ram_bytes=1),
            dict(label="c", score=0.96, tiebreak=-0.50, flash_bytes=5000, instructions=10, ram_bytes=1),
            dict(label="d", score=0.95, tiebreak=-0.20, flash_bytes=800, instructions=10, ram_bytes=1)]
    # equal validation accuracy: the finer score decides, then less flash (not the order trials finished in)
    assert [r["label"] for r in ranked(rows, {"flash": 4096, "max_drop": 1.0}, 0.955, task)] == ["d", "a", "b"]
    assert select(rows, {"flash": 8192, "max_drop": 1.0}, 0.955, task)["chosen"]["label"] == "c"
    rows[2]["rejected"] = "over budget when compiled"
    assert select(rows, {"flash": 8192, "max_drop": 1.0}, 0.955, task)["chosen"]["label"] == "d"
    s = select(rows, {"flash": 100, "max_drop": 1.0}, 0.955, task)
    assert not s["fits"] and "flash" in s["failing"]


def test_no_finished_trial_is_an_error_not_an_empty_result(digits, tmp_path):
    from edgecomp.compress.search import mnist_cnn, run_compress
    from edgecomp.errors import ToolError
    xtr, ytr, xte, yte = digits
    with pytest.raises(ToolError, match="no trial finished"):
        run_compress(mnist_cnn(0.5, 32, in_hw=8), (xtr, ytr, xte, yte), out_dir=tmp_path,
                     candidates=[{"method": "nonsense"}], executor="inline", epochs=1, measure="estimate",
                     verbose=False)


@pytest.mark.slow
@pytest.mark.parametrize("where", ["script", "stdin"])
def test_search_from_a_script_without_main_guard_runs_its_trials(tmp_path, where):
    """A script without `if __name__ == "__main__":` (or code on standard input) used to get
    `trials: 0, fits: False` from the process pool; the trials now run in worker processes, or in
    the script's own process (with a message) when the model's class lives in __main__."""
    import subprocess
    import sys
    from pathlib import Path
    script = tmp_path / "search.py"
    script.write_text(f"""
import torch, torch.nn as nn
from edgecomp.compress.search import run_compress, mnist_cnn
from edgecomp.datasets import load_digits_split
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c, self.fc = nn.Conv2d(1, 4, 3, padding=1), nn.Linear(4 * 64, 10)
    def forward(self, x):
        return self.fc(torch.relu(self.c(x)).flatten(1))
xtr, ytr, xte, yte = load_digits_split(0)
for name, m in (("main", Net()), ("importable", mnist_cnn(0.25, 8, in_hw=8))):
    s = run_compress(m, (xtr[:300], ytr[:300], xte[:200], yte[:200]), out_dir=r"{tmp_path}" + "/" + name,
                     candidates=[{{"method": "ptq"}}, {{"method": "fp32"}}], epochs=1, measure="estimate",
                     verbose=False, firmware_test=False, target="host", workers=2)
    print(name, s["trials"], s["fits"])
""")
    root = str(Path(__file__).resolve().parents[1])
    env = {**__import__("os").environ, "PYTHONPATH": root}
    cmd = [sys.executable, str(script)] if where == "script" else [sys.executable, "-"]
    r = subprocess.run(cmd, input=None if where == "script" else script.read_text(), capture_output=True, text=True,
                       cwd=tmp_path, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "main 2 True" in r.stdout and "importable 2 True" in r.stdout
    assert "trials run in this process: the model's class is defined in __main__" in r.stderr
    assert (tmp_path / "importable" / "trials" / "01" / "worker.log").is_file()  # ran in a worker process


def test_search_rejects_bad_arguments(tmp_path):
    from edgecomp.compress.search import run_compress
    with pytest.raises(EdgecompError):
        run_compress(out_dir=tmp_path, executor="slurm")
    with pytest.raises(EdgecompError):
        run_compress(out_dir=tmp_path, flash=-1)
    with pytest.raises(EdgecompError):
        run_compress(example="cifar", out_dir=tmp_path)
    x = np.zeros((4, 1, 8, 8), np.float32)
    with pytest.raises(ModelError, match="cannot run on the data"):
        run_compress(nn.Linear(3, 2), (x, np.zeros(4, np.int64), x, np.zeros(4, np.int64)), out_dir=tmp_path)
    with pytest.raises(ModelError, match="labels"):
        run_compress(nn.Linear(3, 2), (x, np.zeros(3, np.int64), x, np.zeros(4, np.int64)), out_dir=tmp_path)


def test_datasets_shapes_and_seeded():
    a = load_digits_split(3)
    b = load_digits_split(3)
    assert a[0].shape[1:] == (1, 8, 8) and a[0].dtype == np.float32 and 0 <= a[0].min() and a[0].max() <= 1
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert set(np.unique(a[3])) == set(range(10))


# --------------------------------------------------------------------------- fixed point, mixed precision
def test_power_of_two_rewrite_keeps_accuracy(trained, digits, tmp_path):
    import onnx
    from onnx import numpy_helper as nh
    from edgecomp.compress.fixedpoint import fixedpoint_report, to_power_of_two
    from edgecomp.compress.qat import export_qdq
    xtr, ytr, xte, yte = digits
    q = export_qdq(trained, xte[:1], xtr[:200], tmp_path / "m.int8.onnx")
    info = to_power_of_two(q, tmp_path / "p.onnx")
    assert info["all_power_of_two"] and info["weights_requantized"] >= 5 and info["biases_requantized"] >= 5
    m = onnx.load(str(tmp_path / "p.onnx"))
    for init in m.graph.initializer:
        if init.name.endswith("_scale"):
            e = np.log2(nh.to_array(init).astype(np.float64))
            assert np.allclose(e, np.round(e)), init.name
    rows = fixedpoint_report(q, xte, yte, tmp_path)
    assert rows[1]["accuracy"] > rows[0]["accuracy"] - 0.03
    with pytest.raises(ModelError, match="QuantizeLinear"):
        to_power_of_two(_float_onnx(trained, xte, tmp_path),
                        tmp_path / "x.onnx")


def _float_onnx(m, x, tmp_path):
    from edgecomp.frontends.torch import export_onnx
    return export_onnx(m, torch.from_numpy(x[:1]), tmp_path / "f.onnx")


def test_mixed_precision_promotes_sensitive_layers(trained, digits):
    from edgecomp.compress.mixed import choose_precision, layer_sensitivity, precision_table
    xtr, ytr, xte, yte = digits
    sens = layer_sensitivity(trained, xtr[:200], xte, yte, bits=2)
    # 6 of the 7 conv / linear layers: the depthwise one stays int8 (no packed depthwise kernel)
    assert len(sens) == 6 and "dw.0" not in [r["layer"] for r in sens] and sens[0]["drop"] >= sens[-1]["drop"]
    assert sens[0]["drop"] > 1.0  # 2-bit on the worst layer hurts
    r = choose_precision(trained, xtr[:200], xte, yte, max_drop=0.5, options=(2, 8, 32))
    assert r["drop"] <= 0.5 and any(b > 2 for b in r["bits"].values())
    assert r["bytes"] < 4 * sum(s["params"] for s in sens)  # smaller than float32
    assert "float32 kernels" in precision_table(r)


def test_search_interrupt_keeps_finished_trials(digits, tmp_path, monkeypatch):
    from edgecomp.compress import search as S
    xtr, ytr, xte, yte = digits
    torch.manual_seed(0)
    model = S.mnist_cnn(0.5, 32, in_hw=8)
    D.fit(model, xtr, ytr, epochs=6, lr=3e-3, verbose=False)
    real, calls = S.run_trial, []

    def trial(*a, **k):
        calls.append(a[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(S, "run_trial", trial)
    with pytest.raises(KeyboardInterrupt):
        S.run_compress(model, (xtr, ytr, xte, yte), out_dir=tmp_path, candidates=[{"method": "ptq"}, {"method": "qat"}],
                       executor="inline", epochs=1, measure="estimate", verbose=False)
    rows = (tmp_path / "trials.jsonl").read_text().splitlines()
    assert len(rows) == 1 and json.loads(rows[0])["label"] == "ptq"
    assert "| ptq |" in (tmp_path / "pareto.md").read_text()
    assert not list(tmp_path.glob(".*tmp*"))  # no half-written files


@pytest.mark.slow
def test_compress_cli_process_pool(tmp_path, capsys):
    from edgecomp.cli import build_parser
    from edgecomp.compress.search import compress_cli, default_candidates

    def cli(*argv):
        a = build_parser().parse_args(["compress", *argv])
        a.estimate = True  # flash/RAM/instructions estimated: only the finalists are built
        return compress_cli(a)

    rc = cli("--example", "digits", "--quick", "--flash", "64KiB", "--ram", "8KiB", "--max-accuracy-drop", "3",
             "--workers", "2", "--output", str(tmp_path / "c"))
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert summary["trials"] == len(default_candidates(quick=True))  # every default quick candidate ran
    assert rc == 0 and summary["fits"] and (tmp_path / "c" / "chosen.int8.onnx").is_file()
    assert (tmp_path / "c" / "bundle" / "manifest.json").is_file()
    # a budget no candidate meets: non-zero exit, and the message names the budget
    from edgecomp.compress import search as S
    from edgecomp.compress.task import make_task
    rows = [json.loads(line) for line in (tmp_path / "c" / "trials.jsonl").read_text().splitlines()]
    base = summary["baseline_score"]
    md = S.results_markdown(rows, {"flash": 1024, "max_drop": 3}, base, "cortex-m4", make_task())
    assert "Budgets no candidate meets: flash" in md
    orig = S.run_compress
    try:
        S.run_compress = lambda *a, **k: {"fits": False, "failing_budgets": {"flash": "x"}, "chosen": "ptq"}
        assert cli("--flash", "1KiB", "--output", str(tmp_path / "d")) != 0
    finally:
        S.run_compress = orig
    assert "flash" in capsys.readouterr().err


def _have_qemu():
    import shutil
    return shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")


@pytest.mark.slow
@pytest.mark.skipif(not _have_qemu(), reason="needs arm-none-eabi-gcc and qemu-system-arm")
@pytest.mark.toolchain
@pytest.mark.qemu
def test_structured_pruning_is_faster_and_smaller_on_cortex_m4(trained, digits, tmp_path):
    from edgecomp.compress.qat import export_qdq
    from edgecomp.compress.search import measure_on_target
    xtr, ytr, xte, yte = digits
    pruned = P.structured_prune(trained, torch.zeros(1, 1, 8, 8), 0.5)
    res = {}
    for name, m in (("orig", trained), ("pruned", pruned)):
        q = export_qdq(m, xte[:1], xtr[:100], tmp_path / f"{name}.int8.onnx")
        (tmp_path / name).mkdir()
        res[name] = measure_on_target(q, "cortex-m4", xte, tmp_path / name, measure="target")
    assert not res["orig"]["estimated"] and res["orig"]["instructions"] > 0
    assert res["pruned"]["instructions"] < res["orig"]["instructions"] / 1.6
    assert res["pruned"]["flash_bytes"] < res["orig"]["flash_bytes"]
    assert res["pruned"]["ram_bytes"] <= res["orig"]["ram_bytes"]


@pytest.mark.slow
def test_search_on_a_local_ray_instance(digits, tmp_path):
    import ray  # noqa: F401  (a test dependency: pip install .[test])
    from edgecomp.compress.search import mnist_cnn, run_compress
    xtr, ytr, xte, yte = digits
    torch.manual_seed(0)
    model = mnist_cnn(0.5, 32, in_hw=8)
    D.fit(model, xtr, ytr, epochs=6, lr=3e-3, verbose=False)
    s = run_compress(model, (xtr, ytr, xte, yte), out_dir=tmp_path, candidates=[{"method": "ptq"}, {"method": "fp32"}],
                     executor="ray", workers=1, epochs=1, measure="estimate", verbose=False, flash=64 * 1024)
    assert s["trials"] == 2 and s["fits"]
    assert len((tmp_path / "trials.jsonl").read_text().splitlines()) == 2


def test_taylor_structured_scores_every_group_from_gradients(trained, digits):
    # chained groups (stem -> b1 -> down -> fc1): each must be scored by its own gradients
    pruned = P.structured_prune(trained, torch.zeros(1, 1, 8, 8), 0.5, saliency="taylor", x=digits[0], y=digits[1])
    ref = copy.deepcopy(trained)
    P._grads(ref, digits[0], digits[1])
    for name in ("b1.0", "down", "fc1"):
        m = ref.get_submodule(name)
        s = (m.weight.detach() * m.weight.grad).reshape(m.weight.shape[0], -1).sum(1).abs()
        if m.bias is not None:
            s = s + (m.bias.detach() * m.bias.grad).abs()
        want = torch.sort(torch.argsort(s, descending=True)[:m.weight.shape[0] // 2]).values
        got = pruned.get_submodule(name).bias.detach()
        torch.testing.assert_close(got, m.bias.detach()[want])


def test_global_average_pool_head_is_prunable():
    class GAP(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2, self.fc = nn.Conv2d(1, 8, 3), nn.Conv2d(8, 16, 3), nn.Linear(16, 10)

        def forward(self, x):
            return self.fc(torch.relu(self.c2(torch.relu(self.c1(x)))).mean((2, 3)))

    m = GAP()
    p = P.structured_prune(m, torch.zeros(1, 1, 8, 8), 0.5)
    assert p.c2.out_channels == 8 and p.fc.in_features == 8 and p(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.toolchain
def test_search_mixed_candidate_keeps_its_float_and_lowbit_layers_in_the_qdq_file(digits, tmp_path):
    import onnx
    from onnx import numpy_helper as nh

    from edgecomp.compress.search import mnist_cnn, run_compress
    xtr, ytr, xte, yte = digits
    torch.manual_seed(0)
    model = mnist_cnn(0.5, 32, in_hw=8)
    D.fit(model, xtr, ytr, epochs=4, lr=3e-3, verbose=False)
    run_compress(model, (xtr, ytr, xte, yte), out_dir=tmp_path / "o", target="host",
                 candidates=[{"method": "mixed", "max_drop": 0.0, "options": (2, 32)}],
                 executor="inline", epochs=1, measure="estimate", verbose=False, firmware_test=False)
    row = json.loads((tmp_path / "o" / "trials.jsonl").read_text().splitlines()[0])
    assert row["method"] == "mixed" and row["float_layers"]  # a zero-drop budget promotes some layer
    g = onnx.load(row["onnx"])
    inits = {i.name: nh.to_array(i) for i in g.graph.initializer}
    dq = {n.output[0]: n for n in g.graph.node if n.op_type == "DequantizeLinear"}
    float_nodes = [n.name for n in g.graph.node if n.op_type in ("Conv", "Gemm") and n.input[1] not in dq]
    assert len(float_nodes) == len(row["float_layers"])
    assert all(any(f"/{k}/" in n for k in row["float_layers"]) for n in float_nodes)
    # the other layers are stored at 2 bits: their QDQ weights lie on the ternary grid, the plan packs them
    assert sorted(row["weight_plan"]) == sorted(n.name for n in g.graph.node if n.op_type in ("Conv", "Gemm")
                                                and n.input[1] in dq)
    for n in g.graph.node:
        if n.op_type in ("Conv", "Gemm") and n.input[1] in dq:
            w = inits[dq[n.input[1]].input[0]]
            assert w.min() >= -1 and w.max() <= 1 and row["weight_plan"][n.name]["bits"] == 2


# --------------------------------------------------------------------------- data and tasks
def test_splits_from_npz_loaders_and_arrays(tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    from edgecomp.compress.task import make_splits, make_task
    rng = np.random.default_rng(0)
    x = rng.random((200, 1, 8, 8), dtype=np.float32)
    y = np.arange(200) % 10
    np.savez(tmp_path / "train.npz", x=x, y=y)
    loader = DataLoader(TensorDataset(torch.from_numpy(x[:120]), torch.from_numpy(y[:120])), batch_size=32)
    s = make_splits(tmp_path / "train.npz", loader, None, task=make_task())
    assert (len(s.x_train), len(s.x_val), len(s.x_test)) == (200, 60, 60)  # test: half of the validation data
    assert "half of the validation data" in s.notes[0] and s.y_val.dtype == np.int64
    s2 = make_splits((x, y), task=make_task(), seed=3)
    assert len(s2.x_train) + len(s2.x_val) + len(s2.x_test) == 200 and len(s2.notes) == 2
    rows = {r.tobytes() for r in s2.x_train}
    assert not any(r.tobytes() in rows for r in s2.x_test) and not any(r.tobytes() in rows for r in s2.x_val)
    with pytest.raises(ModelError, match="class indices"):
        make_splits((x, y + 0.5), task=make_task())
    with pytest.raises(ModelError, match="x and y"):
        np.savez(tmp_path / "bad.npz", inputs=x)
        make_splits(tmp_path / "bad.npz", task=make_task())


@pytest.mark.toolchain
def test_regression_search_reports_errors_and_scores_the_host_bundle(digits, tmp_path):
    """A regression task (the mean ink of a digit): MSE training, RMSE selection and budget in percent
    of the baseline error, the test RMSE measured on the compiled bundle."""
    from edgecomp.compress.search import run_compress
    xtr, _, xte, _ = digits
    ytr, yte = xtr.mean((1, 2, 3), keepdims=False)[:, None], xte.mean((1, 2, 3))[:, None]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 64, 1))
    from edgecomp.compress.task import make_task
    task = make_task("regression")
    D.fit(model, xtr, ytr, epochs=4, lr=3e-3, verbose=False, task=task)
    s = run_compress(model, (xtr, ytr, xte, yte), out_dir=tmp_path / "r", task="regression", max_error_increase=50,
                     target="host", candidates=[{"method": "ptq"}, {"method": "width", "params": 0.5}],
                     executor="inline", epochs=2, measure="estimate", verbose=False)
    assert s["fits"] and s["task"] == {"kind": "regression", "metric": "rmse"}
    t = s["test"]
    assert t["where"].startswith("host build") and t["score"] < 0 and -t["score"] < 0.05  # minus the RMSE
    md = (tmp_path / "r" / "pareto.md").read_text()
    assert "val RMSE (int8, ORT)" in md and "max_error_increase 50 % error" in md
