"""edgecomp: shrink a trained network and compile it for a small device."""

__version__ = "0.1.0"
