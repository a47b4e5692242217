"""``workbench.models.reusing_loaded``: one model per spec inside the block (the demo's commands share it),
a fresh model per call outside it."""
from __future__ import annotations

from workbench.models import load, reusing_loaded


def test_models_are_shared_inside_the_block_only():
    with reusing_loaded():
        a, b = load("cochleagram"), load("cochleagram")
        assert a is b
        with reusing_loaded():  # nested: the outer memo stays in use
            assert load("cochleagram") is a
        assert load("cochleagram", dtype="float64") is not a  # another dtype is another model
    assert load("cochleagram") is not a and load("cochleagram") is not load("cochleagram")
