"""The Cochlear tokens page lists `workbench tokens analyze` outputs of the workspace and counts in words."""
from __future__ import annotations

import numpy as np

from apps.pages import tokens as page


class _WS:
    def __init__(self, root):
        self.root = root

    def folders(self, kind):
        base = self.root / kind
        return sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []


def test_plural():
    assert page.plural(1, "frame") == "1 frame" and page.plural(2, "frame") == "2 frames"
    assert page.plural(0, "clip") == "0 clips"


def test_analyses_lists_folders_with_a_summary(tmp_path):
    (tmp_path / "tokens" / "units").mkdir(parents=True)
    (tmp_path / "tokens" / "units" / "summary.json").write_text("{}")
    (tmp_path / "tokens" / "half-written").mkdir()
    assert list(page.analyses(_WS(tmp_path))) == ["units"]
    section = page.analysis_section(_WS(tmp_path), {"analysis": "nope"})
    assert "no such token analysis" in str(section)  # a bad ?analysis= is named, the first one shown


def test_usage_matches_the_token_metrics():
    counts, stats = page.usage(np.array([3, 3, 5, 7]))
    assert stats["distinct tokens"] == 3 and stats["entropy (bits)"] == 1.5 and counts[3] == 2


def _summary(source, codes_used, purity):
    return {"source": source, "hook": "tokens.hook_ids", "frames": 100, "codebooks": 1, "frame_rate": 50.0,
            "usage": [{"codebook": 0, "frames": 100, "codes_used": codes_used, "entropy_bits": 3.0, "perplexity": 8.0}],
            "purity": [{"codebook": 0, "target": "phones", "frames": 100, "classes": 5, "purity": purity,
                        "purity_chance": 0.3, "majority": 0.3, "mi_bits": 1.0, "mi_chance_bits": 0.1,
                        "label_entropy_bits": 2.0, "mi_norm": 0.5}],
            "consistency": [{"codebook": 0, "slices": 2, "frames": 100, "consistency": 0.75}], "stability": None}


def test_comparison_table_has_one_row_per_analysis(tmp_path):
    import json

    for name, used, pur in [("a", 40, 0.6), ("b", 7, 0.4)]:
        (tmp_path / "tokens" / name).mkdir(parents=True)
        (tmp_path / "tokens" / name / "summary.json").write_text(json.dumps(_summary(f"src-{name}", used, pur)))
    table = page.comparison(_WS(tmp_path))[-1]
    rows = table.data
    assert [r["analysis"] for r in rows] == ["a", "b"] and [r["codes_used"] for r in rows] == [40, 7]
    assert [r["phones_purity"] for r in rows] == [0.6, 0.4] and rows[0]["consistency"] == 0.75
    assert page.comparison(_WS(tmp_path / "tokens" / "a")) == []  # fewer than two analyses: no table


def test_token_cochleagram_figure_orders_tokens_by_rank():
    from probes.tokens.figures import token_cochleagram_figure

    mean = np.arange(6 * 211, dtype=np.float32).reshape(6, 211)
    fig = token_cochleagram_figure({"codes": np.array([9, 4, 7, 1, 2, 3]), "counts": np.array([50, 40, 30, 20, 10, 5]),
                                    "mean": mean}, page.centre_hz(), top=4)
    heat = fig.data[0]
    assert list(heat.x) == ["#1: 9", "#2: 4", "#3: 7", "#4: 1"]
    np.testing.assert_array_equal(np.asarray(heat.z), mean[:4].T)  # channels down, tokens across
