"""The bench figure: one bar panel per headline figure, one bar per SAE (``bench.html``, and
``bench.png`` when kaleido is installed).

Example
-------
>>> write_bench_figure(pd.read_csv("work/bench/bench.csv"), "work/bench")     # doctest: +SKIP
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

PANELS = [("fvu", "FVU"), ("rel_error_median_no_massive", "rel. error (median, no massive)"), ("l0", "L0"),
          ("dead_frac", "dead fraction"), ("wer_change", "spliced WER change"), ("kl_mean", "decoder KL (nats)"),
          ("probe_phones_sae_k1", "phone probe, k=1"), ("probe_speaker_sae_k1", "speaker probe, k=1"),
          ("absorption_mean", "absorption"), ("tpp", "targeted erasure (TPP)"),
          ("consistency_hungarian_frac", "seed consistency (Hungarian)"),
          ("expl_frac_f1_ge_0.5", "explained, held-out F1 >= 0.5")]


def bench_figure(table: pd.DataFrame):
    """Plotly figure of the columns of :data:`PANELS` present in ``table``."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    panels = [(c, t) for c, t in PANELS if c in table and table[c].notna().any()]
    cols = 4
    nrows = max(1, -(-len(panels) // cols))
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=[t for _, t in panels])
    for i, (c, _) in enumerate(panels):
        fig.add_trace(go.Bar(x=table["name"].astype(str), y=table[c], showlegend=False),
                      row=i // cols + 1, col=i % cols + 1)
    held = "in-sample" if "in_sample" in table and table["in_sample"].astype(bool).any() else "held-out clips"
    fig.update_layout(title=f"SAE bench ({held})", height=300 * nrows, width=1400)
    return fig


def write_bench_figure(table: pd.DataFrame, out: str | os.PathLike) -> list[Path]:
    """``out/bench.html`` and, when kaleido can render it, ``out/bench.png``; returns the paths written."""
    from workbench.atomic import atomic_path

    out = Path(out)
    fig = bench_figure(table)
    written = [out / "bench.html"]
    with atomic_path(out / "bench.html") as tmp:
        fig.write_html(str(tmp), include_plotlyjs="directory")
    import importlib.util

    if importlib.util.find_spec("kaleido") is None:  # optional: the HTML is the figure
        return written
    try:
        with atomic_path(out / "bench.png") as tmp:
            fig.write_image(str(tmp), format="png")
        written.append(out / "bench.png")
    except (RuntimeError, OSError, ValueError) as e:  # kaleido present but cannot render: the HTML is the figure
        import logging

        logging.getLogger(__name__).warning("bench.png not written (%s); bench.html is the figure", e)
    return written
