"""User-facing errors.

Every error a user can cause is an :class:`EdgecompError`: it says *what* went
wrong, *where* (a file, a node, a tensor) and *what to do*.  The CLI prints it as
one message and exits with ``exit_code`` (2 for bad input, 1 for a failed tool
run), never with a traceback.
"""
from __future__ import annotations


class EdgecompError(Exception):
    exit_code = 2

    def __init__(self, what: str, where: str | None = None, fix: str | None = None):
        self.what, self.where, self.fix = what, where, fix
        super().__init__(self.message())

    def message(self) -> str:
        msg = self.what
        if self.where:
            msg += f" (in {self.where})"
        if self.fix:
            msg += f". {self.fix}"
        return msg


class ModelError(EdgecompError):
    """A model file that cannot be read, or a graph that makes no sense."""


class UnsupportedError(EdgecompError):
    """A valid model that uses something edgecomp does not support (yet)."""


class DoesNotFitError(EdgecompError):
    """The compiled model does not fit the target's flash or RAM."""


class ToolError(EdgecompError):
    """An external tool (compiler, emulator, ssh, pyOCD) failed or is missing."""
    exit_code = 1
