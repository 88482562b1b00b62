"""The host C harness of the generated code: HARNESS (a main() that feeds stdin samples to ec_run
and writes the outputs, plus "names", "null", "probe" and "quant" modes), build() (gcc -Werror with
EC_PROBE/EC_DEBUG) and run_c() / check() (generate, build, run; check compares with edgecomp.interp).
Shared by the C tests (test_codegen.py, test_kernels_dsp.py, test_interp*.py, test_ops_*.py, ...)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgecomp import interp, ir
from edgecomp.backends.c import generate
from edgecomp.options import CodegenOptions
from edgecomp.resources import templates_dir

CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror"]
ARM_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-Os"]
SOURCES = ["model.c", "weights.c", "ec_kernels.c"]

HARNESS = r"""
#include <stdio.h>
#include <string.h>
#include "model.h"

uint32_t ec_timer_now(void) { static uint32_t t; return t += 3; }

int main(int argc, char **argv)
{
    static ec_in_t in[EC_INPUT_SIZE];
    static ec_out_t out[EC_OUTPUT_SIZE];
    if (argc > 1 && strcmp(argv[1], "names") == 0) {
        for (int i = 0; i < EC_NUM_LAYERS; i++) {
            fwrite(ec_layer_name[i], 1, strlen(ec_layer_name[i]) + 1, stdout);
            fwrite(ec_layer_op[i], 1, strlen(ec_layer_op[i]) + 1, stdout);
        }
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "null") == 0) {
        printf("%d %d\n", ec_run(NULL, out), ec_run(in, NULL));
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "probe") == 0) {
        ec_invoke();
        for (int i = 0; i < EC_NUM_LAYERS; i++)
            printf("%lu\n", (unsigned long)ec_layer_ticks[i]);
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "quant") == 0) {  /* float in -> ec_quantize_input -> run -> dequantize */
        static float xf[EC_INPUT_SIZE], yf[EC_OUTPUT_SIZE];
        while (fread(xf, sizeof xf, 1, stdin) == 1) {
            ec_quantize_input(xf, in);
            if (ec_run(in, out) != 0)
                return 1;
            ec_dequantize_output(out, yf);
            fwrite(yf, sizeof yf, 1, stdout);
        }
        return 0;
    }
    while (fread(in, sizeof in, 1, stdin) == 1) {
        if (ec_run(in, out) != 0)
            return 1;
        fwrite(out, sizeof out, 1, stdout);
    }
    return 0;
}
"""

def needs_gcc(test):
    """A test that builds C with the host gcc: marked `toolchain`, skipped without gcc."""
    return pytest.mark.toolchain(pytest.mark.skipif(shutil.which("gcc") is None, reason="host gcc not installed")(test))


def build(out: Path, extra: list[str] | None = None, sources: list[str] | None = None) -> Path:
    (out / "harness.c").write_text(HARNESS)
    shutil.copyfile(templates_dir() / "cortex_m" / "ec_platform.h", out / "ec_platform.h")
    exe = out / "fw"
    cmd = ["gcc", *CFLAGS, "-O1", "-DEC_PROBE", "-DEC_DEBUG", *(extra or []), "-o", str(exe), "harness.c",
           *(sources or SOURCES), "-lm"]
    r = subprocess.run(cmd, cwd=out, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return exe


def run_c(graph: ir.Graph, x: np.ndarray, tmp: Path, name: str = "model", dsp: bool = False) -> np.ndarray:
    """Generate (reference kernels, or the DSP ones in their plain C form), build with the harness, run."""
    info = generate(graph, tmp, name=name, options=CodegenOptions(dsp=dsp))
    exe = build(tmp, sources=[f for f in info.files if f.endswith(".c")])
    r = subprocess.run([str(exe)], input=np.ascontiguousarray(x).tobytes(), capture_output=True, check=True)
    o = graph.tensors[graph.outputs[0]]
    return np.frombuffer(r.stdout, dtype=ir.np_dtype(o.dtype)).reshape((len(x),) + o.shape[1:])


def check(graph: ir.Graph, tmp: Path, n: int = 4, seed: int = 0, name: str = "model") -> np.ndarray:
    t = graph.tensors[graph.inputs[0]]
    rng = np.random.default_rng(seed)
    if t.dtype == "int8":
        x = rng.integers(-128, 128, size=(n,) + t.shape[1:], dtype=np.int8)
    else:
        x = (rng.standard_normal((n,) + t.shape[1:]) * 2).astype(np.float32)
    got = run_c(graph, x, tmp, name)
    want = interp.run(graph, x)[graph.outputs[0]]
    if want.dtype == np.int8:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.ptp(want.astype(np.float64)) > 0, "a test whose output is constant checks little"
    return got
