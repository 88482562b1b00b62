"""Helium (MVE) kernels: bit-exact with the reference kernels on a Cortex-M55 under QEMU, and in the
code generator: whole models bit-exact with TFLM.

Each case runs the reference kernel (ec_kernels.c) and the Helium kernel
(templates/cortex_m/kernels/mve/ec_kernels_mve.c) in one firmware built for cortex-m55 and run
under QEMU mps3-an547 (tests/mve_harness.py); the outputs must be equal byte for byte, nothing
may be written past the output (a painted guard), and in-place cases run over their input with
the row scratch at the offset the memory planner allows.  Random layers cover tails (channel
counts that are not multiples of 16 or of the channel groups), odd widths, padding, strides,
dilation, batches, left shifts and fused residual adds (the C path) as well as the common case
(the assembly loops, the depthwise 3x3 fast path); the MLPerf Tiny models' layers run with their
own weights and requantization.  Then the code generator's side: where --kernels auto puts them
(cortex-m55), two whole models through them against TFLM, --kernels dsp and the refusal of
--kernels mve on a core without MVE.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import mve_harness as h
from edgecomp.backends.c.kernels import packing, predicates
from edgecomp.targets import load_target

pytestmark = [pytest.mark.toolchain, pytest.mark.qemu]


@pytest.fixture(autouse=True)
def _tools():
    for tool in ("arm-none-eabi-gcc", "qemu-system-arm", "make"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is required (bash scripts/install.sh)")


def random_cases(seed: int) -> list[h.Case]:
    rng = np.random.default_rng(seed)
    r = lambda lo, hi: int(rng.integers(lo, hi + 1))  # noqa: E731
    cases = []
    for i in range(8):  # convolutions of every shape
        kh, kw = r(1, 4), r(1, 4)
        pad = tuple(r(0, 2) for _ in range(4)) if i % 3 else (0, 0, 0, 0)
        dil = (r(1, 2), r(1, 2)) if i == 5 else (1, 1)
        cases.append(h.conv_case(rng, f"conv{i}", (r(kh * dil[0], 9), r(kw * dil[1], 9)), r(1, 40), r(1, 20),
                                 (kh, kw), (r(1, 2), r(1, 2)), pad, dil, batches=2 if i == 7 else 1,
                                 residual=i in (2, 6), inplace=i in (1, 4)))
    cases.append(h.conv_case(rng, "pointwise_odd", (3, 7), 37, 11, (1, 1), inplace=True))
    cases.append(h.conv_case(rng, "pointwise_s2", (6, 6), 16, 32, (1, 1), (2, 2), residual=True))
    for i in range(6):  # depthwise
        k = (r(1, 5), r(1, 5))
        cases.append(h.depthwise_case(rng, f"dw{i}", (r(5, 9), r(5, 9)), r(1, 70), k, (r(1, 2), r(1, 2)),
                                      tuple(r(0, 2) for _ in range(4)), (2, 1) if i == 3 else (1, 1),
                                      residual=i == 4, inplace=i in (0, 5)))
    for i in range(5):  # depthwise 3x3 on whole groups of 16 channels: the fast path where no weight is -128
        cases.append(h.depthwise_case(rng, f"dw3x3_{i}", (r(3, 9), r(3, 12)), 16 * r(1, 4), (3, 3), (r(1, 2), r(1, 2)),
                                      tuple(r(0, 1) for _ in range(4)), (1, 2) if i == 2 else (1, 1),
                                      inplace=i % 2 == 0))
    for i in range(4):  # fully connected
        cases.append(h.fc_case(rng, f"fc{i}", r(1, 100), r(1, 20), batches=r(1, 3)))
    for i in range(4):  # pools
        k = (r(1, 4), r(1, 4))
        cases.append(h.pool_case(rng, f"pool{i}", "maxpool" if i % 2 else "avgpool", (r(4, 9), r(4, 9)),
                                 r(1, 40), k, (r(1, 2), r(1, 2)), (r(0, k[0] - 1), r(0, k[1] - 1))))
    cases.append(h.pool_case(rng, "global_avg", "avgpool", (16, 16), 19, (16, 16), (16, 16)))
    for i, n in enumerate((1, 4, 37, 250)):
        cases.append(h.add_case(rng, f"add{i}", n, inplace=i % 2 == 1))
    return cases


def _check(results, cases):
    assert [r.name for r in results] == [c.name for c in cases]
    bad = [f"{r.name}: {r.mismatches} bytes differ ({r.detail}), guard {r.guard}" for r in results
           if r.mismatches or r.guard]
    assert not bad, "\n".join(bad)


def test_left_shifts_and_residuals_take_the_general_path():
    """The random layers cover every path of conv and depthwise: assembly (no left shift, no residual),
    C (a positive shift or a fused residual add somewhere in the layer) and the depthwise 3x3 fast
    path (ec_depthwise_conv2d_s8_mve3x3, some of its layers in place, some with padding)."""
    cases = [c for c in random_cases(7) if c.op in ("conv", "depthwise")]
    general = [c.residual is not None or (c.arrays["shift"][1] > 0).any() for c in cases]
    assert any(general) and not all(general)
    fast = [c for c in cases if c.variant == "3x3"]
    assert len(fast) >= 3 and any(c.inplace is not None for c in fast) and any(c.fields["pad_top"] for c in fast)
    assert all(not g for c, g in zip(cases, general) if c.variant == "3x3")


def test_random_layers_bit_exact_with_the_reference_kernels(tmp_path):
    cases = random_cases(7)
    _check(h.run_in_batches(cases, tmp_path), cases)


def test_rounding_ties_bit_exact(tmp_path, monkeypatch):
    """Power-of-two multipliers and shifts of 1 to 3 bits with small weights: most outputs are exact
    rounding ties, which TFLite rounds half up in the doubling high multiply and half away from
    zero in the shift (the "minus one if negative" before VRSHL)."""
    monkeypatch.setattr(h, "TIES", True)
    rng = np.random.default_rng(3)
    cases = [h.conv_case(rng, "ties_conv", (4, 6), 24, 7, (3, 3), pad=(1, 1, 1, 1)),
             h.conv_case(rng, "ties_conv_residual", (4, 6), 24, 7, (1, 1), residual=True),
             h.depthwise_case(rng, "ties_dw", (4, 6), 21, (3, 3), pad=(1, 1, 1, 1)),
             h.depthwise_case(rng, "ties_dw_residual", (4, 6), 21, (3, 3), pad=(1, 1, 1, 1), residual=True),
             h.depthwise_case(rng, "ties_dw3x3", (4, 6), 32, (3, 3), pad=(1, 1, 1, 1)),
             h.fc_case(rng, "ties_fc", 40, 13), h.add_case(rng, "ties_add", 61)]
    left = h.depthwise_case(rng, "ties_dw_left_shift", (4, 6), 21, (3, 3), pad=(1, 1, 1, 1))
    shift = left.arrays["shift"][1].copy()
    shift[0] = 1  # one channel with a left shift: the C path
    left.arrays.update(shift=("int8_t", shift))
    h.repack_depthwise(left)
    cases.append(left)
    _check(h.run_cases(cases, tmp_path), cases)


def test_depthwise_minus_128_weights_leave_the_3x3_fast_path(tmp_path):
    """The 3x3 fast path adds two int8 products in int16: -128 x -128 twice is 32,768, one past int16.
    A layer with a -128 weight (outside TFLite's symmetric -127..127, but legal) takes the general
    kernel: here every input is -128 and taps 0 and 1 of channel 0 weigh -128, so the fast path's
    pair would wrap."""
    rng = np.random.default_rng(4)
    c = h.depthwise_case(rng, "dw3x3_minus128", (5, 6), 32, (3, 3), pad=(1, 1, 1, 1))
    w = c.arrays["filter"][1].reshape(3, 3, 32).copy()
    w[0, 0, 0] = w[0, 1, 0] = -128
    c.arrays["filter"] = ("int8_t", w.reshape(-1))
    c.arrays["input"] = ("int8_t", np.full_like(c.arrays["input"][1], -128))
    c.arrays["shift"] = ("int8_t", np.minimum(c.arrays["shift"][1], 0))
    c.fields["input_offset"] = 0  # zero point 0: the padding reads 0 as well
    h.repack_depthwise(c)
    assert c.variant == ""
    _check(h.run_cases([c], tmp_path), [c])


@pytest.mark.parametrize("model", ["ad01_int8", "kws_ref_model", "pretrainedResnet_quant", "vww_96_int8"])
def test_mlperf_tiny_layers_bit_exact_with_the_reference_kernels(tmp_path, mlperf_dir, model):
    cases = h.model_cases(mlperf_dir / f"{model}.tflite", np.random.default_rng(5), model[:4], inplace=True)
    assert len(cases) >= 2
    _check(h.run_in_batches(cases, tmp_path), cases)


def test_applies_on_the_mlperf_models(mlperf_dir):
    """Where the kernel planner puts the Helium kernels: every int8 conv, depthwise (multiplier 1),
    fully connected and pool of the four models with --kernels auto on cortex-m55 (and the Alif
    board); nothing on a core without MVE."""
    from edgecomp.backends.c.kernel_plan import mark_mve
    from edgecomp.frontends.tflite import load_tflite
    from edgecomp.options import CodegenOptions
    from edgecomp.passes.fuse_residual import fuse_residual_adds
    from edgecomp.passes.requantize import requantize

    def opts(name):
        t = load_target(name)
        return CodegenOptions.for_target(t.dsp, "auto", target_mve=t.mve, target_name=t.name)
    m55, m33, alif = opts("cortex-m55"), opts("cortex-m33"), opts("alif-e7-hp")
    assert m55.mve and m55.dsp and alif.mve and not m33.mve and m33.dsp
    seen = set()
    for model in ("ad01_int8", "kws_ref_model", "pretrainedResnet_quant", "vww_96_int8"):
        g = fuse_residual_adds(requantize(load_tflite(mlperf_dir / f"{model}.tflite")))
        takes = {n.name for n in g.nodes if n.op in predicates.MVE_CHECKS}
        seen |= {n.op for n in g.nodes if n.name in takes}
        assert mark_mve(g, m55) == takes and mark_mve(g, alif) == takes
        assert mark_mve(g, m33) == set() and not any(n.attrs.get("mve") for n in g.nodes)
    assert seen >= {"conv2d", "depthwise_conv2d", "fully_connected", "avg_pool2d"}


def test_packed_layouts_match_the_c_sizes():
    """The packers write exactly the bytes the C macros step over (EC_MVE_*_GROUP_BYTES)."""
    rng = np.random.default_rng(1)
    for o, k in ((1, 1), (3, 16), (7, 20), (64, 576)):
        w = rng.integers(-127, 128, size=(o, 1, 1, k), dtype=np.int8)
        assert packing.pack_conv_mve(w, None, 3, 1 << 30, -1).size == -(-o // 3) * (64 + 48 * -(-k // 16))
        assert packing.pack_fc_mve(w.reshape(o, k), None, 3, 1 << 30, -1).size == -(-o // 6) * (128 + 96 * -(-k // 16))
    for c, taps in ((1, 9), (20, 9), (64, 25)):
        w = rng.integers(-127, 128, size=(1, taps, 1, c), dtype=np.int8)
        assert packing.pack_depthwise_mve(w, None, 0, 1 << 30, -1).size == -(-c // 16) * (256 + 16 * taps)
    folded = packing.mve_fold_bias(np.full((1, 3), 127, np.int8), np.array([2 ** 31 - 1]), 1)
    assert folded[0] == -(2 ** 31) + 380  # int32 wrap-around, like the kernels' sums


# --------------------------------------------------------------------------- in the code generator
@pytest.mark.parametrize("model,fused", [("kws_ref_model", False), ("pretrainedResnet_quant", True)])
def test_whole_model_through_the_helium_kernels_bit_exact_with_tflm(tmp_path, mlperf_dir, model, fused):
    """DS-CNN and ResNet-8 compiled with the default options for cortex-m55: every conv, depthwise,
    fully connected and pool layer runs a Helium kernel (DS-CNN's depthwise layers the 3x3 fast
    path; ResNet's first block row by row), the firmware under QEMU mps3-an547 gives TFLM's outputs
    on three inputs, in at most 0.4 instructions per MAC (issue 21's goal, glue included)."""
    from edgecomp import api
    from edgecomp.reference import tflm_run

    path = mlperf_dir / f"{model}.tflite"
    man = api.compile_model(str(path), "cortex-m55", tmp_path / "b")
    assert man["options"]["kernels"] == "auto" and man["target_info"]["mve"]
    kernels = {l["name"]: l["kernel"] for l in man["layers"]}
    for l in man["layers"]:
        if l["op"] in predicates.MVE_CHECKS and not l.get("fused_into"):
            assert "_mve" in l["kernel"], (l["name"], l["kernel"])
    if model == "kws_ref_model":
        assert all(k.startswith("depthwise_conv2d_s8_mve3x3") for n, k in kernels.items() if "depthwise" in n)
    assert any(l.get("fused_into") for l in man["layers"]) == fused
    shape = tuple(man["inputs"][0]["shape"])
    x = np.random.default_rng(21).integers(-128, 128, size=(3,) + shape[1:], dtype=np.int8)
    got = api.run_bundle(tmp_path / "b", x, progress=False)
    assert got.result.machine == "mps3-an547"
    want = tflm_run(path, x)
    np.testing.assert_array_equal(got.outputs.reshape(want.shape), want)
    assert len(np.unique(want)) > 1
    assert got.result.instructions_per_inference <= 0.4 * man["macs"], got.result.instructions_per_inference / man["macs"]


def test_kernels_dsp_on_cortex_m55_keeps_the_dsp_kernels(tmp_path, mlperf_dir):
    """--kernels dsp on a Helium core: the Armv7E-M kernels as before (for comparison), no Helium file."""
    from edgecomp.backends.cortex_m import write_bundle
    from edgecomp.frontends.tflite import load_tflite

    man = write_bundle(load_tflite(mlperf_dir / "ad01_int8.tflite"), "cortex-m55", tmp_path / "b",
                       options={"kernels": "dsp"})
    assert not any("_mve" in l["kernel"] for l in man["layers"])
    assert any("_dsp" in l["kernel"] for l in man["layers"])
    assert not (tmp_path / "b" / "ec_kernels_mve.c").exists()


def test_auto_falls_back_to_the_dsp_kernels_where_helium_does_not_fit(tmp_path, mlperf_dir):
    """The Helium kernels' packed weights take more flash (channel groups padded to 16 bytes, their
    requantization vectors): on a Cortex-M55 board whose flash holds AD01 with the DSP kernels
    (283 KB) but not with the Helium ones (314 KB), --kernels auto builds the DSP kernels and says
    so; --kernels mve is refused as not fitting, leaving no bundle."""
    from edgecomp.backends.cortex_m import write_bundle
    from edgecomp.errors import DoesNotFitError
    from edgecomp.frontends.tflite import load_tflite
    from edgecomp.report import compile_report

    m55 = open(load_target("cortex-m55").path).read()
    small = tmp_path / "m55-300k.toml"
    small.write_text(m55.replace("flash_size = 0x00080000", "flash_size = 0x0004B000"))  # 300 KiB
    g = load_tflite(mlperf_dir / "ad01_int8.tflite")
    man = write_bundle(g, str(small), tmp_path / "auto")
    assert not any("_mve" in l["kernel"] for l in man["layers"]) and not (tmp_path / "auto" / "ec_kernels_mve.c").exists()
    assert "Helium kernels' build does not fit" in man["kernels_note"] and "kernels:" in compile_report(man)
    with pytest.raises(DoesNotFitError, match="FLASH overflowed"):
        write_bundle(g, str(small), tmp_path / "mve", options={"kernels": "mve"})
    assert not (tmp_path / "mve").exists()
    assert "kernels_note" not in write_bundle(g, "cortex-m55", tmp_path / "fits")  # (the Helium build fits there)


def test_helium_bundle_is_not_run_natively(tmp_path, mlperf_dir):
    """`edgecomp run --host` on a Helium bundle: a clear error (exit 2) naming what to do, not a link
    failure reported as a bug (the Helium kernels have no plain C version)."""
    from edgecomp.backends.cortex_m import write_bundle
    from edgecomp.backends.run import run_bundle
    from edgecomp.errors import EdgecompError, ToolError
    from edgecomp.frontends.tflite import load_tflite

    write_bundle(load_tflite(mlperf_dir / "ad01_int8.tflite"), "cortex-m55", tmp_path / "b")
    x = np.zeros((1, 640), np.int8)
    with pytest.raises(EdgecompError, match=r"Helium \(MVE\) kernels.*--kernels dsp") as e:
        run_bundle(tmp_path / "b", x, emulate=False)
    assert not isinstance(e.value, ToolError) and e.value.exit_code == 2


def test_kernels_mve_without_mve_is_refused_before_any_work(tmp_path, mlperf_dir, monkeypatch, capsys):
    """`edgecomp compile --kernels mve` for a core without Helium: one clear line, exit 2, nothing
    imported, no bundle."""
    from edgecomp import api, cli

    def no_import(*a, **k):
        raise AssertionError("the model was imported before the refusal")
    monkeypatch.setattr(api, "load_graph", no_import)
    for target in ("cortex-m4", "cortex-m33", "host"):
        out = tmp_path / target
        rc = cli.main(["compile", str(mlperf_dir / "ad01_int8.tflite"), "-t", target, "--kernels", "mve",
                       "-o", str(out)])
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith("edgecomp: error:") and len(err.strip().splitlines()) == 1, err
        assert "MVE" in err and target in err and "--kernels auto" in err
        assert not out.exists()


def test_target_file_mve_needs_armv81m(tmp_path):
    """A target file may declare mve = true only for an Armv8.1-M core."""
    from edgecomp.errors import EdgecompError

    text = (load_target("cortex-m55").path and open(load_target("cortex-m55").path).read())
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('arch = "armv8.1-m.main"', 'arch = "armv8-m.main"'))
    with pytest.raises(EdgecompError, match="mve = true needs arch"):
        load_target(str(bad))
    assert not load_target("cortex-m33").mve and load_target("cortex-m55").mve
