"""Every subcommand driven with generated arguments, paths and inputs (issue 18, property-based).

The strategies and checks live in scripts/fuzz_cli.py (which runs 10,000+ invocations for as long
as you like); this test runs a small derandomized budget of them: no traceback, exit 0/1/2 with one
message, nothing written on failure, the inputs never touched, no temporary files left.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if "fuzz_cli" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("fuzz_cli", ROOT / "scripts" / "fuzz_cli.py")
    sys.modules["fuzz_cli"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["fuzz_cli"])
fz = sys.modules["fuzz_cli"]

EXAMPLES = int(os.environ.get("EDGECOMP_FUZZ_CLI_CASES", "250"))


@pytest.mark.slow
@pytest.mark.qemu
def test_generated_invocations_of_every_subcommand(tmp_path_factory, capsys):
    sb = fz.make_sandbox(tmp_path_factory.mktemp("fuzz-cli"), boards=False)
    before, found_before = fz.STATS.invocations, len(fz.STATS.findings)
    stats = fz.run_many(sb, EXAMPLES, derandomize=True)
    findings = stats.findings[found_before:]
    with capsys.disabled():
        print(f"\n[fuzz] cli: {stats.line()}")
    assert stats.invocations - before >= EXAMPLES * 0.9
    assert set(stats.by_command) >= {"compile", "run", "info", "report", "probe", "flash", "deploy", "compress",
                                     "demo", "other"}
    assert 0 in stats.by_code and 2 in stats.by_code
    assert findings == [], "\n".join(f"edgecomp {' '.join(map(repr, f['argv']))}: {f['problems']}\n"
                                      f"{f['stderr']}" for f in findings[:5])


def test_the_checks_catch_what_they_should(tmp_path, monkeypatch):
    """The checker itself: a traceback, a silent failure and a half-written output are all findings."""
    from edgecomp import cli

    sb = fz.Sandbox(tmp_path, tmp_path / "in", tmp_path / "out", tmp_path / "pristine", tmp_path / "tmp")
    for d in (sb.inputs, sb.outputs, sb.pristine, sb.tmp):
        d.mkdir()
    def error(rc):
        print("edgecomp: error: something", file=sys.stderr)
        return rc

    cases = {  # a fake cli.main -> the one problem it must be reported for
        "raise": (lambda argv: (_ for _ in ()).throw(RuntimeError("boom")), "exception escaped"),
        "silent": (lambda argv: 2, "failed without an error message"),
        "twice": (lambda argv: (error(2), error(2))[0], "more than one error message"),
        "code": (lambda argv: error(3), "exit code 3"),
        "half": (lambda argv: ((sb.outputs / "half").write_text("x"), error(2))[1], "a failed command wrote"),
        "temp": (lambda argv: ((sb.tmp / "edgecomp-x").mkdir(), 0)[1], "temporary files left"),
        "input": (lambda argv: ((sb.inputs / "new").write_text("x"), 0)[1], "inputs changed"),
        "trace": (lambda argv: (print("Traceback (most recent call last):"), 0)[1], "a traceback was printed"),
    }
    for name, (fake, want) in cases.items():
        monkeypatch.setattr(cli, "main", fake)
        rc, out, err, problems = fz.run_one(sb, [name])
        assert problems and problems[0].startswith(want) and (name == "raise" or len(problems) == 1), (name, problems)
    monkeypatch.setattr(cli, "main", lambda argv: (print("fine"), 0)[1])
    assert fz.run_one(sb, ["ok"])[3] == []
