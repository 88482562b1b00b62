"""The `edgecomp` command line.

Every user mistake ends in one message (what, where, what to do) and a non-zero
exit code: 2 for bad input, 1 for a failed tool; 130 on Ctrl-C.  Set
EDGECOMP_DEBUG=1 to see a traceback for unexpected errors.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path

from . import __version__
from .errors import EdgecompError
from .sanitize import terminal_text


def _size(text: str) -> int:
    """'32KiB' / '64k' / '1M' / '4096' -> bytes."""
    t = text.strip().lower().replace("ib", "").replace("b", "")
    mult = 1
    if t and t[-1] in "km":
        mult = 1024 if t[-1] == "k" else 1024 * 1024
        t = t[:-1]
    try:
        return int(float(t) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 32KiB, 512k, 1M)") from None


def cmd_compile(a) -> int:
    from .api import compile_model
    from .report import print_compile_report

    model = Path(a.model)
    if not model.exists():
        raise EdgecompError(f"model file {model} does not exist", fix="Check the path")
    man = compile_model(model, a.target, a.output, calib=a.calib, precision=a.precision,
                        calibrate_method=a.calibrate_method, per_channel=not a.per_tensor,
                        keep_float=a.keep_float, options={"kernels": a.kernels, "optimize": a.optimize,
                                                          **({"streaming": True} if a.streaming else {})},
                        force=a.force, validate=a.validate, labels=a.labels, dump_ir=a.dump_ir)
    if a.json:
        print(json.dumps(man, indent=2, sort_keys=True))
    else:
        print_compile_report(man, a.output)
    return 0


def cmd_run(a) -> int:
    import numpy as np

    from .api import run_bundle
    from .arrays import load_samples
    from .bundle import read_bundle_manifest
    from .integrity import read_checked_manifest
    from .outputs import check_output_file

    bundle = Path(a.bundle)
    read_checked_manifest(bundle)  # a regular file, JSON, its file list well formed
    man = read_bundle_manifest(bundle)  # and the fields run reads
    # outputs are checked before the run, not found unwritable after it
    check_output_file(a.output, "--output")
    check_output_file(a.plot, "--plot")
    if a.count < 1 or a.count > 100000:
        raise EdgecompError(f"--count must be 1 to 100,000, got {a.count}", fix="Give e.g. --count 10")
    if a.clock_hz is not None and not (0 < a.clock_hz < 1e12):
        raise EdgecompError(f"--clock-hz must be a positive frequency, got {a.clock_hz}", fix="Give e.g. --clock-hz 120e6")
    if str(man.get("target", "")).startswith("rpi") or man.get("kind") == "rpi":
        raise EdgecompError("a Raspberry Pi bundle runs on the Pi", fix="Use `edgecomp deploy BUNDLE --host user@pi`")
    if not man.get("inputs") or not isinstance(man["inputs"][0], dict) or "shape" not in man["inputs"][0]:
        raise EdgecompError("the bundle's manifest lists no input", where=str(bundle), fix="Compile the bundle again")
    several = len(man["inputs"]) > 1
    if several and a.input:  # one array per input name in an .npz
        names = _npz_names(a.input, man["inputs"])
        xs = {io["name"]: _user_samples(load_samples(a.input, prefer=(names[io["name"]],), what="input file"),
                                        io, a.input) for io in man["inputs"]}
    elif a.input:
        io = man["inputs"][0]
        xs = {io["name"]: _user_samples(load_samples(a.input, prefer=(str(io.get("name", "x")), "x"),
                                                     first_if_many=True, what="input file"), io, a.input)}
    else:
        rng = np.random.default_rng(0)
        xs = {}
        for io in man["inputs"]:
            shape = [a.count] + list(io["shape"][1:])
            if io.get("source_layout") == "NCHW" and len(shape) == 4:
                shape = [shape[0], shape[3], shape[1], shape[2]]
            if io.get("source_layout") == "NCW":  # [N, 1, L, C] in the bundle, [N, C, L] for the user
                shape = [shape[0], shape[3], shape[2]]
            xs[io["name"]] = rng.integers(-128, 128, size=shape).astype(io["dtype"]) if io["dtype"] != "float32" \
                else rng.standard_normal(shape).astype(np.float32)
    x = xs if several else next(iter(xs.values()))
    if a.host:
        a.emulate = False
    pred = run_bundle(bundle, x, emulate=a.emulate, cycles=a.cycles, clock_hz=a.clock_hz)
    from .probe import layer_table
    table = layer_table(man, pred.result, clock_hz=a.clock_hz)
    cycles = pred.result.cycles  # estimated cycles (--cycles): printed beside the instruction counts
    if a.output and isinstance(pred.outputs, dict):  # several outputs: one array per output name
        with open(a.output, "wb") as f:
            np.savez(f, **pred.outputs)
    elif a.output:
        np.save(a.output, pred.outputs)
    if a.json:
        out = table.to_json() if hasattr(table, "to_json") else table
        if cycles is not None:
            out["estimated_cycles"] = cycles.to_json()
        print(json.dumps(out, indent=2))
    else:
        print(table if isinstance(table, str) else table.render())
        if cycles is not None:
            print("\n" + cycles.render())
    if a.plot:
        (cycles or table).plot(a.plot)
    _save_run(bundle, table, pred.result, quiet=a.json)
    return 0


def _save_run(bundle: Path, table, result, quiet: bool) -> None:
    """Keep a QEMU run's instructions in the bundle (run.json, for `edgecomp report`); a bundle that
    cannot be written only gets a warning: the run itself succeeded."""
    from .run_results import save
    try:
        path = save(bundle, table, result)
    except EdgecompError as e:
        print(terminal_text(f"edgecomp: warning: the measured instructions were not saved: {e.what}"), file=sys.stderr)
        return
    if path is not None and not quiet:
        print(terminal_text(f"instructions saved in {path} (`edgecomp report` shows them)"))


def _user_samples(x, io: dict, where: str):
    """Checked samples of one input in the user's layout, with the batch axis."""
    from .samples import check_samples

    check_samples(x, "input samples", where)
    rank = 3 if io.get("source_layout") == "NCW" else len(io["shape"])  # the user's [N, C, L] for a 1-D model
    return x[None] if x.ndim == rank - 1 else x  # (one sample without its batch axis)


def _npz_names(path: str, ios: list) -> dict:
    """The .npz member of each input of a model of several inputs (named as the input)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            members = {n[:-4] if n.endswith(".npy") else n for n in z.namelist()}
    except (OSError, zipfile.BadZipFile):
        members = set()
    want = [str(io.get("name")) for io in ios]
    missing = [n for n in want if n not in members]
    if missing:
        raise EdgecompError(f"the model takes {len(want)} inputs ({', '.join(map(repr, want))}); {path} has no "
                            f"array named {', '.join(map(repr, missing))}", where=path,
                            fix="Give an .npz with one array per input name: numpy.savez(file, " +
                                ", ".join(f"{n}=..." for n in want) + ")")
    return {n: n for n in want}


def cmd_info(a) -> int:
    from .info import model_info
    return model_info(Path(a.model), as_json=a.json)


def cmd_report(a) -> int:
    from .bundle import read_bundle_manifest
    from .integrity import read_checked_manifest
    from .report import print_compile_report
    from .run_results import load
    read_checked_manifest(Path(a.bundle))
    man = read_bundle_manifest(Path(a.bundle))
    run = load(a.bundle)  # what `edgecomp run` measured on this bundle (run.json), if anything
    if a.json:
        print(json.dumps({**man, "run": run} if run else man, indent=2, sort_keys=True))
    else:
        print_compile_report(man, a.bundle, run)
    return 0


def cmd_probe(a) -> int:
    from .outputs import check_output_file
    from .probe import probe_serial
    check_output_file(a.plot, "--plot")
    if a.bundle is not None:
        from .bundle import read_bundle_manifest
        read_bundle_manifest(Path(a.bundle))
    if not (0 < a.timeout <= 3600):
        raise EdgecompError(f"--timeout must be 0 to 3600 seconds, got {a.timeout}", fix="Give e.g. --timeout 10")
    if a.baud <= 0:
        raise EdgecompError(f"--baud must be positive, got {a.baud}", fix="Give e.g. --baud 115200")
    if a.clock_hz is not None and not (0 < a.clock_hz < 1e12):
        raise EdgecompError(f"--clock-hz must be a positive frequency, got {a.clock_hz}", fix="Give e.g. --clock-hz 120e6")
    return probe_serial(a.port, baud=a.baud, timeout=a.timeout, bundle=a.bundle, clock_hz=a.clock_hz,
                        as_json=a.json, plot=a.plot)


def cmd_flash(a) -> int:
    from .flash import flash_bundle
    return flash_bundle(Path(a.bundle), probe_id=a.probe, extra_sources=a.source or ())


def cmd_deploy(a) -> int:
    from .deploy import deploy_cli
    if not 1 <= a.port <= 65535:
        raise EdgecompError(f"--port must be 1 to 65535, got {a.port}", fix="Give the device's ssh port, e.g. --port 22")
    if a.runs < 1:
        raise EdgecompError(f"--runs must be at least 1, got {a.runs}", fix="Give e.g. --runs 100")
    return deploy_cli(a)


def cmd_compress(a) -> int:
    from .compress.search import compress_cli
    return compress_cli(a)


def cmd_demo(a) -> int:
    from .demo import main as demo_main
    return demo_main(target=a.target, out=a.output, quick=a.quick, force=a.force)


_FORCE_HELP = ("write into an existing folder that holds files edgecomp did not write: only the files a previous "
               "edgecomp run wrote there are replaced or deleted, and a file edgecomp did not write is never "
               "overwritten")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgecomp", description="Shrink a trained network and compile it for a small device.")
    p.add_argument("--version", action="version", version=f"edgecomp {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("compile", help="compile a .onnx or .tflite model into a bundle for a target")
    c.add_argument("model", help=".onnx (float or QDQ int8) or .tflite (int8 or float32)")
    c.add_argument("--target", "-t", default="cortex-m4", help="target name (see targets/*.toml); default cortex-m4")
    c.add_argument("--output", "-o", default="bundle",
                   help="bundle folder to write: a new, empty or edgecomp-written folder is replaced atomically; "
                        "anything else is refused (see --force)")
    c.add_argument("--force", action="store_true", help=_FORCE_HELP)
    c.add_argument("--calib", help="calibration samples (.npy / .npz) for int8 quantization of a float model")
    c.add_argument("--precision", choices=["int8", "int16", "float32"], default="int8",
                   help="int16: int16 activations with int8 weights (16x8)")
    c.add_argument("--no-quantize", dest="precision", action="store_const", const="float32",
                   help="keep float32 (same as --precision float32)")
    c.add_argument("--calibrate-method", choices=["minmax", "entropy", "percentile"], default="minmax")
    c.add_argument("--validate", metavar="X.npy",
                   help="samples to measure the int8 model against the float model on (the quantization report; "
                        "default: the calibration samples)")
    c.add_argument("--labels", metavar="Y.npy", help="classes of the --validate samples: accuracy float vs int8")
    c.add_argument("--per-tensor", action="store_true", help="per-tensor instead of per-channel weights")
    c.add_argument("--keep-float", action="append", metavar="LAYER",
                   help="leave this layer in float32 in an int8 model (mixed precision; ONNX node name or PyTorch "
                        "module path, repeatable or comma-separated)")
    c.add_argument("--kernels", choices=["auto", "reference", "dsp", "mve"], default="auto",
                   help="int8 kernels: dsp = SMLAD kernels (Cortex-M4/M7/M33), mve = Helium kernels (Cortex-M55, "
                        "the DSP kernels for the other layers), reference = plain C, auto (default) = mve when the "
                        "target has Helium, else dsp when it has the DSP extension")
    c.add_argument("--optimize", choices=["balanced", "speed"], default="balanced",
                   help="balanced (default): least RAM, flash about the model's int8 weights; speed: the "
                        "matrix-product and fully connected layers' weights stored as int16 (about twice their "
                        "flash) so their inner loops skip the sign extension, and the workspaces may grow the "
                        "arena by up to a quarter plus 1 KiB (DSP kernels only)")
    c.add_argument("--streaming", action="store_true",
                   help="models with LSTM / GRU layers: one frame per ec_invoke(), the recurrent state kept "
                        "between calls (ec_state_reset() starts a new stream; C targets)")
    c.add_argument("--json", action="store_true", help="print the manifest as JSON")
    c.add_argument("--dump-ir", metavar="DIR", help="write the graph after every compiler pass into DIR "
                   "(NN_<pass>.txt: tensors, nodes and attributes; for debugging)")
    c.set_defaults(func=cmd_compile)

    r = sub.add_parser("run", help="run a bundle (QEMU with --emulate, or natively for a host bundle) and print the probe")
    r.add_argument("bundle")
    r.add_argument("--emulate", action="store_true", default=True, help="run under QEMU (default)")
    r.add_argument("--host", action="store_true", help="build with the machine's gcc and run natively")
    r.add_argument("--input", help="input samples .npy (float in the model's layout, or already int8)")
    r.add_argument("--count", type=int, default=1, help="random inputs when no --input is given")
    r.add_argument("--output", help="write the raw outputs to this .npy")
    r.add_argument("--clock-hz", type=float, help="convert cycles (and estimated cycles) to milliseconds at this clock")
    r.add_argument("--cycles", action="store_true",
                   help="also estimate cycles per layer from the core's timing table over the instructions QEMU "
                        "executes (an estimate, not a measurement; docs/cycles.md); --plot then charts them")
    r.add_argument("--json", action="store_true")
    r.add_argument("--plot", help="write a PNG bar chart of per-layer time")
    r.set_defaults(func=cmd_run)

    inf = sub.add_parser("info", help="show a model's ops, shapes, MACs and whether edgecomp supports it")
    inf.add_argument("model", help=".onnx or .tflite")
    inf.add_argument("--json", action="store_true")
    inf.set_defaults(func=cmd_info)

    rep = sub.add_parser("report", help="print a bundle's sizes and layers")
    rep.add_argument("bundle")
    rep.add_argument("--json", action="store_true")
    rep.set_defaults(func=cmd_report)

    pr = sub.add_parser("probe", help="read probe lines from a board over serial")
    pr.add_argument("--port", required=True)
    pr.add_argument("--baud", type=int, default=115200)
    pr.add_argument("--timeout", type=float, default=10.0)
    pr.add_argument("--bundle", help="bundle folder, to name the layers")
    pr.add_argument("--clock-hz", type=float)
    pr.add_argument("--json", action="store_true")
    pr.add_argument("--plot")
    pr.set_defaults(func=cmd_probe)

    f = sub.add_parser("flash", help="build and flash a bundle to a board through pyOCD")
    f.add_argument("bundle")
    f.add_argument("--probe", help="debug probe unique id")
    f.add_argument("--source", action="append", metavar="FILE.c",
                   help="a C file of your own compiled with the bundle, e.g. a UART driver defining ec_putc "
                        "(repeatable; files are never picked up from the bundle folder)")
    f.set_defaults(func=cmd_flash)

    d = sub.add_parser("deploy", help="copy a Raspberry Pi bundle over ssh, run its probe, fetch the results")
    d.add_argument("bundle")
    d.add_argument("--host", required=True, help="user@host")
    d.add_argument("--port", type=int, default=22)
    d.add_argument("--identity", help="ssh private key")
    d.add_argument("--known-hosts", help="known_hosts file (host-key checking stays on)")
    d.add_argument("--no-venv", action="store_true", help="use the remote python3 as is")
    d.add_argument("--runs", type=int, default=100)
    d.add_argument("--threads", default="1,2,4")
    d.add_argument("--python", default="python3", help="python on the remote host")
    d.add_argument("--remote-dir", default="edgecomp-bundles",
                   help="folder on the device for bundles and the venv (relative to the remote home; "
                        "default edgecomp-bundles)")
    d.add_argument("--profile", action="store_true", help="also collect ONNX Runtime's per-node profile")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_deploy)

    cp = sub.add_parser("compress", help="search compression methods under flash/RAM/latency/accuracy budgets and "
                        "write the chosen model's bundle")
    cp.add_argument("--model", help="your PyTorch model: FILE.py:FACTORY (a function or class returning the "
                    "nn.Module; with --weights); default: the built-in --example")
    cp.add_argument("--weights", help="state dict for --model FILE.py:FACTORY (torch.save(model.state_dict(), path))")
    cp.add_argument("--data", help="training data .npz with arrays x and y (needed with --model)")
    cp.add_argument("--val", help="validation .npz (selects the candidate; default: split off --data)")
    cp.add_argument("--test", help="test .npz (reports the chosen candidate on its firmware; default: split off)")
    cp.add_argument("--task", choices=["classification", "regression"], default="classification")
    cp.add_argument("--metric", choices=["accuracy", "rmse", "mae"],
                    help="accuracy (classification) or rmse / mae (regression, default rmse)")
    cp.add_argument("--example", default="mnist", help="built-in example model and data (mnist or digits)")
    cp.add_argument("--flash", type=_size, help="flash budget, e.g. 32KiB")
    cp.add_argument("--ram", type=_size, help="RAM budget, e.g. 8KiB")
    cp.add_argument("--latency", type=float, help="latency budget in instructions per inference")
    cp.add_argument("--max-accuracy-drop", type=float, default=1.0,
                    help="points of validation accuracy you accept to lose (classification)")
    cp.add_argument("--max-error-increase", type=float, default=10.0,
                    help="percent of the baseline error you accept to add (regression)")
    cp.add_argument("--target", default="cortex-m4")
    cp.add_argument("--output", "-o", default="compress-out", help="results folder (the same rule as compile -o)")
    cp.add_argument("--force", action="store_true", help=_FORCE_HELP)
    cp.add_argument("--executor", choices=["local", "inline", "ray"], default="local",
                    help="local: worker processes (--workers); inline: this process; ray: a Ray cluster")
    cp.add_argument("--workers", type=int, default=2)
    cp.add_argument("--quick", action="store_true", help="fewer epochs and candidates")
    cp.add_argument("--estimate", action="store_true",
                    help="estimate flash/RAM/instructions of the trials from parameters and MACs instead of building "
                         "firmware (the finalists are still compiled before one is chosen)")
    cp.add_argument("--seed", type=int, default=0)
    cp.set_defaults(func=cmd_compress)

    dm = sub.add_parser("demo", help="the built-in example: digits CNN -> int8 -> Cortex-M4 firmware in QEMU")
    dm.add_argument("--target", default="cortex-m4")
    dm.add_argument("--output", "-o", default="out/digits", help="results folder (the same rule as compile -o)")
    dm.add_argument("--force", action="store_true", help=_FORCE_HELP)
    dm.add_argument("--quick", action="store_true", help="fewer epochs")
    dm.set_defaults(func=cmd_demo)
    return p


def _stdout_closed() -> bool:
    """True when the reader of our stdout went away (``edgecomp info m.onnx --json | head``)."""
    import select
    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in poll.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def _quiet_exit_on_broken_pipe() -> int:
    # Like other command-line tools killed by SIGPIPE: no message, and no second error when
    # Python flushes stdout at exit (stdout now points at /dev/null).
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return 128 + 13  # what a shell reports for a tool ended by SIGPIPE


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        rc = int(a.func(a) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not as a message at interpreter exit
        return rc
    except BrokenPipeError as e:
        if _stdout_closed():
            return _quiet_exit_on_broken_pipe()
        return _internal_error(e)
    except EdgecompError as e:
        # model-derived names in a message reach the terminal with control characters escaped
        print(f"edgecomp: error: {terminal_text(e.message(), keep_newlines=e.exit_code != 2)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("edgecomp: interrupted; earlier outputs are left as they were", file=sys.stderr)
        return 130
    except Exception as e:  # an internal error is still one clear message
        return _internal_error(e)


def _internal_error(e: BaseException) -> int:
    if os.environ.get("EDGECOMP_DEBUG"):
        traceback.print_exception(e)
    print(f"edgecomp: internal error: {type(e).__name__}: {terminal_text(e)}. This is a bug in edgecomp; "
          "rerun with EDGECOMP_DEBUG=1 and report the traceback.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
