"""edgecomp deploy against a real OpenSSH server on 127.0.0.1 (throw-away keys, no mocks)."""
from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgecomp.backends.rpi import render_probe_table, write_rpi_bundle
from edgecomp.deploy import deploy
from edgecomp.errors import ModelError, ToolError

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path, comment: str) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)
    return path


class SshServer:
    """``/usr/sbin/sshd -D -e -f <tmp>/sshd_config`` on 127.0.0.1, two free ports, throw-away keys.

    ``port``: sessions get PATH=<dir of this Python>:..., so the remote ``python3`` is the one
    running the tests (it has onnxruntime); ``port_nopython``: PATH=/nonexistent, a device without
    python3 (``Match LocalPort`` + ``SetEnv``).  Root logs in with its key only
    (``PermitRootLogin prohibit-password``); ``StrictModes no`` because the key files live in a temp dir.
    """

    def __init__(self, tmp: Path):
        self.tmp = Path(tmp)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.user = getpass.getuser()
        self.host_key = keygen(self.tmp / "ssh_host_ed25519_key", "edgecomp-test-host")
        self.user_key = keygen(self.tmp / "id_ed25519", "edgecomp-test-user")
        self.other_key = keygen(self.tmp / "id_other", "edgecomp-test-stranger")
        shutil.copyfile(self.user_key.with_suffix(".pub"), self.tmp / "authorized_keys")
        self.port, self.port_nopython = free_port(), free_port()
        pydir = os.path.dirname(sys.executable)
        cfg = self.tmp / "sshd_config"
        cfg.write_text(f"""
Port {self.port}
Port {self.port_nopython}
ListenAddress 127.0.0.1
HostKey {self.host_key}
PidFile {self.tmp / 'sshd.pid'}
AuthorizedKeysFile {self.tmp / 'authorized_keys'}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
UsePAM no
Subsystem sftp /usr/lib/openssh/sftp-server
SetEnv PATH={pydir}:/usr/local/bin:/usr/bin:/bin
Match LocalPort {self.port_nopython}
    SetEnv PATH=/nonexistent
""")
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation folder
        self.log = open(self.tmp / "sshd.log", "w")
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(cfg)], stdout=self.log, stderr=subprocess.STDOUT)
        self._wait()
        host_pub = self.host_key.with_suffix(".pub").read_text().split()
        self.known_hosts = self.tmp / "known_hosts"
        self.known_hosts.write_text("".join(f"[127.0.0.1]:{p} {host_pub[0]} {host_pub[1]}\n"
                                            for p in (self.port, self.port_nopython)))
        self.empty_known_hosts = self.tmp / "known_hosts.empty"
        self.empty_known_hosts.write_text("")

    @property
    def target(self) -> str:
        return f"{self.user}@127.0.0.1"

    def _wait(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("sshd exited: " + (self.tmp / "sshd.log").read_text())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd did not start: " + (self.tmp / "sshd.log").read_text())

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


# ---------------------------------------------------------------------------- the tests

pytestmark = pytest.mark.skipif(not os.path.exists(SSHD) or shutil.which("ssh") is None,
                                reason="needs OpenSSH (openssh-server, openssh-client)")


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = SshServer(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    d = tmp_path_factory.mktemp("rpi-deploy")
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 16)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    g = helper.make_graph([helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)], "tiny",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w, b])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, d / "tiny.onnx")
    write_rpi_bundle(d / "tiny.onnx", "rpi4", d / "bundle", precision="float32")
    return d / "bundle"


def _deploy(sshd, bundle, **kw):
    args = dict(port=sshd.port, identity=sshd.user_key, known_hosts=sshd.known_hosts, venv=False,
                runs=5, threads=(1, 2), progress=False, remote_root=str(sshd.tmp / "remote"))
    args.update(kw)
    return deploy(bundle, sshd.target, **args)


def test_deploy_runs_the_probe_over_real_ssh_and_brings_the_json_back(sshd, bundle):
    result = _deploy(sshd, bundle)
    # the copy on the "device" is the bundle, byte for byte
    remote = Path(result["deploy"]["remote_dir"])
    assert remote.parent == sshd.tmp / "remote" and remote.name.startswith("tiny-")
    for name in ("model.onnx", "run.py", "probe.py", "requirements.txt", "README.md", "manifest.json"):
        assert (remote / name).read_bytes() == (bundle / name).read_bytes()
    assert result["schema"] == "edgecomp.rpi.probe/1"
    assert result["model"] == "tiny" and result["target"] == "rpi4" and result["runtime"] == "onnxruntime"
    assert [r["threads"] for r in result["results"]] == [1, 2]
    for r in result["results"]:
        assert r["runs"] == 5
        assert 0 < r["min_ms"] <= r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] <= r["max_ms"]
    assert set(result["system"]) == {"before", "after"}
    assert result["deploy"]["host"] == sshd.target
    table = render_probe_table(result)
    assert "| 1 |" in table and "| 2 |" in table and "p50 ms" in table


def test_default_remote_dir_is_in_the_home_folder(sshd, bundle):
    result = _deploy(sshd, bundle, remote_root="edgecomp-bundles", threads=(1,), runs=2)
    rdir = result["deploy"]["remote_dir"]
    assert rdir.startswith("edgecomp-bundles/tiny-")
    assert (Path.home() / rdir / "probe.json").is_file()
    shutil.rmtree(Path.home() / rdir)


def test_wrong_key_is_refused_with_a_clear_message(sshd, bundle):
    with pytest.raises(ToolError) as e:
        _deploy(sshd, bundle, identity=sshd.other_key)
    assert "refused the key" in str(e.value) and "--identity" in str(e.value)


def test_unknown_host_key_is_not_accepted(sshd, bundle):
    with pytest.raises(ToolError) as e:
        _deploy(sshd, bundle, known_hosts=sshd.empty_known_hosts)
    assert "host key" in str(e.value) and "known_hosts" in str(e.value)


def test_closed_port_says_could_not_connect(sshd, bundle):
    with pytest.raises(ToolError) as e:
        _deploy(sshd, bundle, port=free_port())
    assert "could not connect" in str(e.value) and "Connection refused" in str(e.value)


def test_device_without_python3(sshd, bundle):
    with pytest.raises(ToolError) as e:  # the sessions on this port have PATH=/nonexistent
        _deploy(sshd, bundle, port=sshd.port_nopython)
    assert "python3 was not found on the device" in str(e.value)
    with pytest.raises(ToolError) as e:
        _deploy(sshd, bundle, python="/nonexistent/python3.11")
    assert "/nonexistent/python3.11 was not found" in str(e.value)


def test_device_python_without_the_runtime_and_no_venv(sshd, bundle):
    bare = next((p for p in ("/usr/bin/python3", "/bin/python3") if os.path.exists(p)), None)
    if bare is None or subprocess.run([bare, "-c", "import onnxruntime"], capture_output=True).returncode == 0:
        pytest.skip("needs a python3 without onnxruntime (Debian's /usr/bin/python3)")
    with pytest.raises(ToolError) as e:
        _deploy(sshd, bundle, python=bare)
    msg = str(e.value)
    assert "the probe failed on the device" in msg and "Python lacks '" in msg and "--no-venv" in msg


def test_tampered_bundle_is_refused_before_connecting(sshd, bundle, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    (copy / "run.py").write_text((copy / "run.py").read_text() + "\nimport os; os.system('true')\n")
    with pytest.raises(ModelError) as e:
        _deploy(sshd, copy, port=free_port())  # nothing listens: the check comes first
    assert "differ from the manifest: run.py" in str(e.value)
    (copy / "manifest.json").unlink()
    with pytest.raises(ModelError, match="not an edgecomp bundle"):
        _deploy(sshd, copy)


def test_cli_deploy_prints_the_table_and_saves_json(sshd, bundle, tmp_path, capsys):
    from edgecomp.cli import main
    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    rc = main(["deploy", str(copy), "--host", sshd.target, "--port", str(sshd.port), "--identity",
               str(sshd.user_key), "--known-hosts", str(sshd.known_hosts), "--no-venv", "--runs", "3",
               "--threads", "1"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "| threads | p50 ms |" in out
    saved = json.loads((copy / "probe.json").read_text())
    assert saved["results"][0]["runs"] == 3
    rc = main(["deploy", str(copy), "--host", sshd.target, "--port", str(sshd.port), "--identity",
               str(sshd.other_key), "--known-hosts", str(sshd.known_hosts), "--no-venv"])
    err = capsys.readouterr().err
    assert rc == 1 and "refused the key" in err and "Traceback" not in err


@pytest.mark.slow
def test_deploy_with_a_venv_installs_the_pinned_runtime(sshd, bundle):
    """The default path: python3 -m venv + pip install -r requirements.txt on the device (real PyPI)."""
    from edgecomp.backends.rpi import ORT_PIN
    root = sshd.tmp / "remote-venv"
    result = _deploy(sshd, bundle, venv=True, remote_root=str(root), threads=(1,), runs=3)
    assert result["runtime_version"] == ORT_PIN.split("==")[1]  # not this process's onnxruntime
    venvs = list(root.glob(".venv-*"))
    assert len(venvs) == 1 and (venvs[0] / ".edgecomp-ok").is_file()
    stamp = (venvs[0] / ".edgecomp-ok").stat().st_mtime_ns
    _deploy(sshd, bundle, venv=True, remote_root=str(root), threads=(1,), runs=2)  # reuses the venv
    assert (venvs[0] / ".edgecomp-ok").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("host", ["-oProxyCommand=touch /tmp/x", "", "pi/x", "pi\nrm", "user@"])
def test_hosts_ssh_would_misread_are_refused(bundle, host):
    from edgecomp.errors import EdgecompError
    with pytest.raises(EdgecompError, match="bad host"):
        deploy(bundle, host, venv=False, progress=False)
