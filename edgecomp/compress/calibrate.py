"""Calibration runs the model: do it in a child process with time and memory limits.

ONNX Runtime's ``quantize_static`` executes the float model on every calibration
sample, and the model file is untrusted.  edgecomp first refuses everything its
checks can see (structure, ops, attribute bounds, tensor sizes: the caller runs
them), then runs ``quantize_static`` in a forked child process (``multiprocessing``
"fork": it starts in milliseconds and, unlike "spawn"/"forkserver", never re-runs
the user's main script) with:

* ``RLIMIT_AS`` at what the fork inherited plus ``EDGECOMP_CALIB_MEMORY_MB`` (default
  the smaller of 8 GiB and half the machine's memory): an allocation beyond it fails
  inside the child;
* a stall limit (``EDGECOMP_CALIB_STALL``, default 120 s) while the model is
  prepared and the samples are run: a sample that takes longer (a ``Loop`` with a
  trip count of 10^15) stops the child;
* an overall limit (``EDGECOMP_CALIB_TIMEOUT``, default 1800 s).

Exceeding one is a :class:`~edgecomp.errors.ModelError` (exit 2) that says which
limit and how to raise it; an ONNX Runtime error inside the child is one line, not
its traceback.
"""
from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import sys
import time
from pathlib import Path

from ..errors import EdgecompError, ModelError, ToolError, UnsupportedError

_ctx = None


def _env_float(name: str, default: float) -> float:
    try:
        v = float(os.environ.get(name, default))
        return v if v > 0 else default
    except ValueError:
        return default


def limits() -> dict[str, float]:
    """The limits in force: memory bytes, stall seconds, total seconds."""
    try:
        phys = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        phys = 16 << 30
    default_mb = min(8192, phys // 2 // (1 << 20))
    return {"memory_bytes": int(_env_float("EDGECOMP_CALIB_MEMORY_MB", default_mb) * (1 << 20)),
            "stall_seconds": _env_float("EDGECOMP_CALIB_STALL", 120.0),
            "total_seconds": _env_float("EDGECOMP_CALIB_TIMEOUT", 1800.0)}


def _context():
    global _ctx
    if _ctx is None:
        _ctx = multiprocessing.get_context("fork")
    return _ctx


def _child(job: dict, counter, conn, work) -> None:
    """In the child: limits first, then the calibration; the outcome goes back over ``conn``."""
    try:
        # The budget is on top of what the fork inherited (a Ray worker maps gigabytes it never touches).
        lim = job["memory_bytes"] + _address_space_bytes()
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:  # never above a limit this process already runs under
            lim = min(lim, hard)
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
        _die_with_parent(job["parent_pid"])
        # a backstop if the parent's timers cannot act: CPU seconds for the overall limit on every core
        cpu = int(job["total_seconds"] * (os.cpu_count() or 1)) + 60
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
        # ONNX Runtime's own chatter (C++ warnings, printed tracebacks) goes to a log file; only
        # the progress line reaches the user's terminal, and errors come back as one line.
        progress = os.fdopen(os.dup(2), "w", buffering=1)
        log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(log, 1)
        os.dup2(log, 2)
        try:
            import onnxruntime
            onnxruntime.set_default_logger_severity(3)
        except Exception:  # noqa: BLE001 - logging only
            pass
        # ORT's own temporary folders go into the parent's private folder (removed even if we are killed)
        import tempfile
        tempfile.tempdir = os.environ["TMPDIR"] = str(Path(job["out"]).parent)
        work(job, counter, progress)
        conn.send(("ok", None, None, None))
    except EdgecompError as e:
        conn.send((type(e).__name__, e.what, e.where, e.fix))
    except MemoryError:
        conn.send(("memory", "MemoryError", None, None))
    except BaseException as e:  # ONNX Runtime's errors: one line back to the parent
        text = str(e).strip().splitlines()
        conn.send(("error", f"{type(e).__name__}: {text[0][:300] if text else ''}", None, None))
    finally:
        conn.close()


def _die_with_parent(parent_pid: int) -> None:
    """The parent enforces the time limits: if it is killed (SIGKILL), the child must not run on."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _address_space_bytes() -> int:
    """This process's mapped address space (VmSize), 0 where /proc does not say."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


_MEMORY_WORDS = ("bad_alloc", "failed to allocate", "memoryerror", "cannot allocate", "out of memory",
                 "std::length_error")


def run_calibration(job: dict, where: str, work) -> None:
    """Run ``work(job, counter, progress_stream)`` (the quantizer's ``quantize_here``) in a limited child;
    raise a clear EdgecompError when it fails."""
    lim = limits()
    job = {**job, "memory_bytes": lim["memory_bytes"], "total_seconds": lim["total_seconds"],
           "parent_pid": os.getpid()}
    ctx = _context()
    counter = ctx.Value("q", 0, lock=False)
    recv, send = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child, args=(job, counter, send, work), daemon=True)
    n_samples = int(job.get("n_samples", 0))
    start = last_change = time.monotonic()
    last = 0
    mib = lim["memory_bytes"] // (1 << 20)
    try:
        p.start()
        send.close()
        while True:
            p.join(0.2)
            if p.exitcode is not None:
                break
            now = time.monotonic()
            seen = counter.value
            if seen != last:
                last, last_change = seen, now
            stalled = seen <= n_samples and now - last_change > lim["stall_seconds"]
            if stalled or now - start > lim["total_seconds"]:
                p.kill()
                p.join()
                if stalled:
                    step = "preparing the model" if seen == 0 else f"running calibration sample {seen} of {n_samples}"
                    raise ModelError(f"calibration stopped: ONNX Runtime spent more than {lim['stall_seconds']:g} s "
                                     f"{step}", where=where,
                                     fix="The model may loop for ever (a Loop with a huge trip count) or be far too "
                                         "big; if it is genuinely this slow, raise EDGECOMP_CALIB_STALL (seconds)")
                raise ModelError(f"calibration stopped after {lim['total_seconds']:g} s", where=where,
                                 fix="Use fewer calibration samples, or raise EDGECOMP_CALIB_TIMEOUT (seconds)")
        msg = recv.recv() if recv.poll() else None
    except BaseException:
        if p.is_alive():
            p.kill()
            p.join()
        raise
    finally:
        recv.close()
        if job.get("progress") and counter.value > 0:
            print(file=sys.stderr, flush=True)  # end the child's "\rcalibrating" line
    if msg is None or msg[0] in ("memory",) or (msg[0] == "error" and any(w in msg[1].lower()
                                                                            for w in _MEMORY_WORDS)):
        if msg is None and p.exitcode is not None and p.exitcode > 0:
            raise ToolError(f"the calibration process exited with status {p.exitcode}", where,
                            "rerun with EDGECOMP_DEBUG=1; if it persists, please report it")
        sig = -p.exitcode if p.exitcode is not None and p.exitcode < 0 else None
        what = (f"calibration stopped: ONNX Runtime needed more than the {mib:,} MiB of memory allowed"
                + (f" (signal {sig})" if sig and msg is None else ""))
        raise ModelError(what, where=where,
                         fix="The model's tensors are far too large for a small device (check its pads, strides "
                             "and shapes); if it is genuinely this big, raise EDGECOMP_CALIB_MEMORY_MB")
    kind, what, w, fix = msg
    if kind == "ok":
        return
    if kind == "error":
        raise UnsupportedError(f"ONNX Runtime could not calibrate the model ({what})", where=where,
                               fix="Check the model with onnxruntime, or compile with --precision float32")
    cls = {"ModelError": ModelError, "UnsupportedError": UnsupportedError, "ToolError": ToolError}.get(
        kind, EdgecompError)
    raise cls(what, w, fix)


def job_paths(work: Path) -> dict[str, str]:
    return {"model": str(work / "model.onnx"), "samples": str(work / "samples.npy"), "out": str(work / "out.onnx"),
            "log": str(work / "ort.log")}
