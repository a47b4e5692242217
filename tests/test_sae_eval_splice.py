"""Spliced-in effect: per-clip WER distribution (a looping clip is found, not averaged away), clips
over Whisper's 30 s window, and a model without a decoder (HuBERT)."""
from __future__ import annotations

import numpy as np
import pytest

from sae.splice import spliced_effect, wer_distribution
from fake_saes import Identity, Recorder, Zero

pytestmark = pytest.mark.usefixtures("one_thread")
HOOK = "encoder.blocks.1.hook_resid_post"
SR = 16000


@pytest.fixture(scope="module")
def tiny():
    from workbench.models.whisper import random_whisper

    return random_whisper(seed=0)


class Scripted:
    """A Whisper whose transcripts are scripted per clip (clean vs spliced); everything else is real."""

    tokenizer = "scripted"

    def __init__(self, base, clean, spliced):
        self.base, self.clean, self.spliced = base, clean, spliced

    def __getattr__(self, name):
        return getattr(self.base, name)

    def transcribe(self, clip, interventions=None, max_new_tokens=None):
        if isinstance(clip, list):  # a batch, as the real adapter takes it
            return [self._one(c, interventions) for c in clip]
        return self._one(clip, interventions)

    def _one(self, clip, interventions):
        i = int(round(len(clip) / SR)) - 1  # clip i lasts i + 1 seconds
        return (self.spliced if interventions else self.clean)[i]


def _clips(n, seed=0):
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(SR * (i + 1))).astype(np.float32) for i in range(n)]


def test_per_clip_wer_finds_the_looping_clip(tiny):
    refs = ["the cat sat on the mat", "a dog ran in the park", "she sells sea shells",
            "it is raining today", "we went home early"]
    spliced = list(refs)
    spliced[1] = "a dog ran in the dark"             # one substitution in six words
    spliced[3] = " ".join(["god"] * 40)              # a repetition loop: 4 subs + 36 insertions over 4 words
    model = Scripted(tiny, clean=refs, spliced=spliced)
    res = spliced_effect(model, Identity(), HOOK, _clips(5), refs, verbose=False,
                         ids=[f"c{i}" for i in range(5)], domains=["speech"] * 5)
    dist = res["wer_distribution"]
    assert res["wer_clean"] == 0.0 and dist["clips"] == 5
    assert dist["median"] == 0.0 and dist["clips_worse"] == 2 and dist["clips_worse_10pt"] == 2
    assert dist["max"] == pytest.approx(40 / 4) and dist["worst"][0]["clip_id"] == "c3"
    assert dist["worst"][0]["length_ratio"] == pytest.approx(10.0)
    assert dist["worst"][1]["clip_id"] == "c1" and dist["worst"][1]["wer_change"] == pytest.approx(1 / 6)
    table = res["clips_table"]
    assert list(table["clip_id"]) == [f"c{i}" for i in range(5)] and table["wer_change"].iloc[0] == 0.0
    # pooled over words, the loop is a big mean; the median says most clips did not change
    assert res["wer_change"] == pytest.approx((1 + 40) / 24)


def test_per_clip_null_no_change_when_transcripts_survive(tiny):
    refs = ["one two three", "four five six"]
    model = Scripted(tiny, clean=refs, spliced=refs)
    res = spliced_effect(model, Identity(), HOOK, _clips(2), refs, verbose=False)
    d = res["wer_distribution"]
    assert d["max"] == 0.0 and d["clips_worse"] == 0 and res["wer_change"] == 0.0
    assert wer_distribution(res["clips_table"].drop(columns=["wer_change"])) == {}


def test_splice_covers_every_real_frame_of_a_clip_over_30s(tiny):
    """65 s = windows of 30 + 30 + 5 s: every real frame (50 Hz) is spliced, padding never is."""
    clip = (0.1 * np.random.default_rng(3).standard_normal(65 * SR)).astype(np.float32)
    rec = Recorder()
    res = spliced_effect(tiny, rec, HOOK, [clip], verbose=False)
    assert rec.rows == tiny.n_frames(HOOK, len(clip)) == 3250
    assert res["rel_error_hook"] == 0.0 and res["rel_error_output"] < 1e-6
    # a destructive "SAE" changes the output in the last window too (it was spliced, not skipped)
    base = tiny.encoder_output(clip)
    from sae.splice import SpliceFn, _real_frames

    fn = SpliceFn(Zero())
    fn.start(_real_frames(tiny, HOOK, len(clip)))
    with tiny.hooks({HOOK: fn}):
        alt = tiny.encoder_output(clip)
    assert alt.shape == base.shape == (3250, 64)
    for a, b in ((0, 1500), (1500, 3000), (3000, 3250)):
        assert (alt[a:b] - base[a:b]).norm() > 0.1 * base[a:b].norm()
    assert spliced_effect(tiny, Zero(), HOOK, [clip], verbose=False)["rel_error_hook"] == pytest.approx(1.0)


def test_splice_on_a_model_without_decoder():
    """HuBERT (random-init): relative errors of the last hook point, per domain; no WER keys."""
    from workbench.models.hubert import random_hubert

    model = random_hubert("hubert", seed=0)
    hook = "encoder.blocks.0.hook_resid_post"
    clips = _clips(3)
    ident = spliced_effect(model, Identity(), hook, clips, ["text"] * 3, verbose=False,
                           domains=["speech", "music", "music"])
    assert ident["rel_error_hook"] == 0.0 and ident["rel_error_output"] < 1e-5
    assert "wer_clean" not in ident and set(ident["per_domain"]) == {"speech", "music"}
    zero = spliced_effect(model, Zero(), hook, clips, verbose=False)
    assert zero["rel_error_hook"] == pytest.approx(1.0) and zero["rel_error_output"] > 0.05
    assert ident["output"] == zero["output"] == model.hook_points[-1]


def test_clean_memo_reuses_clean_transcripts_across_saes(tiny):
    refs = ["one two three", "four five six"]
    calls = []

    class Counting(Scripted):
        def transcribe(self, clip, interventions=None, max_new_tokens=None):
            calls.extend([interventions is None] * (len(clip) if isinstance(clip, list) else 1))  # per clip decoded
            return super().transcribe(clip, interventions)

    model, memo = Counting(tiny, clean=refs, spliced=["one two", "four five six"]), {}
    first = spliced_effect(model, Identity(), HOOK, _clips(2), refs, verbose=False, ids=["a", "b"], clean_memo=memo)
    again = spliced_effect(model, Zero(), HOOK, _clips(2), refs, verbose=False, ids=["a", "b"], clean_memo=memo)
    assert calls.count(True) == 2 and calls.count(False) == 4  # clean decoded once per clip, spliced every time
    assert first["wer_change"] == again["wer_change"] == pytest.approx(1 / 6)
    assert again["rel_error_output"] > first["rel_error_output"]  # the memo holds the clean output, not the spliced one
