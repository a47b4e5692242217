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
