"""A compression trial in its own Python process: ``python -m edgecomp.compress.worker JOB.json``.

The job file holds ``{"spec": candidate, "job": run_trial's job}``; the result row goes to
``result.json`` beside it, or ``{"error": ..., "kind": ...}`` when the trial fails (exit 2 for a
user error, 1 otherwise).  Trials run as plain subprocesses rather than through
``multiprocessing``: nothing re-imports the user's ``__main__`` (a script without an
``if __name__ == "__main__":`` guard, or code read from standard input, works the same).
"""
from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path


def _write(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m edgecomp.compress.worker JOB.json", file=sys.stderr)
        return 2
    job_file = Path(argv[0])
    out = job_file.with_name("result.json")
    try:
        d = json.loads(job_file.read_text())
        from ..errors import EdgecompError
        from .trial import run_trial
        try:
            row = run_trial(d["spec"], d["job"])
        except EdgecompError as e:
            _write(out, {"error": e.message(), "kind": type(e).__name__})
            return 2
        _write(out, {"row": row})
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # reported by the search with the trial's label
        _write(out, {"error": f"{type(e).__name__}: {e}", "kind": "crash", "traceback": traceback.format_exc()})
        return 1


if __name__ == "__main__":
    sys.exit(main())
