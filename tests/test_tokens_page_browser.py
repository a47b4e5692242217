"""The Cochlear tokens page in headless Chromium on a workspace with two token analyses (cochlear tokens
and random-init DAC codes): the comparison table, each analysis's plots and tables, and every token's
mean cochleagram heatmap, for a token source that is not a cochlear one too.
``WORKBENCH_SCREENSHOTS=docs/screenshots`` keeps the PNG (tokens_analyses.png)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ci import require

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

require((shutil.which("chromium") or shutil.which("google-chrome")) and shutil.which("chromedriver"),
        "chromium and chromedriver", "apt-get install -y chromium chromium-driver")
import selenium  # noqa: E402,F401  (dash[testing], declared in the dev extra: missing must fail)


@pytest.fixture(scope="module")
def token_ws(tmp_path_factory) -> Path:
    from probes.tokens.analyze import analyze_cache
    from workbench.cache import build_cache
    from workbench.corpus.nonspeech import synth_nonspeech
    from workbench.models import load
    from workbench.models.codec import random_codec

    ws = tmp_path_factory.mktemp("tok_ws")
    corpus = synth_nonspeech(4, ws / "corpora" / "c", seed=0, duration_s=2.0,
                             kinds=["pink_noise", "tone", "clicks", "chord"])
    caches = ws / "caches"
    tokens = build_cache(load("auristream-tiny?n_codes=32&n_layer=2&n_embd=32"), corpus, ["tokens.hook_ids"],
                         caches / "cochlear", verbose=False)
    build_cache(load("cochleagram"), corpus, ["cochleagram.hook_out"], caches / "cochleagram", verbose=False)
    codes = build_cache(random_codec("dac"), corpus, ["quantizer.hook_codes"], caches / "dac", verbose=False)
    analyze_cache(tokens, ws / "tokens" / "cochlear", robust_tests=False)
    analyze_cache(codes, ws / "tokens" / "dac", robust_tests=False)
    return ws


def test_tokens_page_shows_every_analysis(dash_duo, token_ws, tmp_path):
    from apps import create_app
    from test_app_pages import figure_traces, no_console_errors, screenshot

    dash_duo.start_server(create_app(token_ws), host="127.0.0.1")
    dash_duo.driver.set_window_size(1400, 1000)
    dash_duo.wait_for_page(dash_duo.server_url + "/tokens?analysis=dac")
    dash_duo.wait_for_contains_text("#tok-analysis-info", "random-dac", timeout=30)
    compare = dash_duo.find_element("#tok-compare").text
    assert "cochlear" in compare and "dac" in compare
    dash_duo.wait_for_element("#tok-analysis-coch .js-plotly-plot", timeout=20)
    heat = figure_traces(dash_duo, "tok-analysis-coch")
    assert len(heat) == 1 and len(heat[0]["x"]) > 4  # one column per frequent DAC code
    assert "usage.csv" in dash_duo.find_element("#tok-analysis-tables").text
    assert "not computed (run without --no-model)" in dash_duo.find_element("#tok-analysis-tables").text
    dash_duo.wait_for_element("#tok-clip-graph .js-plotly-plot", timeout=30)  # the cochlear token view above
    no_console_errors(dash_duo)
    screenshot(dash_duo, "tokens_analyses", tmp_path)
