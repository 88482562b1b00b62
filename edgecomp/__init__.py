"""edgecomp: shrink a trained network and compile it for a small device."""

__version__ = "0.1.0"

from . import ops  # noqa: E402,F401  (defines the IR's ops: edgecomp.ir.OPS)
