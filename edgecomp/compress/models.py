"""The models a compression search starts from, and how its worker processes get them back.

* The built-in examples (``MnistCNN`` on MNIST or sklearn digits).
* The user's own PyTorch model: ``file.py:factory`` (a function or class in a Python file that
  returns the ``nn.Module``) with ``--weights state.pt`` (a state dict, read with
  ``weights_only=True``).  Not an exported program (``.pt2``) or TorchScript: the search trains and
  prunes the network, which needs its Python module (``torch.export`` modules have no train mode).

Trials run in separate Python processes (``python -m edgecomp.compress.worker``), so the model
must be rebuilt there: a :class:`ModelSource` says how ("factory": import the file again and
load the weights; "pickle": a module whose classes the worker can import).  :func:`portable` decides whether a module object handed to the Python API can
be pickled for the workers (its classes importable by name, nothing from ``__main__``); when it
cannot, the search runs its trials in its own process and says so.
"""
from __future__ import annotations

import hashlib
import importlib.util
import io
import pickle
import pickletools
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelError

__all__ = ["MnistCNN", "mnist_cnn", "ModelSource", "load_user_model", "portable", "rebuild"]


# --------------------------------------------------------------------------- example models
def _mnist_cnn_cls():
    import torch.nn as nn

    class MnistCNN(nn.Module):
        """28x28x1 -> 3 stride-2 conv blocks (c1, c2, c3) -> fc hidden -> fc 10 (~106k params at defaults)."""

        def __init__(self, c1: int = 16, c2: int = 32, c3: int = 64, hidden: int = 80, in_hw: int = 28):
            super().__init__()
            self.conv1 = nn.Sequential(nn.Conv2d(1, c1, 3, stride=2, padding=1), nn.BatchNorm2d(c1), nn.ReLU())
            self.conv2 = nn.Sequential(nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.BatchNorm2d(c2), nn.ReLU())
            self.conv3 = nn.Sequential(nn.Conv2d(c2, c3, 3, stride=2, padding=1), nn.BatchNorm2d(c3), nn.ReLU())
            hw = in_hw
            for _ in range(3):
                hw = (hw + 1) // 2
            self.fc1 = nn.Linear(c3 * hw * hw, hidden)
            self.relu = nn.ReLU()
            self.fc2 = nn.Linear(hidden, 10)

        def forward(self, x):
            x = self.conv3(self.conv2(self.conv1(x)))
            return self.fc2(self.relu(self.fc1(x.flatten(1))))

    return MnistCNN


try:  # a module-level class so models pickle across worker processes
    MnistCNN = _mnist_cnn_cls()
    MnistCNN.__module__ = __name__
    MnistCNN.__qualname__ = "MnistCNN"
except ImportError:  # pragma: no cover - torch missing
    MnistCNN = None


def mnist_cnn(width: float = 1.0, hidden: int | None = None, in_hw: int = 28):
    """The example CNN; ``width`` scales the channels (0.5 -> ~1/4 of the parameters)."""
    w = lambda c: max(2, int(round(c * width)))  # noqa: E731
    return MnistCNN(w(16), w(32), w(64), hidden if hidden is not None else w(80), in_hw=in_hw)


# --------------------------------------------------------------------------- the user's model
@dataclass
class ModelSource:
    """How a worker process rebuilds the baseline model."""
    kind: str  # "factory" | "pickle"
    path: str  # the Python file, or the pickled module
    factory: str = ""
    weights: str = ""  # state dict for "factory" (after training, the baseline's own)
    imports: tuple[str, ...] = ()  # --model files a pickled module's classes come from

    def to_json(self) -> dict:
        return asdict(self)


def _import_file(path: Path):
    """Import a user's Python file under a stable module name (so its classes pickle and unpickle
    in every process that imported it the same way)."""
    name = "edgecomp_user_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, str(path))
    if spec is None or spec.loader is None:
        raise ModelError(f"cannot import {path}", "compress --model", "Give a Python file (.py)")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except Exception as e:
        del sys.modules[name]
        raise ModelError(f"importing {path} failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                         "compress --model", "Fix the file so `python FILE` runs without errors") from None
    return mod


def _state_dict(weights: Path) -> dict:
    import torch
    if not weights.is_file():
        raise ModelError(f"weights file {weights} does not exist", "compress --weights", "Check the path")
    try:
        path = str(weights)
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelError(f"cannot read the weights: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                         f"compress --weights {weights}",
                         "Save them with torch.save(model.state_dict(), path) (a state dict, not a pickled model)") \
            from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise ModelError(f"the weights file holds a {type(sd).__name__}, not a state dict", f"compress --weights {weights}",
                         "Save them with torch.save(model.state_dict(), path)")
    return sd


def load_user_model(spec: str, weights: str | Path | None = None):
    """The user's ``nn.Module`` and its :class:`ModelSource` from ``file.py:factory`` (+ weights)."""
    import torch
    if spec.endswith((".pt2", ".pt", ".pth", ".onnx", ".tflite")) and ":" not in Path(spec).name:
        raise ModelError(f"--model {spec!r} is a saved model, not FILE.py:FACTORY", "compress --model",
                         "The search fine-tunes, prunes and re-trains the network, which needs its Python class: "
                         "give the file that defines it and a function returning it (--model net.py:make_net) "
                         "and the weights as a state dict (--weights net.pt). Exported programs (.pt2) and "
                         "TorchScript cannot be trained or pruned; `edgecomp compile` takes .onnx and .tflite files")
    file, sep, factory = spec.rpartition(":")
    if not sep or not file.endswith(".py") or not factory.isidentifier():
        raise ModelError(f"--model {spec!r} is not FILE.py:FACTORY", "compress --model",
                         "Give e.g. --model models/net.py:make_net --weights net.pt (a function or class returning "
                         "the nn.Module)")
    path = Path(file)
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist", "compress --model", "Check the path")
    mod = _import_file(path)
    fn = getattr(mod, factory, None)
    if not callable(fn):
        names = sorted(n for n, v in vars(mod).items() if callable(v) and not n.startswith("_"))
        raise ModelError(f"{path} has no function or class {factory!r}", "compress --model",
                         f"Callables in the file: {', '.join(names[:15]) or 'none'}")
    try:
        model = fn()
    except Exception as e:
        raise ModelError(f"{factory}() failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                         f"compress --model {spec}", "The factory must build the model without arguments") from None
    if not isinstance(model, torch.nn.Module):
        raise ModelError(f"{factory}() returned a {type(model).__name__}, not a torch.nn.Module", f"compress --model {spec}",
                         "Return the model itself")
    src = ModelSource("factory", str(path.resolve()), factory)
    if weights:
        sd = _state_dict(Path(weights))
        res = model.load_state_dict(sd, strict=False)
        if res.missing_keys or res.unexpected_keys:
            raise ModelError(f"the weights do not match {factory}(): missing {list(res.missing_keys)[:5]}, unexpected "
                             f"{list(res.unexpected_keys)[:5]}", f"compress --weights {weights}",
                             "Give the state dict saved from the model this factory builds")
        src.weights = str(Path(weights).resolve())
    return model, src


# --------------------------------------------------------------------------- workers
def _globals(data: bytes) -> set[str]:
    """The modules a pickle (protocol 2) refers to."""
    mods = set()
    for op, arg, _ in pickletools.genops(io.BytesIO(data)):
        if op.name == "GLOBAL" and isinstance(arg, str):
            mods.add(arg.split(" ")[0])
    return mods


def portable(model) -> tuple[bool, str, tuple[str, ...]]:
    """Whether a fresh Python process can unpickle ``model``: every class it refers to importable by
    its module name (not ``__main__``, not a module created at run time without a file).  Returns
    (ok, why not, the --model files to import first)."""
    try:
        data = pickle.dumps(model, protocol=2, fix_imports=False)
    except Exception as e:
        return False, f"the model does not pickle ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})", ()
    imports = []
    for m in sorted(_globals(data)):
        if m == "__main__":
            return False, "the model's class is defined in __main__ (your script or standard input)", ()
        mod = sys.modules.get(m)
        if m.startswith("edgecomp_user_") and getattr(mod, "__file__", None):
            imports.append(mod.__file__)  # a --model file: workers import it under the same name
            continue
        top = m.split(".")[0]
        if mod is not None and getattr(mod, "__spec__", None) is None and top not in sys.builtin_module_names:
            return False, f"module {m!r} of the model cannot be imported by name in another process", ()
        if mod is None and importlib.util.find_spec(top) is None:
            return False, f"module {m!r} of the model cannot be imported in another process", ()
    return True, "", tuple(imports)


def _load_pickled(base_path):
    """The one place the search unpickles: a baseline module it wrote itself into its output folder
    moments earlier (SECURITY.md), for worker processes."""
    import torch
    base = torch.load(base_path, weights_only=False)
    return base


def rebuild(source: dict) -> Any:
    """The baseline model in a worker process, from a :class:`ModelSource` as a dict."""
    src = ModelSource(**{**source, "imports": tuple(source.get("imports", ()))})
    if src.kind == "factory":
        model, _ = load_user_model(f"{src.path}:{src.factory}", src.weights or None)
        return model
    if src.kind == "pickle":
        for f in src.imports:
            _import_file(Path(f))
        return _load_pickled(src.path)
    raise ModelError(f"unknown model source {src.kind!r}", "compress worker")
