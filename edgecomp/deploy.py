"""Deploy a Raspberry Pi bundle over ssh: verify, copy, (venv + pip), probe, fetch the JSON.

Every remote step is an ``ssh``/``scp`` call with an argument list (no local shell).
The one string a remote shell sees is built from :func:`shlex.quote`-d parts.  Host-key
checking stays on (``StrictHostKeyChecking=yes``) and ``BatchMode=yes`` means ssh never
prompts: an unknown host key or a refused key is an error with a clear fix.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

from .errors import EdgecompError, ModelError, ToolError
from .integrity import MANIFEST

REMOTE_ROOT = "edgecomp-bundles"  # relative to the remote user's home
CONNECT_TIMEOUT = 10


def _ssh_options(port: int, identity: str | Path | None, known_hosts: str | Path | None) -> list[str]:
    opts = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
            "-o", "LogLevel=ERROR"]
    if identity is not None:
        opts += ["-i", str(identity), "-o", "IdentitiesOnly=yes"]
    if known_hosts is not None:
        opts += ["-o", f"UserKnownHostsFile={known_hosts}"]
    return opts


class Remote:
    """ssh/scp to one host with fixed options; every call is an argument list."""

    def __init__(self, host: str, port: int = 22, identity: str | Path | None = None,
                 known_hosts: str | Path | None = None):
        # The host is always one argv element (never seen by a shell), so only what ssh/scp
        # themselves would misread is refused: an option ("-o..."), control characters, and
        # "/" (scp takes "a/b:c" for a local path).
        if (not host or host.startswith("-") or "/" in host or host.endswith("@") or host.startswith("@")
                or any(ord(c) < 32 or ord(c) == 127 for c in host)):
            raise EdgecompError(f"bad host {host!r}", fix="Give the host as user@host or host")
        for tool in ("ssh", "scp"):
            if shutil.which(tool) is None:
                raise ToolError(f"{tool} is not installed", fix="Install OpenSSH's client (apt-get install openssh-client)")
        if identity is not None and not Path(identity).is_file():
            raise EdgecompError(f"ssh key {identity} does not exist", fix="Pass --identity PATH_TO_PRIVATE_KEY")
        if known_hosts is not None and not Path(known_hosts).is_file():
            raise EdgecompError(f"known_hosts file {known_hosts} does not exist",
                                fix="Pass an existing file, or leave --known-hosts out to use ~/.ssh/known_hosts")
        self.host, self.port = host, int(port)
        self.opts = _ssh_options(port, identity, known_hosts)

    def ssh(self, remote_cmd: str, *, timeout: float | None = 600, check: bool = True,
            step: str = "ssh") -> subprocess.CompletedProcess:
        argv = ["ssh", "-p", str(self.port), *self.opts, self.host, remote_cmd]
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise ToolError(f"{step} on {self.host} did not finish within {timeout:.0f} s",
                            fix="Check the device (is it busy or throttling?) and try again") from None
        if r.returncode == 255:
            raise self._ssh_error(r.stderr)
        if check and r.returncode != 0:
            raise ToolError(f"{step} failed on {self.host} (exit {r.returncode}): {_tail(r.stderr or r.stdout)}",
                            fix="Run the step by hand on the device to see the whole error")
        return r

    def scp(self, sources: Sequence[str], dest: str, *, step: str = "copy", timeout: float = 600) -> None:
        argv = ["scp", "-q", "-P", str(self.port), *self.opts, "--", *sources, dest]
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise ToolError(f"{step} to/from {self.host} did not finish within {timeout:.0f} s",
                            fix="Check the network link") from None
        if r.returncode != 0:
            err = self._ssh_error(r.stderr)
            if "could not connect" in err.what or "host key" in err.what or "refused the key" in err.what:
                raise err
            raise ToolError(f"{step} failed: {_tail(r.stderr)}", where=self.host,
                            fix="Check the free space and permissions on the device")

    def _ssh_error(self, stderr: str) -> ToolError:
        e = stderr or ""
        where = f"{self.host}:{self.port}"
        if re.search(r"Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|No .* host key is known",
                     e):
            return ToolError("the device's ssh host key is not in known_hosts (or has changed)", where=where,
                             fix="Check the key and add it once, e.g. `ssh-keyscan -p PORT HOST >> ~/.ssh/known_hosts`"
                                 " (or pass --known-hosts FILE); edgecomp never turns host-key checking off")
        if re.search(r"Permission denied|Too many authentication failures|no mutual signature", e):
            return ToolError("the device refused the key (permission denied)", where=where,
                             fix="Pass the right key with --identity, and put its .pub in the device's "
                                 "~/.ssh/authorized_keys (ssh-copy-id)")
        if re.search(r"Connection refused|timed out|No route to host|Could not resolve hostname|"
                     r"Network is unreachable|Connection closed|Connection reset|Name or service not known", e):
            return ToolError(f"could not connect to the device: {_tail(e)}", where=where,
                             fix="Check that the Pi is on, on the network, and runs sshd on that port (--port)")
        return ToolError(f"ssh failed: {_tail(e) or 'no message'}", where=where,
                         fix="Try `ssh` to the device by hand to see what is wrong")


def _device_line(text: str) -> str:
    """'aarch64 3 11 2' (platform.machine and Python's version, as printed on the device) -> a line
    saying what is known: 'aarch64, Python 3.11.2'; unknown parts are left out."""
    from .sanitize import terminal_text

    parts = (text or "").split()
    machine = terminal_text(parts[0], limit=40) if parts else ""
    version = ".".join(p for p in parts[1:4] if p.isdigit())
    return ", ".join(x for x in (machine, f"Python {version}" if version else "") if x) or "(no details)"


def _tail(text: str, n: int = 3) -> str:
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    return " / ".join(lines[-n:])


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).strip("._-") or "bundle"


def check_bundle(bundle_dir: str | Path, stage_to: str | Path | None = None) -> dict:
    """The bundle's manifest, after checking it (:mod:`edgecomp.integrity`): every file against its
    sha256, no file the manifest does not list, no symbolic link, and the runner, probe and
    requirements edgecomp writes (a re-hashed manifest cannot bring other scripts to the device).
    With ``stage_to``, the checked files are copied there (what is sent is what was checked)."""
    from . import workdirs
    from .integrity import check_folder, read_checked_manifest, stage

    bundle_dir = Path(bundle_dir)
    manifest = read_checked_manifest(bundle_dir)
    if manifest.get("kind") != "rpi" or not isinstance(manifest.get("runtime"), dict):
        raise ModelError(f"{bundle_dir} is not a Raspberry Pi bundle (target {str(manifest.get('target'))[:40]!r})",
                         fix="Compile with --target rpi4 or rpi5; run Cortex-M bundles with `edgecomp run`")
    check_folder(bundle_dir, manifest)
    with contextlib.ExitStack() as stack:
        dest = Path(stage_to) if stage_to is not None else stack.enter_context(workdirs.work_dir("deploy"))
        stage(bundle_dir, dest, manifest)
        _check_own_scripts(dest, manifest, bundle_dir)
    return manifest


def _check_own_scripts(src: Path, manifest: dict, where: Path) -> None:
    from .backends.rpi import LITERT_PIN, NUMPY_PIN, ORT_PIN, TEMPLATE_FILES, _render
    from .resources import templates_dir

    files = manifest["files"]
    known = set(TEMPLATE_FILES) | {"requirements.txt", "README.md", "model.onnx", "model.tflite"}
    odd = [f for f in files if f not in known]
    for f in TEMPLATE_FILES:
        if f not in files or (src / f).read_bytes() != (templates_dir() / "rpi" / f).read_bytes():
            odd.append(f)
    reqs = {_render("requirements.txt.j2", requirements=r).encode() for r in ([NUMPY_PIN, ORT_PIN],
                                                                               [NUMPY_PIN, LITERT_PIN])}
    if "requirements.txt" not in files or (src / "requirements.txt").read_bytes() not in reqs:
        odd.append("requirements.txt")
    model_file = manifest["runtime"].get("model_file")
    if model_file not in ("model.onnx", "model.tflite") or model_file not in files:
        odd.append(f"runtime.model_file {str(model_file)[:40]!r}")
    if odd:
        raise ModelError(f"the bundle's {', '.join(sorted(set(odd))[:6])} are not what edgecomp writes for a "
                         "Raspberry Pi bundle", where=str(where),
                         fix="Compile the bundle again; edgecomp sends only its own runner, probe and pinned "
                             "requirements to a device")


def deploy(bundle_dir: str | Path, host: str, *, port: int = 22, identity: str | Path | None = None,
           venv: bool = True, runs: int = 100, threads: Sequence[int] = (1, 2, 4),
           known_hosts: str | Path | None = None, python: str = "python3", warmup: int = 10,
           profile: bool = False, remote_root: str = REMOTE_ROOT, progress: bool = True,
           timeout: float = 1800) -> dict[str, Any]:
    """Copy a Raspberry Pi bundle to ``host`` over ssh, run its probe there, return the probe JSON.

    The bundle goes to ``<remote_root>/<name>-<hash>/`` and the venv (when ``venv``) to
    ``<remote_root>/.venv-<hash of requirements.txt>/``, reused while requirements.txt is the same;
    a relative ``remote_root`` is under the remote user's home.
    """
    from . import workdirs

    bundle_dir = Path(bundle_dir)
    with workdirs.work_dir("deploy") as staged:
        manifest = check_bundle(bundle_dir, stage_to=staged)
        return _deploy_checked(staged, manifest, host, port=port, identity=identity, venv=venv, runs=runs,
                               threads=threads, known_hosts=known_hosts, python=python, warmup=warmup,
                               profile=profile, remote_root=remote_root, progress=progress, timeout=timeout)


def _deploy_checked(bundle_dir: Path, manifest: dict, host: str, *, port: int, identity, venv: bool, runs: int,
                    threads: Sequence[int], known_hosts, python: str, warmup: int, profile: bool,
                    remote_root: str, progress: bool, timeout: float) -> dict[str, Any]:
    """deploy() on the checked copy ``bundle_dir`` of a bundle."""
    threads = [int(t) for t in threads]
    if runs < 1 or not threads or min(threads) < 1:
        raise EdgecompError("runs and thread counts must be at least 1", fix="e.g. --runs 100 --threads 1,2,4")
    if not python or python.startswith("-") or any(ord(c) < 32 or ord(c) == 127 for c in python):
        raise EdgecompError(f"bad remote python {python!r}", fix="Give a path or command name, e.g. python3")
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None)
    remote = Remote(host, port, identity, known_hosts)
    digest = hashlib.sha256(json.dumps(manifest["files"], sort_keys=True).encode()).hexdigest()[:12]
    if (not remote_root or remote_root.startswith("-") or ".." in remote_root.split("/")
            or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in remote_root)):
        raise EdgecompError(f"bad remote folder {remote_root!r}",
                            fix="Give a plain path without spaces, control characters or '..' (--remote-dir)")
    remote_root = remote_root.rstrip("/") or "/"
    rdir = f"{remote_root}/{_safe(manifest.get('name', 'model'))}-{digest}"
    q = shlex.quote
    rq = q(rdir)

    def absq(path: str) -> str:  # a remote path that still works after `cd`
        return q(path) if path.startswith("/") else '"$HOME"/' + q(path)

    # 1. reach the device and find its python
    say(f"connecting to {host}:{port} ...")
    r = remote.ssh(f"command -v {q(python)} >/dev/null 2>&1 || exit 127; "
                   f"{q(python)} -c 'import platform, sys; print(platform.machine(), *sys.version_info[:3])'",
                   check=False, step="checking python", timeout=120)
    if r.returncode == 127:
        raise ToolError(f"{python} was not found on the device", where=host,
                        fix="Install Python 3 on the Pi (sudo apt install python3 python3-venv) "
                            "or pass the interpreter's path with --python")
    if r.returncode != 0:
        raise ToolError(f"{python} does not run on the device: {_tail(r.stderr)}", where=host,
                        fix="Check the Python installation on the Pi")
    say(f"device: {_device_line(r.stdout)}")

    # 2. copy the files the manifest lists (and the manifest)
    names = sorted(manifest["files"]) + [MANIFEST]
    remote.ssh(f"mkdir -p {rq}", step="mkdir", timeout=120)
    say(f"copying {len(names)} files to {host}:{rdir}/ ...")
    remote.scp([str(bundle_dir / n) for n in names], f"{host}:{rdir}/", step="copying the bundle")

    # 3. optional venv with the pinned requirements (reused when requirements.txt is unchanged)
    py = python
    if venv:
        req_hash = manifest["files"].get("requirements.txt", "none")[:16]
        vdir = f"{remote_root}/.venv-{req_hash}"
        vq = q(vdir)
        say(f"preparing the venv {vdir} (pip install -r requirements.txt; the first time takes a while) ...")
        r = remote.ssh(f"set -e; test -x {vq}/bin/python && test -f {vq}/.edgecomp-ok && exit 0; "
                       f"rm -rf {vq}; {q(python)} -m venv {vq}; "
                       f"{vq}/bin/python -m pip install --disable-pip-version-check -q -r {rq}/requirements.txt; "
                       f"touch {vq}/.edgecomp-ok", check=False, step="venv + pip install", timeout=timeout)
        if r.returncode != 0:
            hint = ("install python3-venv on the Pi (sudo apt install python3-venv)" if "venv" in r.stderr
                    and "pip" not in r.stderr else "check the Pi's network access to PyPI, or use --no-venv with "
                    "onnxruntime already installed")
            raise ToolError(f"setting up the venv failed: {_tail(r.stderr or r.stdout)}", where=host, fix=hint.capitalize())
        py = f"{vdir}/bin/python"

    # 4. the probe
    args = ["probe.py", "--runs", str(runs), "--warmup", str(warmup), "--threads", ",".join(map(str, threads)),
            "--json", "probe.json"] + (["--profile"] if profile else [])
    say(f"running the probe ({runs} runs x threads {','.join(map(str, threads))}) ...")
    pyq = absq(py) if venv else q(py)
    r = remote.ssh(f"cd {rq} && {pyq} " + " ".join(q(a) for a in args), check=False, step="probe", timeout=timeout)
    if r.returncode != 0:
        missing = re.search(r"No module named '([^']+)'", r.stderr or "")
        fix = (f"The device's Python lacks {missing.group(1)!r}: deploy with a venv (leave out --no-venv) "
               "or pip install -r requirements.txt there" if missing else
               "Run probe.py on the device by hand to see the whole error")
        raise ToolError(f"the probe failed on the device: {_tail(r.stderr or r.stdout)}", where=host, fix=fix)

    # 5. bring the JSON back
    r = remote.ssh(f"cat {rq}/probe.json", step="fetching probe.json", timeout=120)
    from .backends.rpi import read_probe
    result = read_probe(r.stdout, where=f"{host}:{rdir}/probe.json")
    result["deploy"] = {"host": host, "port": port, "remote_dir": rdir, "venv": bool(venv)}
    return result


def deploy_cli(a) -> int:
    """`edgecomp deploy BUNDLE --host user@pi ...` (arguments from edgecomp.cli)."""
    from .backends.rpi import plot_probe, render_probe_table
    try:
        threads = [int(t) for t in str(getattr(a, "threads", "1,2,4")).split(",") if t.strip()]
    except ValueError:
        raise EdgecompError(f"--threads wants numbers like 1,2,4, got {a.threads!r}") from None
    from .integrity import write_result
    from .sanitize import terminal_text

    result = deploy(a.bundle, a.host, port=a.port, identity=getattr(a, "identity", None),
                    venv=not getattr(a, "no_venv", False), runs=a.runs, threads=threads,
                    known_hosts=getattr(a, "known_hosts", None), python=getattr(a, "python", None) or "python3",
                    profile=bool(getattr(a, "profile", False)),
                    remote_root=getattr(a, "remote_dir", None) or REMOTE_ROOT)
    # Results go into the bundle only as new regular files renamed into place (never through a
    # symbolic link); the bundle check above refused links and unlisted files before anything ran.
    out = write_result(Path(a.bundle), "probe.json", (json.dumps(result, indent=2, sort_keys=True) + "\n").encode())
    if getattr(a, "json", False):
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        print(render_probe_table(result))
        png = None
        buf = io.BytesIO()
        if plot_probe(result, buf) is not None:
            png = write_result(Path(a.bundle), "probe.png", buf.getvalue())
        print(terminal_text(f"\nresults: {out}" + (f", chart: {png}" if png else ""), keep_newlines=True))
    return 0
