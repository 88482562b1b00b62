"""One loader for the sample arrays users hand to edgecomp (``--calib``, ``--input``, ``--validate``).

``.npy`` and ``.npz`` files are untrusted input.  :func:`load_samples` reads them
without ever unpickling or trusting a declared size:

* the header is parsed first (numpy's own header reader, no pickle); object,
  string, structured, complex and other non-numeric dtypes are refused, and so is
  a scalar (0-d) or empty array;
* the bytes the header declares (and, in an ``.npz``, the uncompressed size the
  zip member declares) must be at most :func:`max_bytes` (1 GiB unless
  ``EDGECOMP_MAX_ARRAY_MB`` says otherwise) *before* anything is allocated, and a
  member is decompressed only up to that many bytes, so a decompression bomb is
  one clear error, not gigabytes of RAM;
* NaN, infinity and values beyond +-1e15 are refused (no network input is that
  large; float32 ranges computed from them overflow).

Every problem is an :class:`edgecomp.errors.ModelError` (exit 2) naming the file.
"""
from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import ModelError

#: Largest magnitude accepted in a sample array.
MAX_ABS_VALUE = 1e15
#: Most members an .npz may list.
MAX_MEMBERS = 1024
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"


def max_bytes() -> int:
    """The most bytes one loaded array may take (``EDGECOMP_MAX_ARRAY_MB``, default 1024 MiB)."""
    try:
        mb = float(os.environ.get("EDGECOMP_MAX_ARRAY_MB", "1024"))
    except ValueError:
        mb = 1024.0
    return int(max(mb, 1.0) * 1024 * 1024)


def _bad(what: str, where: str, fix: str = "Save the samples with numpy.save / numpy.savez "
         "(a numeric array, samples along the first axis)") -> ModelError:
    return ModelError(what, where=where, fix=fix)


def _read_header(fp, where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) from an .npy stream positioned at its start."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fp)
    except (ValueError, OSError, EOFError) as e:
        raise _bad(f"not a numpy .npy array ({str(e)[:80]})", where) from None
    try:
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(fp)
        else:
            raise _bad(f".npy format version {version[0]}.{version[1]} (only used for structured arrays)", where)
    except ModelError:
        raise
    except Exception as e:  # a damaged or hostile header: numpy raises ValueError, SyntaxError, TypeError...
        raise _bad(f"the .npy header cannot be read ({type(e).__name__}: {str(e)[:80]})", where) from None
    return tuple(int(d) for d in shape), bool(fortran), dtype


def _check_dtype_shape(shape, dtype: np.dtype, where: str, kinds: str) -> int:
    """Refuse what is not a plain numeric array; return its byte count."""
    if dtype.hasobject:
        raise _bad("the array holds Python objects (a pickle); edgecomp never unpickles input files", where)
    if dtype.names is not None or dtype.subdtype is not None:
        raise _bad(f"the array is structured (dtype {dtype}), not a plain numeric array", where)
    if dtype.kind not in kinds:
        kind = {"U": "text", "S": "bytes", "c": "complex numbers", "M": "dates", "m": "time deltas",
                "V": "raw bytes"}.get(dtype.kind, f"dtype {dtype}")
        raise _bad(f"the array holds {kind}, not numbers", where)
    if len(shape) == 0:
        raise _bad("the file holds a single number (a 0-d array), not samples", where)
    if any(d < 0 for d in shape):
        raise _bad(f"the array declares a negative dimension {list(shape)}", where)
    count = 1
    for d in shape:
        count *= d
    if count == 0:
        raise _bad(f"the array is empty (shape {list(shape)})", where, "Give at least one sample")
    nbytes = count * dtype.itemsize
    if nbytes > max_bytes():
        raise _bad(f"the array declares {nbytes:,} bytes (shape {list(shape)}, {dtype}), more than the "
                   f"{max_bytes():,} bytes edgecomp loads", where,
                   "Use fewer samples (a few hundred calibrate well), or raise EDGECOMP_MAX_ARRAY_MB")
    return nbytes


def _read_array(fp, where: str, kinds: str, available: int | None) -> np.ndarray:
    start = fp.tell() if hasattr(fp, "tell") else 0
    shape, fortran, dtype = _read_header(fp, where)
    nbytes = _check_dtype_shape(shape, dtype, where, kinds)
    if available is not None:
        left = available - (fp.tell() - start)
        if nbytes > left:
            raise _bad(f"the array header declares {nbytes:,} bytes of data but only {max(left, 0):,} follow",
                       where, "The file is truncated or damaged; save it again")
    try:
        data = fp.read(nbytes)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as e:
        raise _bad(f"the array data cannot be read ({type(e).__name__}: {str(e)[:80]})", where) from None
    if len(data) != nbytes:
        raise _bad(f"the array holds {len(data):,} bytes of data, its header declares {nbytes:,}", where,
                   "The file is truncated or damaged; save it again")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C").copy()


def _check_values(a: np.ndarray, where: str) -> np.ndarray:
    if a.dtype.kind == "f":
        finite = np.isfinite(a)
        if not finite.all():
            n_nan, n_inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
            what = "only NaN" if n_nan == a.size else ", ".join(
                s for s in (f"{n_nan:,} NaN" if n_nan else "", f"{n_inf:,} infinite" if n_inf else "") if s)
            first = int(np.argwhere(~finite.reshape(len(a), -1) if a.ndim else ~finite)[0][0]) if a.ndim else 0
            raise _bad(f"the samples hold {what} value(s) (the first in sample {first})", where,
                       "Replace or drop the samples with missing or infinite values before saving them")
    if a.dtype.kind in "fiu" and a.size:
        big = max(abs(float(a.max())), abs(float(a.min())))
        if big > MAX_ABS_VALUE:
            raise _bad(f"the samples hold a value of magnitude {big:.3g}, beyond the {MAX_ABS_VALUE:.0e} "
                       "edgecomp accepts for a network input", where,
                       "Give the samples in the units the model was trained on (scaled as in training)")
    return a


def load_samples(path: str | Path, *, prefer: Sequence[str] = ("x",), first_if_many: bool = False,
                 kinds: str = "biuf", what: str = "sample file") -> np.ndarray:
    """A numeric array from a ``.npy`` or ``.npz`` file, checked as the module says.

    In an ``.npz``, the first name of ``prefer`` that the archive holds is taken,
    else its only array (or its first one when ``first_if_many``).
    """
    p = Path(path)
    where = str(p)
    if not p.exists():
        raise ModelError(f"{what} {p} does not exist", fix="Check the path")
    if not p.is_file():
        raise ModelError(f"{what} {p} is not a file", fix="Give a .npy or .npz file")
    try:
        with open(p, "rb") as f:
            head = f.read(8)
            f.seek(0)
            if head.startswith(_NPY_MAGIC):
                return _check_values(_read_array(f, where, kinds, os.fstat(f.fileno()).st_size), where)
    except OSError as e:
        raise ModelError(f"cannot read {what} {p}: {e.strerror}", fix="Check the path and permissions") from None
    if not head.startswith(_ZIP_MAGIC):
        raise _bad(f"{what} is not a numpy .npy or .npz file", where)
    try:
        with zipfile.ZipFile(p) as z:
            infos = z.infolist()
            if len(infos) > MAX_MEMBERS:
                raise _bad(f"the archive lists {len(infos):,} members", where)
            members = {i.filename[:-4] if i.filename.endswith(".npy") else i.filename: i for i in infos}
            if not members:
                raise _bad("the .npz archive holds no arrays", where, "Save the samples with numpy.savez")
            key = next((k for k in prefer if k in members), None)
            if key is None:
                if len(members) == 1 or first_if_many:
                    key = next(iter(members))
                else:
                    names = ", ".join(repr(k) for k in list(members)[:10])
                    raise _bad(f"the archive holds arrays {names} but none named "
                               f"{' or '.join(repr(k) for k in prefer)}", where,
                               f"Name the array {prefer[0]!r} (numpy.savez(file, {prefer[0]}=samples))")
            info = members[key]
            if info.flag_bits & 0x1:
                raise _bad(f"array {key!r} is encrypted", where)
            if info.file_size > max_bytes() + 65536:
                raise _bad(f"array {key!r} declares {info.file_size:,} bytes uncompressed, more than the "
                           f"{max_bytes():,} bytes edgecomp loads", where,
                           "Use fewer samples, or raise EDGECOMP_MAX_ARRAY_MB")
            with z.open(info) as f:
                a = _read_array(f, f"{where}:{key}", kinds, info.file_size)
    except ModelError:
        raise
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, OSError, EOFError, ValueError, RuntimeError) as e:
        raise _bad(f"the .npz archive cannot be read ({type(e).__name__}: {str(e)[:80]})", where) from None
    return _check_values(a, f"{where}:{key}")


def check_sample_values(a: np.ndarray, where: str = "samples") -> np.ndarray:
    """The value checks of :func:`load_samples` on an array given from Python (no file)."""
    a = np.asarray(a)
    if a.dtype.hasobject or a.dtype.kind not in "biuf":
        raise _bad(f"samples of dtype {a.dtype} are not numbers", where, "Give a numeric numpy array")
    if a.ndim == 0 or a.size == 0:
        raise _bad(f"samples of shape {list(a.shape)} hold no sample", where, "Give an array [N, ...]")
    return _check_values(a, where)
