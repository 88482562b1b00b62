"""examples/kws1d_vowels.py end to end on the host build: a 1-D DS-CNN trained on JapaneseVowels
(aeon's wheel, offline), int8, its C build's accuracy beside the float model's."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("aeon")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))


@pytest.mark.slow
@pytest.mark.toolchain
def test_kws1d_vowels_int8_keeps_the_float_accuracy(tmp_path):
    import kws1d_vowels

    r = kws1d_vowels.run("host", tmp_path, epochs=40)
    assert r["test_sequences"] == 370
    assert r["input"]["source_layout"] == "NCW" and r["input"]["shape"] == [1, 1, 29, 12]
    assert r["float_accuracy"] >= 0.9  # a trained model, not noise
    assert r["firmware_accuracy"] >= r["float_accuracy"] - 0.02
    assert r["agreement"] >= 0.97
