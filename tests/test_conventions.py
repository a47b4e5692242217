"""workbench.conventions: one test per rule (groups, hook globs, p-values, frame grids).

Frame centres measured by perturbation on the models are in tests/test_frame_centres.py.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.conventions import (
    FrameGrid,
    UnknownHookError,
    conv_grid,
    frame_groups,
    group_of,
    groups_of,
    permutation_p,
    resolve_hooks,
)
from workbench.corpus import Clip


def _segments():
    """Four 5-s segments of each of four recordings (no speaker), plus two voices with two recordings each."""
    clips = [Clip(f"rec{r}_seg{j}", "x.flac", "music", extra={"source_id": f"rec{r}"}) for r in range(4) for j in range(4)]
    clips += [Clip(f"v{v}_take{t}", "x.flac", "speech", speaker=f"voice{v}", extra={"source_id": f"take{v}{t}"})
              for v in range(2) for t in range(2)]
    return clips


def test_group_rule_source_then_speaker_then_clip():
    a = Clip("a", "a.wav", speaker="s1", extra={"source_id": "rec1"})
    assert group_of(a) == "rec1"
    assert group_of(Clip("b", "b.wav", speaker="s1")) == "s1"
    assert group_of(Clip("c", "c.wav")) == "c"
    clips = _segments()
    g = dict(zip([c.id for c in clips], groups_of(clips)))
    assert len({g[f"rec0_seg{j}"] for j in range(4)}) == 1  # segments of one recording: one group
    assert g["v0_take0"] == g["v0_take1"] != g["v1_take0"]  # two recordings of one voice: one group
    assert len(set(g.values())) == 6
    by_clip = dict(zip([c.id for c in clips], groups_of(clips, by="clip")))
    assert by_clip["v0_take0"] != by_clip["v0_take1"] and len(set(by_clip.values())) == 8
    # a frame table gives every row its clip's group, the same labels as groups_of
    frames = pd.DataFrame({"clip_id": [c.id for c in clips for _ in range(3)],
                           "speaker": [c.speaker for c in clips for _ in range(3)],
                           "source_id": [c.extra["source_id"] for c in clips for _ in range(3)]})
    assert list(frame_groups(frames)[::3]) == groups_of(clips)
    with pytest.raises(ValueError, match="group by"):
        groups_of(clips, by="room")


def test_sae_holdout_keeps_segments_of_one_recording_together():
    """Defect 3: the SAE hold-out ignored source_id, so segments of one recording sat on both sides."""
    from sae.holdout import split_clips

    clips = _segments()
    table = pd.DataFrame({"clip_id": [c.id for c in clips], "domain": [c.domain for c in clips],
                          "speaker": [c.speaker for c in clips],
                          "source_id": [c.extra.get("source_id") for c in clips]})
    for by in ("speaker", "clip"):
        for seed in range(5):
            split = split_clips(table, fraction=0.3, by=by, seed=seed)
            held = set(split["heldout_clips"])
            for r in range(4):
                sides = {f"rec{r}_seg{j}" in held for j in range(4)}
                assert len(sides) == 1, (by, seed, r)
            if by == "speaker":
                assert ("v0_take0" in held) == ("v0_take1" in held)


def test_probe_folds_keep_segments_of_one_recording_together():
    """Defect 3: probes grouped by a frame-table column (speaker or clip id), not by recording."""
    from probes.splits import grouped_kfold, split_groups

    clips = _segments()
    frames = pd.DataFrame({"clip_id": [c.id for c in clips for _ in range(2)],
                           "speaker": [c.speaker for c in clips for _ in range(2)],
                           "source_id": [c.extra["source_id"] for c in clips for _ in range(2)]})
    for split in ("clip", "speaker"):
        groups = split_groups(frames, split)
        source = frames["source_id"].to_numpy()
        for train, test in grouped_kfold(groups, folds=3):
            assert not set(source[train]) & set(source[test])


def test_resolve_hooks_one_rule():
    hooks = ["enc.blocks.0.out", "enc.blocks.1.out", "enc.ln", "dec.blocks.0.out"]
    assert resolve_hooks(["enc.blocks.1.out", "*.blocks.0.*"], hooks) == ["enc.blocks.0.out", "enc.blocks.1.out",
                                                                          "dec.blocks.0.out"]
    assert resolve_hooks("all", hooks) == hooks
    with pytest.raises(UnknownHookError, match="'enc.nope' matches no hook of cache x"):
        resolve_hooks(["enc.*", "enc.nope"], hooks, what="cache x")


def test_permutation_p_counts_the_observed_draw():
    rng = np.random.default_rng(0)
    null = rng.standard_normal((999, 3))
    p = permutation_p(np.array([10.0, -10.0, 0.0]), null)
    assert p[0] == pytest.approx(1 / 1000) and p[1] == 1.0 and 0.4 < p[2] < 0.6
    # under the null the p-value is uniform: P(p <= 0.05) ~ 0.05
    draws = rng.standard_normal((2000, 100))
    ps = permutation_p(draws[:, 0], draws[:, 1:].T)
    assert abs((ps <= 0.05).mean() - 0.05) < 0.02


def test_frame_grid_midpoint_is_the_centre():
    g = conv_grid([(3, 1, 1), (3, 2, 1)], FrameGrid(0.0, 0.01))  # Whisper's conv stem on 10 ms mel frames
    assert g == FrameGrid(0.0, 0.02)
    t = g.times(50)
    assert np.allclose(t.mean(1), g.centres(50)) and np.allclose(t[40].mean(), 0.800)
    assert g.frame_at(0.809) == 40 and g.frame_at(0.811) == 41
