"""`workbench sae bench` end to end on a tiny random-init Whisper cache: two SAEs (one saved in the
dictionary_learning ae.pt layout) -> bench.csv / bench.json / bench.html and explanations.csv per SAE."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from workbench.cli import main
from workbench.corpus.types import Clip, Corpus, Segment

HOOK = "encoder.blocks.1.hook_resid_post"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    from workbench.cache import build_cache
    from workbench.models.whisper import random_whisper

    root = tmp_path_factory.mktemp("corpus")
    (root / "audio").mkdir()
    rng = np.random.default_rng(0)
    clips = []
    t = np.arange(32000) / 16000
    for i in range(12):
        if i % 3:  # "speech": tones with two phone-like halves
            audio, dom = 0.3 * np.sin(2 * np.pi * (180 + 40 * i) * t) * (1 + 0.5 * np.sin(2 * np.pi * 4 * t)), "speech"
        else:
            audio, dom = 0.2 * rng.standard_normal(len(t)), "music"
        sf.write(root / "audio" / f"c{i}.wav", audio.astype(np.float32), 16000)
        tiers = {"phones": [Segment(0, 1, "AA"), Segment(1, 2, "S")]} if dom == "speech" else {}
        clips.append(Clip(f"c{i}", f"audio/c{i}.wav", domain=dom, duration_s=2.0, tiers=tiers,
                          speaker=f"s{i % 4}" if dom == "speech" else None))
    return build_cache(random_whisper(seed=0), Corpus(clips, root=root), HOOK, root / "cache", verbose=False)


def test_bench_cli_two_saes_with_an_ae_pt(cache, tmp_path):
    from sae.io import load_sae, save_sae

    run = tmp_path / "run"
    assert main(["sae", "train", "--cache", str(cache.root), "--hook", HOOK, "--expansion", "4", "--k", "8",
                 "--tokens", "8192", "--batch-size", "512", "--holdout-clips", "0.4", "--holdout-by", "clip",
                 "--quiet", "--threads", "1", "--out", str(run)]) == 0
    dl = tmp_path / "dl"
    save_sae(load_sae(run / HOOK), dl, format="dictionary_learning")
    for f in ("holdout.json", "train_config.json"):  # same split and training filter: same figures expected
        (dl / f).write_text((run / f).read_text())
    out = tmp_path / "bench"
    assert main(["sae", "bench", "--sae", str(run), str(dl), "--cache", str(cache.root), "--out", str(out),
                 "--hook", HOOK, "--quiet"]) == 0
    table = pd.read_csv(out / "bench.csv")
    assert list(table["name"]) == ["run/" + HOOK, "dl"]
    assert list(table["format"]) == ["saelens", "dictionary_learning"]
    assert not table["in_sample"].any()
    # the same weights in two layouts give the same figures
    for col in ("fvu", "l0", "dead_frac", "rel_error_median", "expl_explained_frac"):
        assert table[col].iloc[0] == pytest.approx(table[col].iloc[1], rel=1e-4, abs=1e-6), col
    assert table["consistency_with"].tolist() == ["dl", "run/" + HOOK]
    assert table["consistency_iou_frac"].iloc[0] == pytest.approx(1.0)
    assert "probe_phones_sae_k1" in table and table["probe_phones_sae_k1"].notna().all()
    expl = pd.read_csv(out / "run" / HOOK / "explanations.csv")
    assert list(expl.columns[:5]) == ["feature", "explanation", "precision", "recall", "f1"]
    assert len(expl) == 4 * 64 and (out / "dl" / HOOK / "explanations.csv").is_file()
    assert (out / "bench.html").is_file()
    doc = json.loads((out / "bench.json").read_text())
    assert len(doc["rows"]) == 2 and "sparse_probing" in doc["details"]["dl"]
