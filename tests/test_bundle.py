"""Atomic bundle folders and manifests."""
from __future__ import annotations

import json

import pytest

from edgecomp.bundle import atomic_dir, read_manifest, verify_manifest, write_manifest


def test_atomic_dir_keeps_old_bundle_on_failure(tmp_path):
    dest = tmp_path / "b"
    with atomic_dir(dest) as d:
        (d / "a.txt").write_text("old")
        write_manifest(d, {"target": "host"})
    with pytest.raises(RuntimeError):
        with atomic_dir(dest) as d:
            (d / "a.txt").write_text("new, half written")
            raise RuntimeError("killed")
    assert (dest / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_manifest_hashes_detect_tampering(tmp_path):
    (tmp_path / "x.c").write_text("int x;\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "y.h").write_text("#define Y 1\n")
    man = write_manifest(tmp_path, {"target": "host"})
    assert set(man["files"]) == {"x.c", "sub/y.h"}
    assert read_manifest(tmp_path)["target"] == "host"
    assert verify_manifest(tmp_path) == []
    (tmp_path / "x.c").write_text("int x = 1;\n")
    assert verify_manifest(tmp_path) == ["x.c"]
    json.loads((tmp_path / "manifest.json").read_text())
