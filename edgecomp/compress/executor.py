"""Running the trials of a search: worker processes, in-process, or on Ray; progress with an ETA.

``local`` (the default) starts each trial as ``python -m edgecomp.compress.worker JOB.json``, at
most ``workers`` at a time.  Plain subprocesses rather than ``multiprocessing``: the user's
``__main__`` is never re-imported, so a script without an ``if __name__ == "__main__":`` guard,
a notebook or code read from standard input behaves like any other caller.  When worker processes
cannot start at all, or the model cannot be handed to them (its class lives in ``__main__``), the
trials run in the calling process and the search says so.  A failed trial is reported with its
label and the others go on; when no trial finishes, :func:`run_trials` raises (never an empty
result without an error).
"""
from __future__ import annotations

import concurrent.futures as cf
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from ..errors import EdgecompError, ToolError

__all__ = ["run_trials", "Progress", "fmt_seconds"]


def fmt_seconds(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class Progress:
    """One line per finished trial: what it scored and measured, elapsed time and an ETA (the mean
    wall time per finished trial so far times the trials left)."""

    def __init__(self, total: int | None, verbose: bool, describe: Callable[[dict], str]):
        self.total, self.verbose, self.describe = total, verbose, describe
        self.t0 = time.time()
        self.done = 0

    def line(self, text: str) -> str:
        self.done += 1
        el = time.time() - self.t0
        left = self.total - self.done if self.total is not None else 0
        eta = f", ETA {fmt_seconds(el / self.done * left)}" if left > 0 else ""
        count = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
        msg = f"[compress] {count} {text} (elapsed {fmt_seconds(el)}{eta})"
        if self.verbose:
            print(msg, file=sys.stderr, flush=True)
        return msg

    def row(self, row: dict) -> str:
        return self.line(self.describe(row))

    def failed(self, lab: str, why: str) -> str:
        return self.line(f"{lab} failed: {why}")


def _package_root() -> str:
    return str(Path(__file__).resolve().parents[2])


def _run_subprocess(spec: dict, job: dict, procs: dict, lock: threading.Lock) -> dict:
    d = Path(job["dir"])
    d.mkdir(parents=True, exist_ok=True)
    job_file = d / "job.json"
    job_file.write_text(json.dumps({"spec": spec, "job": job}, default=str) + "\n")
    res_file = d / "result.json"
    if res_file.exists():
        res_file.unlink()
    env = dict(os.environ)
    env["PYTHONPATH"] = _package_root() + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_NUM_THREADS", "1")
    with open(d / "worker.log", "w") as log:
        p = subprocess.Popen([sys.executable, "-m", "edgecomp.compress.worker", str(job_file)], stdout=log,
                             stderr=subprocess.STDOUT, env=env, start_new_session=True)
        with lock:
            procs[id(p)] = p
        try:
            rc = p.wait()
        finally:
            with lock:
                procs.pop(id(p), None)
    if res_file.is_file():
        return json.loads(res_file.read_text())
    tail = (d / "worker.log").read_text(errors="replace").strip().splitlines()[-3:]
    return {"error": f"the worker process exited with code {rc} without a result" + (
        f" ({' / '.join(tail)})" if tail else ""), "kind": "crash"}


def run_trials(items: list[tuple[dict, dict]], record: Callable[[dict], None], *, executor: str = "local",
               workers: int = 2, progress: Progress, inline_reason: str = "",
               trial_fn: Callable[[dict, dict], dict] | None = None) -> list[str]:
    """Run every (spec, job) in ``items``; ``record(row)`` each finished one as it comes.  Returns
    the failure messages.  ``inline_reason``: why the trials must run in this process (printed);
    ``trial_fn``: what runs a trial in this process (default :func:`edgecomp.compress.trial.run_trial`)."""
    from .candidates import label
    failures: list[str] = []

    def fail(spec, why):
        failures.append(f"{label(spec)}: {why}")
        progress.failed(label(spec), why)

    if trial_fn is None:
        from .trial import run_trial as trial_fn

    def inline():
        for spec, job in items:
            try:
                row = trial_fn(spec, job)
            except EdgecompError as e:
                fail(spec, e.message())
                continue
            except KeyboardInterrupt:
                raise
            except Exception as e:  # a crashing trial must not lose the others
                fail(spec, f"{type(e).__name__}: {e}")
                if os.environ.get("EDGECOMP_DEBUG"):
                    import traceback
                    traceback.print_exc()
                continue
            record(row)
            progress.row(row)

    if executor == "inline" or (executor == "local" and (workers == 1 or inline_reason)):
        if inline_reason:
            print(f"[compress] trials run in this process: {inline_reason}", file=sys.stderr, flush=True)
        inline()
        return failures
    if executor == "ray":
        _run_ray(items, record, workers, progress, fail)
        return failures
    procs: dict = {}
    lock = threading.Lock()
    pool = cf.ThreadPoolExecutor(max_workers=workers)
    futs = {pool.submit(_run_subprocess, spec, job, procs, lock): i for i, (spec, job) in enumerate(items)}
    finished: set[int] = set()
    cannot_start = None
    try:
        for f in cf.as_completed(futs):
            i = futs[f]
            spec = items[i][0]
            try:
                res = f.result()
            except OSError as e:  # the interpreter could not be started
                cannot_start = e
                continue
            finished.add(i)
            if "row" in res:
                record(res["row"])
                progress.row(res["row"])
            else:
                fail(spec, res.get("error", "unknown error"))
    except KeyboardInterrupt:
        with lock:
            for p in list(procs.values()):
                p.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    if cannot_start is not None:  # run what the workers could not, here
        print(f"[compress] worker processes cannot start ({cannot_start}); running "
              f"{len(items) - len(finished)} trial(s) in this process", file=sys.stderr, flush=True)
        rest = [it for i, it in enumerate(items) if i not in finished]
        failures += run_trials(rest, record, executor="inline", workers=1, progress=progress, trial_fn=trial_fn)
    return failures


def _run_ray(items, record, workers, progress, fail):
    try:
        import ray
    except ImportError:
        raise ToolError("the ray executor needs the 'ray' package", "compress --executor ray",
                        "pip install ray, or use --executor local") from None
    from .trial import run_trial
    started = False
    if not ray.is_initialized():
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        started = True
    try:
        remote = ray.remote(num_cpus=1)(run_trial)
        refs = {remote.remote(spec, job): spec for spec, job in items}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                row = ray.get(done[0])
            except Exception as e:
                fail(refs[done[0]], str(e).splitlines()[0] if str(e) else type(e).__name__)
                continue
            record(row)
            progress.row(row)
    finally:
        if started:
            ray.shutdown()
