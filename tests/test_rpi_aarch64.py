"""The aarch64 proof: the bundle's run.py under qemu-aarch64-static with Debian's arm64 Python 3.11
and the pinned aarch64 wheels, compared with the x86 run.

The userland comes from scripts/aarch64_userland.sh (arm64 debs + `pip download --platform
manylinux_2_28_aarch64`), cached in $EDGECOMP_AARCH64_CACHE or ~/.cache/edgecomp/aarch64, so
only the first run downloads (about 60 MB).  QEMU runs with -cpu cortex-a72, the Pi 4's core:
a wheel that uses instructions a Pi 4 lacks dies here with SIGILL (onnxruntime 1.21.0 does).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecomp.backends.rpi import LITERT_PIN, NUMPY_PIN, ORT_PIN, read_probe, write_rpi_bundle

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "aarch64_userland.sh"
QEMU = shutil.which("qemu-aarch64-static")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(QEMU is None, reason="needs qemu-user-static (qemu-aarch64-static)")]


@pytest.fixture(scope="module")
def userland(tmp_path_factory) -> Path:
    cache = Path(os.environ.get("EDGECOMP_AARCH64_CACHE", Path.home() / ".cache" / "edgecomp" / "aarch64"))
    r = subprocess.run(["bash", str(SCRIPT), str(cache)], capture_output=True, text=True, timeout=900,
                       env={**os.environ, "PYTHON": sys.executable})  # its pip downloads the wheels
    assert r.returncode == 0, f"aarch64_userland.sh failed:\n{r.stdout}\n{r.stderr}"
    # its default wheels are the pins every bundle's requirements.txt carries (ORT and LiteRT bundles)
    assert (cache / "requirements.default.txt").read_text().split() == [NUMPY_PIN, ORT_PIN, LITERT_PIN]
    assert (cache / "rootfs" / "usr" / "bin" / "python3.11").is_file()
    return cache


# What a Pi 4 shows in /proc/cpuinfo (4x Cortex-A72: implementer 0x41, part 0xd08).
PI4_CPUINFO = "".join(f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
                      f"CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\n"
                      f"CPU revision\t: 3\n\n" for i in range(4))


def aarch64(userland: Path, args: list[str], cwd: Path, cpu: str = "cortex-a72",
            arm_cpuinfo: bool = False) -> subprocess.CompletedProcess:
    """Run the aarch64 python under QEMU.  ``arm_cpuinfo``: in a private mount namespace, show the
    guest a Pi 4's /proc/cpuinfo instead of the host's x86 one, which QEMU 7.2's user mode passes
    through and which makes the cpuinfo library (inside LiteRT, and onnxruntime >= 1.28)
    dereference NULL: it finds no Arm cores.  Needs root (unshare -m, mount --bind)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(userland / "site"),
           "PYTHONNOUSERSITE": "1", "HOME": str(cwd), "LC_ALL": "C.UTF-8"}
    cmd = [QEMU, "-cpu", cpu, "-L", str(userland / "rootfs"), str(userland / "rootfs/usr/bin/python3.11"), *args]
    if arm_cpuinfo:
        fake = cwd / "cpuinfo.pi4"
        fake.write_text(PI4_CPUINFO)
        cmd = ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /proc/cpuinfo && exec "$@"', str(fake), *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=cwd, env=env)


def x86(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    from layer_zoo import export_small_cnn
    d = tmp_path_factory.mktemp("aarch64")
    cnn = export_small_cnn(d / "cnn.onnx")
    calib = np.random.default_rng(0).random((32, 1, 28, 28), dtype=np.float32)
    write_rpi_bundle(cnn, "rpi4", d / "fp32", precision="float32")
    write_rpi_bundle(cnn, "rpi4", d / "int8", calib=calib)
    np.save(d / "x.npy", np.random.default_rng(2).random((8, 1, 28, 28), dtype=np.float32))
    return d


def test_userland_is_aarch64_python_311_with_the_pinned_runtime(userland, tmp_path):
    r = aarch64(userland, ["-c", "import platform, sys, numpy, onnxruntime; "
                                 "print(platform.machine(), sys.version_info[:2], numpy.__version__, "
                                 "onnxruntime.__version__)"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == "aarch64"
    assert "(3, 11)" in r.stdout
    assert NUMPY_PIN.split("==")[1] in r.stdout and ORT_PIN.split("==")[1] in r.stdout


def x86_reference(model: Path, x: np.ndarray) -> np.ndarray:
    """The int8 model's exact arithmetic on x86: ORT with graph optimizations off runs the QDQ graph
    as DequantizeLinear -> float op -> QuantizeLinear.  (With them on, x86 ORT uses its AVX2 u8s8
    kernels, whose 16-bit pair sums (vpmaddubsw) saturate on CPUs without VNNI, so its int8 results
    can differ from any Arm CPU by a few LSB; Arm's int8 kernels do not saturate.)"""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


def test_fp32_run_py_on_aarch64_matches_x86(userland, bundles):
    d = bundles
    r = x86([str(d / "fp32" / "run.py"), "x.npy", "-o", "out-x86-fp32"], d)
    assert r.returncode == 0, r.stderr
    r = aarch64(userland, [str(d / "fp32" / "run.py"), "x.npy", "-o", "out-arm-fp32"], d)
    assert r.returncode == 0, r.stderr
    a = np.load(d / "out-arm-fp32" / "output.npy")
    b = np.load(d / "out-x86-fp32" / "output.npy")
    assert a.shape == b.shape == (8, 10)
    assert np.abs(b).max() > 1e-3
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


@pytest.mark.parametrize("cpu", ["cortex-a72", "cortex-a76"])  # Pi 4 (no SDOT), Pi 5 (SDOT kernels)
def test_int8_run_py_on_aarch64_is_exact(userland, bundles, cpu):
    d = bundles
    r = aarch64(userland, [str(d / "int8" / "run.py"), "x.npy", "-o", f"out-arm-int8-{cpu}"], d, cpu=cpu)
    assert r.returncode == 0, r.stderr
    a = np.load(d / f"out-arm-int8-{cpu}" / "output.npy")
    ref = x86_reference(d / "int8" / "model.onnx", np.load(d / "x.npy"))
    assert a.shape == ref.shape == (8, 10)
    np.testing.assert_array_equal(a, ref)  # the same integers, dequantized the same way


def test_probe_on_aarch64(userland, bundles):
    d = bundles
    r = aarch64(userland, [str(d / "int8" / "probe.py"), "--runs", "3", "--warmup", "1", "--threads", "1",
                           "--json", "probe-arm.json"], d)
    assert r.returncode == 0, r.stderr
    p = read_probe(d / "probe-arm.json")
    assert p["machine"] == "aarch64" and p["python"].startswith("3.11.")
    assert p["runtime_version"] == ORT_PIN.split("==")[1]
    assert p["results"][0]["runs"] == 3 and p["results"][0]["p50_ms"] > 0


def test_tflite_bundle_on_aarch64_matches_x86(userland, mlperf_dir, tmp_path):
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("LiteRT under QEMU 7.2 needs an Arm /proc/cpuinfo: run as root (unshare -m, mount --bind)")
    write_rpi_bundle(mlperf_dir / "ad01_int8.tflite", "rpi4", tmp_path / "b")
    x = np.random.default_rng(3).integers(-128, 128, size=(4, 640)).astype(np.int8)
    np.save(tmp_path / "x.npy", x)
    r = x86([str(tmp_path / "b" / "run.py"), "x.npy", "-o", "out-x86"], tmp_path)
    assert r.returncode == 0, r.stderr
    r = aarch64(userland, [str(tmp_path / "b" / "run.py"), "x.npy", "-o", "out-arm"], tmp_path, arm_cpuinfo=True)
    assert r.returncode == 0, r.stderr
    man = json.loads((tmp_path / "b" / "manifest.json").read_text())
    outs = sorted((tmp_path / "out-x86").glob("*.npy"))
    assert len(outs) == len(man["outputs"]) == 1
    a, b = np.load(tmp_path / "out-arm" / outs[0].name), np.load(outs[0])
    assert a.dtype == np.int8 and a.shape == (4, 640)
    np.testing.assert_array_equal(a, b)


def _ort_site(userland: Path, version: str) -> Path:
    """onnxruntime==version (aarch64, cp311) unzipped beside the userland, cached."""
    site = userland / "ort-versions" / version
    if not (site / "onnxruntime" / "__init__.py").is_file():
        wheels = userland / "ort-versions" / f"{version}.whl"
        r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
                            "--only-binary=:all:", "--platform", "manylinux_2_28_aarch64", "--platform",
                            "manylinux_2_27_aarch64", "--python-version", "3.11", f"onnxruntime=={version}",
                            "-d", str(wheels)], capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        tmp = site.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        for w in wheels.glob("*.whl"):
            subprocess.run([sys.executable, "-m", "zipfile", "-e", str(w), str(tmp)], check=True)
        tmp.rename(site)
    return site


def _import_ort(userland: Path, version: str, cwd: Path, cpu: str, arm_cpuinfo: bool) -> subprocess.CompletedProcess:
    site = _ort_site(userland, version)
    code = f"import sys; sys.path.insert(0, {str(site)!r}); import onnxruntime; print(onnxruntime.__version__)"
    return aarch64(userland, ["-c", code], cwd, cpu=cpu, arm_cpuinfo=arm_cpuinfo)


def test_why_the_onnxruntime_pin(userland, tmp_path):
    """The evidence behind ORT_PIN (see edgecomp/backends/rpi.py and the bundle README):
    1.32 dies under QEMU 7.2 only because the guest sees the host's x86 /proc/cpuinfo (with a
    Pi 4's /proc/cpuinfo it imports); 1.21.0 uses instructions a Cortex-A72 lacks (SIGILL)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root for unshare -m / mount --bind")
    r = _import_ort(userland, "1.32.0", tmp_path, "cortex-a72", arm_cpuinfo=False)
    assert r.returncode == -11, (r.returncode, r.stderr)  # SIGSEGV (NULL dereference inside cpuinfo)
    r = _import_ort(userland, "1.32.0", tmp_path, "cortex-a72", arm_cpuinfo=True)
    assert r.returncode == 0 and r.stdout.strip() == "1.32.0", r.stderr
    r = _import_ort(userland, "1.21.0", tmp_path, "cortex-a72", arm_cpuinfo=True)
    assert r.returncode == -4, (r.returncode, r.stderr)  # SIGILL on the Pi 4's core
    r = _import_ort(userland, "1.21.0", tmp_path, "cortex-a76", arm_cpuinfo=True)
    assert r.returncode == 0, r.stderr  # fine on a Pi 5's core


@pytest.mark.parametrize("pyver", ["3.11", "3.13"])  # Raspberry Pi OS Bookworm, Trixie
def test_pins_have_aarch64_wheels(pyver, tmp_path):
    """Every pin (and its dependencies) installs from wheels on a 64-bit Pi OS: nothing compiles there."""
    (tmp_path / "req.txt").write_text(f"{NUMPY_PIN}\n{ORT_PIN}\n{LITERT_PIN}\n")
    r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                        "--only-binary=:all:", "--platform", "manylinux_2_28_aarch64", "--platform",
                        "manylinux_2_27_aarch64", "--platform", "manylinux_2_17_aarch64", "--platform",
                        "manylinux2014_aarch64", "--python-version", pyver, "-r", str(tmp_path / "req.txt"),
                        "-d", str(tmp_path / "w")], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in (tmp_path / "w").glob("*.whl"))
    tag = "cp" + pyver.replace(".", "")
    for pin in (NUMPY_PIN, ORT_PIN, LITERT_PIN):
        dist, ver = pin.replace("-", "_").split("==")
        assert any(n.startswith(f"{dist}-{ver}-{tag}-") and "aarch64" in n for n in names), (pin, names)
