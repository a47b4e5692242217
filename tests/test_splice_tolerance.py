"""benchmarks/splice_tolerance.py: the scaled-error splice replaces real frames only, by x + a * error."""
import importlib.util
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("splice_tolerance", ROOT / "benchmarks" / "splice_tolerance.py")
tol = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tol)


class HalfSAE:
    """A stand-in SAE whose reconstruction is x / 2 (error -x / 2)."""

    def __call__(self, x, mode=None):
        return x / 2


def _act(seed=7):  # not the splice's noise seed (0): the same draw would align them
    g = torch.Generator().manual_seed(seed)
    act = torch.randn(1, 10, 4, generator=g)
    act[0, 3] *= 50  # one massive frame
    return act


def test_scaled_error_replaces_real_frames_only():
    act = _act()
    fn = tol.ScaledError(HalfSAE(), 0.5, "sae")
    fn.start([6])
    out = fn(act)
    torch.testing.assert_close(out[0, :6], act[0, :6] * 0.75)  # x + 0.5 * (-x/2)
    torch.testing.assert_close(out[0, 6:], act[0, 6:])         # padding untouched


def test_noise_keeps_the_per_frame_error_size_but_not_its_direction():
    act = _act()
    fn = tol.ScaledError(HalfSAE(), 1.0, "noise")
    fn.start([10])
    err = fn(act)[0] - act[0]
    torch.testing.assert_close(err.norm(dim=-1), (act[0] / 2).norm(dim=-1))
    cos = torch.nn.functional.cosine_similarity(err, -act[0] / 2, dim=-1)
    assert cos.abs().mean() < 0.9


def test_keepmassive_leaves_massive_frames_clean():
    act = _act()
    fn = tol.ScaledError(HalfSAE(), 1.0, "keepmassive")
    fn.start([10])
    out = fn(act)
    torch.testing.assert_close(out[0, 3], act[0, 3])
    torch.testing.assert_close(out[0, 0], act[0, 0] / 2)


def test_bad_setting_is_refused():
    assert tol.parse_setting("noise:0.5") == ("noise", 0.5)
    with pytest.raises(Exception, match="KIND:SCALE"):
        tol.parse_setting("blur:1")
