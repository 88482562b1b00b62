"""`edgecomp flash BUNDLE`: build the bundle's firmware for its board and flash it through pyOCD."""
from __future__ import annotations

from pathlib import Path

from .errors import EdgecompError, ToolError


def connected_probes() -> list:
    """Debug probes pyOCD can see (CMSIS-DAP, ST-Link, J-Link); [] when none is attached."""
    try:
        from pyocd.core.helpers import ConnectHelper
    except ImportError:
        raise ToolError("pyOCD is not installed", fix="pip install pyocd") from None
    try:
        return list(ConnectHelper.get_all_connected_probes(blocking=False))
    except Exception as e:  # USB back-ends raise many types when libusb is missing
        raise ToolError(f"pyOCD cannot list debug probes: {e}", fix="Check USB permissions and libusb") from None


def flash_bundle(bundle: Path, probe_id: str | None = None, extra_sources: list | tuple = ()) -> int:
    """Check the bundle (:mod:`edgecomp.integrity`), build its listed files (plus the user's
    ``extra_sources``, e.g. a UART driver) outside it, and program the board."""
    from . import workdirs
    from .backends.cortex_m import build
    from .integrity import verify_bundle
    from .targets import load_target

    bundle = Path(bundle)
    inside = {Path(f).name for f in extra_sources if Path(f).resolve().parent == bundle.resolve()}
    man = verify_bundle(bundle, inside)  # before anything else: hashes, no unlisted file, no symbolic link
    target = load_target(man["target"])
    pyocd_target = target.flasher.get("target") if target.flasher.get("tool", "pyocd") == "pyocd" else None
    if not pyocd_target and target.flasher.get("how"):  # a board flashed with its vendor's tool
        raise EdgecompError(f"{target.name} is flashed with {target.flasher.get('tool', 'its vendor tool')}, "
                            "not pyOCD", where=str(bundle), fix=target.flasher["how"])
    if not pyocd_target:
        raise EdgecompError(f"target {target.name!r} has no flasher (it runs under QEMU or on the host)",
                            fix="Compile for a board target such as nucleo-l4r5zi, or use `edgecomp run --emulate`")
    probes = connected_probes()
    if probe_id:
        probes = [p for p in probes if p.unique_id == probe_id]
    if not probes:
        fix = "Connect the board's ST-Link/CMSIS-DAP USB port (and check `pyocd list`)"
        uf2 = bundle / f"{man.get('name', 'model')}.uf2"
        if target.uf2_family is not None and uf2.is_file():
            fix = (f"Connect a debug probe to the SWD pins, or flash without one: hold BOOTSEL while plugging "
                   f"the board in and copy {uf2} onto the USB drive that appears")
        raise ToolError("no debug probe attached" + (f" with id {probe_id}" if probe_id else ""), fix=fix)
    with workdirs.work_dir("flash") as work:
        res = build(bundle, target, build_dir=work, extra_sources=extra_sources)
        from pyocd.core.helpers import ConnectHelper
        from pyocd.flash.file_programmer import FileProgrammer

        with ConnectHelper.session_with_chosen_probe(unique_id=probes[0].unique_id, target_override=pyocd_target,
                                                     options={"frequency": 4000000}) as session:
            FileProgrammer(session).program(str(res.elf))
            session.target.reset()
    print(f"flashed {bundle} ({res.flash_bytes:,} bytes) to {pyocd_target} through probe {probes[0].unique_id}")
    return 0
