"""The bundle a firmware engineer opens (issue 18): its README's commands work as written, and the
model goes into a firmware of one's own through the bundle's CMakeLists.txt and model.h's example."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgecomp import api
from edgecomp.bundle import read_manifest

needs_arm = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
                               reason="needs arm-none-eabi-gcc and qemu-system-arm")


def _onnx(path: Path) -> Path:
    """[1,1,6,6] -> conv 3x3 (4) -> relu -> flatten -> fc 5."""
    rng = np.random.default_rng(3)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], name="fc", transB=1)]
    inits = [numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32) * 0.1, "b"),
             numpy_helper.from_array(rng.standard_normal((5, 144)).astype(np.float32) * 0.2, "w2"),
             numpy_helper.from_array(rng.standard_normal(5).astype(np.float32) * 0.1, "b2")]
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 6, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], inits)
    path.write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())
    return path


def _bundle(tmp_path: Path, target: str) -> Path:
    model = _onnx(tmp_path / "tiny.onnx")
    calib = np.random.default_rng(4).uniform(0, 1, (64, 1, 6, 6)).astype(np.float32)
    out = tmp_path / f"bundle-{target}"
    api.compile_model(model, target, out, calib=calib)
    return out


def _readme_commands(readme: str) -> list[str]:
    """The indented command block under '## Build and run'."""
    part = readme.split("## Build and run", 1)[1]
    block = re.search(r"\n\n((?:    \S.*\n)+)", part)
    assert block, part[:400]
    return [line[4:] for line in block.group(1).splitlines()]


@pytest.mark.parametrize("target", [pytest.param("cortex-m4", marks=[pytest.mark.qemu, needs_arm]),
                                    pytest.param("host", marks=pytest.mark.toolchain)])
def test_readme_commands_run_as_written(tmp_path, target):
    b = _bundle(tmp_path, target)
    man = read_manifest(b)
    cmds = _readme_commands((b / "README.md").read_text())
    assert any("ec_input.bin" in c and c.startswith("head -c") for c in cmds), cmds
    out = ""
    for c in cmds:
        r = subprocess.run(["bash", "-c", c], cwd=b, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, (c, r.stdout[-2000:], r.stderr[-2000:])
        out += r.stdout + r.stderr
    assert "@ec end" in out and "@ec error" not in out, out
    got = np.fromfile(b / "ec_output.bin", np.int8)
    want = api.run_bundle(b, np.zeros((1, 6, 6, 1), np.int8).transpose(0, 3, 1, 2), emulate=target != "host")
    assert got.size == 5 and np.array_equal(got, want.outputs.reshape(-1))
    assert man["inputs"][0]["dtype"] == "int8"


FIRMWARE_CMAKE = """\
cmake_minimum_required(VERSION 3.13)
project(my_firmware C)
add_subdirectory({bundle} bundle)
# the user's own firmware: their main.c; start-up code and linker script borrowed from the bundle
add_executable(app.elf main.c {bundle}/startup.c {bundle}/ec_platform.c)
target_link_libraries(app.elf PRIVATE {library})
target_link_options(app.elf PRIVATE -T {bundle}/linker.ld -nostartfiles --specs=nano.specs)
"""

MAIN = """\
#include "ec_platform.h"
{example}

int main(void)
{{
    for (int i = 0; i < EC_INPUT_SIZE; i++)
        x[i] = (float)(i % 17) / 16.0f;
    int best = classify();
    for (int i = 0; i < EC_OUTPUT_SIZE; i++) {{
        ec_puts("q ");
        ec_put_u32((uint32_t)(ec_output()[i] + 128));
        ec_putc('\\n');
    }}
    ec_puts("best ");
    ec_put_u32((uint32_t)best);
    ec_putc('\\n');
    return best < 0;
}}
"""


def _model_h_example(model_h: str) -> str:
    """The example in model.h's comment, as C."""
    lines = model_h.split("Calling the model from your own code", 1)[1].split("*/", 1)[0].splitlines()[1:]
    code = "\n".join(re.sub(r"^ \*(     )?", "", l) for l in lines)
    assert '#include "model.h"' in code and "ec_invoke()" in code
    return code


@pytest.mark.qemu
@needs_arm
@pytest.mark.skipif(shutil.which("cmake") is None, reason="needs cmake")
def test_a_firmware_of_ones_own_builds_the_bundle_with_cmake(tmp_path):
    b = _bundle(tmp_path, "cortex-m4")
    model_h = (b / "model.h").read_text()
    assert "NHWC" in model_h and "real value = scale * (q - zp)" in model_h
    proj = tmp_path / "my_firmware"
    proj.mkdir()
    lib = re.search(r"target_link_libraries\(your_firmware PRIVATE (\w+)\)", (b / "CMakeLists.txt").read_text()).group(1)
    (proj / "CMakeLists.txt").write_text(FIRMWARE_CMAKE.format(bundle=b, library=lib))
    (proj / "main.c").write_text(MAIN.format(example=_model_h_example(model_h)))
    build = tmp_path / "cmake-build"
    r = subprocess.run(["cmake", "-S", str(proj), "-B", str(build), "-DCMAKE_SYSTEM_NAME=Generic",
                        "-DCMAKE_C_COMPILER=arm-none-eabi-gcc", "-DCMAKE_TRY_COMPILE_TARGET_TYPE=STATIC_LIBRARY"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(["cmake", "--build", str(build)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (build / "bundle" / f"lib{lib}.a").is_file()
    r = subprocess.run(["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-monitor", "none", "-serial", "none",
                        "-semihosting-config", "enable=on,target=native", "-kernel", str(build / "app.elf")],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    text = r.stdout + r.stderr  # QEMU's semihosting console
    q = [int(v) - 128 for v in re.findall(r"^q (\d+)$", text, re.M)]
    best = int(re.search(r"^best (\d+)$", text, re.M).group(1))
    # the same sample through `edgecomp run`'s path (QEMU, the bundle's own harness)
    x = (np.arange(36) % 17 / 16.0).astype(np.float32).reshape(1, 6, 6, 1).transpose(0, 3, 1, 2)
    want = api.run_bundle(b, x).outputs.reshape(-1)
    assert q == want.tolist() and best == int(np.argmax(want)), (q, want)
