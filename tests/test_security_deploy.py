"""`edgecomp deploy` never hands a host name or path to a local shell and never turns host-key checking off.

``ssh`` and ``scp`` on PATH are replaced by small recorders: each logs its argv
(so the test sees exactly what edgecomp passed) and, like a real device, runs
the remote command with ``/bin/sh -c`` in a scratch "remote home" (so the
quoting of the remote command is checked by a real shell, too).  Files named
PWNED* appear if any metacharacter was ever interpreted.
"""
from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

deploy_mod = pytest.importorskip("edgecomp.deploy")
pytest.importorskip("edgecomp.backends.rpi")

ROOT = Path(__file__).resolve().parent.parent

FAKE = textwrap.dedent("""\
    #!{python}
    import json, os, shutil, subprocess, sys
    tool = os.path.basename(sys.argv[0])
    with open(os.environ["FAKE_SSH_LOG"], "a") as f:
        f.write(json.dumps([tool] + sys.argv[1:]) + "\\n")
    home = os.environ["FAKE_REMOTE_HOME"]
    args = sys.argv[1:]
    if tool == "scp":
        dest = args[-1]
        srcs = args[args.index("--") + 1:-1]
        rdir = os.path.join(home, dest.split(":", 1)[1])
        for s in srcs:
            shutil.copy(s, rdir)
        sys.exit(0)
    # ssh [options] host command: the command is the last argument, run by a real shell
    env = dict(os.environ, HOME=home)
    r = subprocess.run(["/bin/sh", "-c", args[-1]], cwd=home, env=env)
    sys.exit(r.returncode)
""")


@pytest.fixture(scope="module")
def rpi_bundle(tmp_path_factory):
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from edgecomp import api

    d = tmp_path_factory.mktemp("rpi")
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32), "w")
    g = helper.make_graph([helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", transB=1)], "net",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [w])
    model = d / "net.onnx"
    model.write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())
    out = d / "my bundle;$(touch PWNED_B)"  # a local path with spaces and metacharacters
    api.compile_model(model, "rpi4", out, precision="float32")
    return out


@pytest.fixture
def fake_ssh(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("ssh", "scp"):
        p = bindir / tool
        p.write_text(FAKE.format(python=sys.executable))
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
    home = tmp_path / "remote_home"
    home.mkdir()
    log = tmp_path / "argv.log"
    log.touch()
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}", FAKE_SSH_LOG=str(log),
               FAKE_REMOTE_HOME=str(home))
    return env, log, home, tmp_path


def _calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def _deploy(env, cwd, bundle, host, *extra):
    return subprocess.run([sys.executable, "-m", "edgecomp.cli", "deploy", str(bundle), "--host", host,
                           "--no-venv", "--runs", "3", "--threads", "1", "--json", *extra],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def _pwned(*roots: Path) -> list[str]:
    return [str(p) for r in roots for p in r.rglob("PWNED*")]


def _check_host_key_options(calls):
    assert calls, "ssh/scp were never called"
    for argv in calls:
        joined = " ".join(argv)
        assert "StrictHostKeyChecking=yes" in argv, argv
        assert "BatchMode=yes" in argv, argv
        assert not re.search(r"StrictHostKeyChecking[= ](no|off|accept-new)", joined, re.I), argv
        assert "UserKnownHostsFile=/dev/null" not in joined, argv


# ${IFS} is how an attacker spells a space where spaces are refused
@pytest.mark.parametrize("host", ["pi;touch${IFS}PWNED_HOST", "$(touch${IFS}PWNED_SUB)@pi", "`touch${IFS}PWNED_TICK`pi",
                                  "pi|touch${IFS}PWNED_PIPE", "user@pi&&touch${IFS}PWNED_AND", "pi>PWNED_REDIR"])
def test_host_with_metacharacters_is_one_argv_element(rpi_bundle, fake_ssh, host):
    env, log, home, tmp = fake_ssh
    r = _deploy(env, tmp, rpi_bundle, host)
    calls = _calls(log)
    _check_host_key_options(calls)
    for argv in calls:
        if argv[0] == "ssh":
            assert host in argv[1:-1], argv  # the host, whole, as one element before the remote command
            assert host not in argv[-1], "the host leaked into the remote command"
        else:
            assert argv[-1].startswith(host + ":"), argv
    assert _pwned(tmp, home, rpi_bundle.parent) == []
    # the recorder ran every remote step in a real shell: the deploy went through to the probe
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["deploy"]["host"] == host and result["results"]


def test_bundle_path_with_spaces_and_metacharacters(rpi_bundle, fake_ssh):
    env, log, home, tmp = fake_ssh
    r = _deploy(env, tmp, rpi_bundle, "pi")
    assert r.returncode == 0, r.stderr
    scp = [a for a in _calls(log) if a[0] == "scp"]
    assert scp
    # what is sent is the checked copy of the bundle's listed files, byte for byte (each one argv element)
    listed = set(json.loads((rpi_bundle / "manifest.json").read_text())["files"]) | {"manifest.json"}
    remote = next(home.glob("edgecomp-bundles/*"))
    assert {p.name for p in remote.iterdir()} >= listed
    for name in listed:
        assert (remote / name).read_bytes() == (rpi_bundle / name).read_bytes()
    assert _pwned(tmp, home, rpi_bundle.parent) == []


@pytest.mark.parametrize("host", ["pi; rm -rf /", "-oProxyCommand=touch PWNED_PROXY", "", "pi\nrm -rf /",
                                  "pi\ttab"])
def test_unusable_hosts_are_refused_before_ssh_runs(rpi_bundle, fake_ssh, host):
    env, log, home, tmp = fake_ssh
    r = _deploy(env, tmp, rpi_bundle, host)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.startswith("edgecomp: error:") and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert _calls(log) == []
    assert _pwned(tmp, home) == []


def test_remote_python_name_is_quoted_for_the_remote_shell(rpi_bundle, fake_ssh, monkeypatch):
    env, log, home, tmp = fake_ssh
    for k in ("PATH", "FAKE_SSH_LOG", "FAKE_REMOTE_HOME"):
        monkeypatch.setenv(k, env[k])
    from edgecomp.errors import EdgecompError

    with pytest.raises(EdgecompError, match="not found"):
        deploy_mod.deploy(rpi_bundle, "pi", venv=False, runs=1, threads=[1], python="python3$(touch${IFS}PWNED_PY)",
                          progress=False)
    assert _pwned(tmp, home) == []
    _check_host_key_options(_calls(log))


def test_no_shell_and_no_host_key_bypass_anywhere_in_edgecomp():
    """The source never starts a shell on the host, turns host-key checking off or unpickles input."""
    bad = re.compile(r"shell\s*=\s*True|os\.system\(|os\.popen\(|StrictHostKeyChecking=(no|accept-new)|"
                     r"UserKnownHostsFile=/dev/null|AutoAddPolicy|allow_pickle\s*=\s*True|pickle\.loads?\(|"
                     r"torch\.load\((?![^)]*weights_only\s*=\s*True)")
    # Known and reported (SECURITY.md): the compression search hands the baseline module to its worker
    # processes as a full pickle it wrote itself moments earlier into the output folder.
    known = {("edgecomp/compress/models.py", "base = torch.load(base_path, weights_only=False)")}
    hits = []
    for p in sorted((ROOT / "edgecomp").rglob("*.py")):
        rel = p.relative_to(ROOT).as_posix()
        for i, line in enumerate(p.read_text().splitlines(), 1):
            if bad.search(line) and not line.lstrip().startswith("#") and (rel, line.strip()) not in known:
                hits.append(f"{rel}:{i}: {line.strip()}")
    assert hits == []


# --------------------------------------------------------------------------- issue 20 item 1: results and links
def _copy(bundle: Path, dst: Path) -> Path:
    import shutil
    shutil.copytree(bundle, dst, symlinks=True)
    return dst


def _one_error(r) -> str:
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("edgecomp: error:") and "Traceback" not in r.stderr, r.stderr
    return lines[-1]


@pytest.mark.parametrize("link", ["probe.json", "probe.png"])
def test_deploy_never_writes_through_a_symbolic_link(rpi_bundle, fake_ssh, link):
    """The review's attack: a verified bundle plus probe.json / probe.png links to files outside it."""
    env, log, home, tmp = fake_ssh
    victim = tmp / "victim.txt"
    victim.write_text("precious")
    b = _copy(rpi_bundle, tmp / "b")
    (b / link).unlink(missing_ok=True)  # an earlier deploy of the shared bundle left its result there
    os.symlink(victim, b / link)
    r = subprocess.run([sys.executable, "-m", "edgecomp.cli", "deploy", str(b), "--host", "pi", "--no-venv",
                        "--runs", "2", "--threads", "1"], capture_output=True, text=True, env=env, cwd=tmp,
                       timeout=300)
    msg = _one_error(r)
    assert "symbolic links" in msg and link in msg
    assert victim.read_text() == "precious" and _calls(log) == []  # refused before ssh ran


def test_deploy_refuses_unlisted_files_and_rehashed_scripts(rpi_bundle, fake_ssh):
    import hashlib
    env, log, home, tmp = fake_ssh
    b = _copy(rpi_bundle, tmp / "extra")
    (b / "sitecustomize.py").write_text("import os; os.system('touch PWNED_SITE')\n")
    assert "does not list" in _one_error(_deploy(env, tmp, b, "pi"))
    b = _copy(rpi_bundle, tmp / "rehashed")
    (b / "probe.py").write_text("import os; os.system('touch PWNED_PROBE')\n")
    man = json.loads((b / "manifest.json").read_text())
    man["files"]["probe.py"] = hashlib.sha256((b / "probe.py").read_bytes()).hexdigest()
    (b / "manifest.json").write_text(json.dumps(man))
    msg = _one_error(_deploy(env, tmp, b, "pi"))
    assert "probe.py" in msg and "not what edgecomp writes" in msg
    assert _calls(log) == [] and _pwned(tmp, home) == []


def test_results_are_new_regular_files_even_over_a_link(tmp_path):
    """write_result replaces whatever sits at the name (a link planted after the check) with a new file."""
    from edgecomp.integrity import write_result
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    b = tmp_path / "b"
    b.mkdir()
    os.symlink(victim, b / "probe.json")
    write_result(b, "probe.json", b'{"ok": 1}')
    assert victim.read_text() == "precious"
    assert not (b / "probe.json").is_symlink() and (b / "probe.json").read_bytes() == b'{"ok": 1}'
    assert sorted(p.name for p in b.iterdir()) == ["probe.json"]


def test_deploy_writes_results_and_deploys_again(rpi_bundle, fake_ssh):
    """probe.json and probe.png are the results deploy may leave in a bundle; a second deploy accepts them."""
    env, log, home, tmp = fake_ssh
    b = _copy(rpi_bundle, tmp / "again")
    for _ in range(2):
        r = subprocess.run([sys.executable, "-m", "edgecomp.cli", "deploy", str(b), "--host", "pi", "--no-venv",
                            "--runs", "2", "--threads", "1", "--remote-dir", "elsewhere/bundles"],
                           capture_output=True, text=True, env=env, cwd=tmp, timeout=300)
        assert r.returncode == 0, r.stderr
    assert (b / "probe.json").is_file() and not (b / "probe.json").is_symlink()
    assert list(home.glob("elsewhere/bundles/*/probe.json")) and not (home / "edgecomp-bundles").exists()
    assert re.search(r"device: \S+, Python \d+\.\d+\.\d+\n", r.stderr), r.stderr  # not "x86_64 3 11 7"


def test_unknown_device_state_is_left_out_of_the_table():
    from edgecomp.backends.rpi import PROBE_SCHEMA, render_probe_table
    res = {"schema": PROBE_SCHEMA, "model": "m\x1b]52;c;cHduZWQ=\x07", "results": [
        {"threads": 1, "p50_ms": 1.0, "p90_ms": 1.0, "p99_ms": 1.0, "mean_ms": 1.0, "min_ms": 1.0}],
        "system": {"before": {"governor": None, "freq_mhz": None, "temp_c": 48.2}, "after": {}}}
    text = render_probe_table(res)
    assert "None" not in text and "before: 48.2 C" in text and "after" not in text
    assert "\x1b" not in text and "\x07" not in text and "\\x1b]52" in text
