"""Issue 19, defect 10: failures that stuck or vanished. A clip that fails in ``workbench cache`` is
reported, not counted as done, retried by a rerun, and the cache is not complete while it fails;
activations beyond float16's range are refused instead of stored as inf; an error or Ctrl-C in
SAE training stops the batch-prefetch thread."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from test_cache import TwoRateModel
from workbench.cache import build_cache
from workbench.corpus.types import Clip, Corpus

pytestmark = pytest.mark.usefixtures("one_thread")


def _tone(path: Path, hz: float, seconds: float = 0.4) -> None:
    t = np.arange(int(seconds * 16000)) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), 16000)


def _corpus(root: Path) -> Corpus:
    (root / "audio").mkdir(parents=True)
    for clip, hz in zip("abc", (220, 330, 440)):
        _tone(root / "audio" / f"{clip}.wav", hz)
    return Corpus([Clip(c, f"audio/{c}.wav", duration_s=0.4) for c in "abc"], root=root)


def test_failed_clip_is_reported_not_done_and_retried(tmp_path, capsys, monkeypatch):
    import workbench.audio
    from workbench.cli import main

    real, failures = workbench.audio.load_audio, []

    def flaky(path, *args, **kwargs):  # clip b fails once (a network share that hiccups, a file being copied)
        if Path(path).name == "b.wav" and not failures:
            failures.append(path)
            raise OSError(f"{path}: Input/output error")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(workbench.audio, "load_audio", flaky)
    corpus, out = _corpus(tmp_path / "corpus"), tmp_path / "cache"
    c = build_cache(TwoRateModel(), corpus, "*", out, batch_seconds=0.3, verbose=False)
    assert c.clip_ids == ["a", "c"] and list(c.skipped) == ["b"] and "Input/output error" in c.skipped["b"]
    assert c.meta["complete"] is False  # a cache with a failed clip is not complete
    assert main(["cache-info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "1 skipped, complete=False" in text and "failed clips (1" in text and "b: OSError" in text

    again = build_cache(TwoRateModel(), corpus, "*", out, batch_seconds=0.3, verbose=False)  # the rerun retries b
    assert again.clip_ids == ["a", "b", "c"] and again.skipped == {} and again.meta["complete"] is True
    assert (out / "errors.jsonl").read_text() == ""
    fresh = build_cache(TwoRateModel(), corpus, "*", tmp_path / "fresh", batch_seconds=0.3, verbose=False)
    for h in fresh.hooks:  # the same cache as one built without the failure
        np.testing.assert_array_equal(np.asarray(again.acts(h)), np.asarray(fresh.acts(h)))
    assert again.frames().equals(fresh.frames())


class LoudModel(TwoRateModel):
    """``slow.hook_out`` reaches about 1e6 (beyond float16's 65504); ``fast.hook_out`` stays in [-1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        with torch.no_grad():
            self.slow.weight.mul_(1e6)


def test_values_beyond_float16_are_refused_and_bfloat16_keeps_them(tmp_path):
    corpus = _corpus(tmp_path / "corpus")
    with pytest.raises(ValueError, match=r"slow.hook_out gives \|x\| up to .* on clip 'a'.*--dtype bfloat16"):
        build_cache(LoudModel(), corpus, "*", tmp_path / "fp16", verbose=False)
    c = build_cache(LoudModel(), corpus, "*", tmp_path / "bf16", dtype="bfloat16", verbose=False)
    slow = c.load("slow.hook_out")
    assert torch.isfinite(torch.as_tensor(slow)).all() and float(np.abs(slow).max()) > 1e5
    ok = build_cache(TwoRateModel(), corpus, "*", tmp_path / "fine", verbose=False)  # in range: float16 as before
    assert ok.meta["complete"] is True


def _loader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "cache-loader" and t.is_alive()]


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_training_error_stops_the_prefetch_thread(monkeypatch, error):
    import importlib

    train_mod = importlib.import_module("sae.train")  # the module (sae.train is also the function)

    calls = []
    real = train_mod._train_step

    def step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise error("stop here")
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "_train_step", step)
    x = torch.randn(4096, 8, generator=torch.Generator().manual_seed(0))
    before = len(_loader_threads())
    with pytest.raises(error, match="stop here") as info:
        train_mod.train({"h": x}, ["h"], train_mod.TrainConfig(expansion=2, k=2, tokens=4096, batch_size=64,
                                                               dtype="float32", threads=1), verbose=False)
    assert info.traceback  # the traceback (and the generator in its frames) is still alive here
    assert len(_loader_threads()) == before, "the prefetch thread outlived the training call"
