"""One markdown table of every steering method and gate: dev sweep beside held-out evaluation.

Reads ``eval.json`` files written by ``workbench steer eval`` (each holds plain decoding, the two gates and
one or more artifacts) and each artifact's ``steering.json`` (its dev sweep's chosen point), and prints one
row per (model, method, gate): dev hallucination rate and WER change at the chosen setting, held-out
hallucinated clips, relative drop [95% CI], speech WER change [95% CI] and whispered-speech WER change
(plain and capped per clip at its reference length, :func:`sae.steer.metrics.capped_wer`). Rows that
several files share (plain decoding, the gates) are printed once per model, from the first file.

Usage (from the repository root)::

    PYTHONPATH=$PWD .venv/bin/python benchmarks/steer_table.py \\
        tiny.en=work/steer27/steering/tiny_vector/eval/eval.json base=work/steer27/steering/base_vector/eval/eval.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from sae.steer.metrics import capped_wer

GATES = ("no_speech_gate", "vad_gate")


def _pts(v, ci=None) -> str:
    if v is None:
        return "-"
    s = f"{100 * v:+.1f}"
    return s + (f" [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]" if ci else "")


def _dev(path: str | None) -> tuple[str, str, str]:
    """(chosen setting, dev hallucination base -> chosen, dev WER change) from the artifact's sweep."""
    if not path or not (Path(path) / "steering.json").is_file():
        return "-", "-", "-"
    st = json.loads((Path(path) / "steering.json").read_text())
    sw, c = st.get("sweep", {}), st.get("sweep", {}).get("chosen", {})
    if c.get("baseline"):
        return "none chosen (N = 0)", f"{sw['baseline']['hallucination_rate']:.2f} (no edit)", "+0.0"
    what = f"s = {c['strength']:g}" + (f", N = {int(c['n_features'])}" if c.get("n_features") else "")
    return what, f"{sw['baseline']['hallucination_rate']:.2f} -> {c['hallucination_rate']:.2f}", _pts(c.get("wer_capped_change"))


def rows(label: str, file: str, seen: set) -> list[list[str]]:
    res = json.loads(Path(file).read_text())
    clips, out = res["clips"], []
    whisp = [c for c in clips if c.get("condition") == "whispered"]
    base_capped = capped_wer([c["baseline"] for c in whisp], [c["reference"] for c in whisp]) if whisp else None
    for name in res["conditions"]:
        method = name.split("+")[0]
        gate = name[len(method) + 1:] if "+" in name else ("" if method != name or name not in GATES else name)
        if method in GATES:
            method, gate = "baseline", method
        m, info = res[name], res["methods"].get(method, {})
        key = (label, info.get("path") or method, gate)  # an artifact (or plain decoding) and gate, once per model
        if key in seen:
            continue
        seen.add(key)
        what = "plain decoding" if method == "baseline" else Path(info.get("path") or method).name
        if info.get("gate", "none") != "none":
            what += f" ({info['gate']}-gated)"
        setting, dev_h, dev_w = _dev(info.get("path")) if not gate and method != "baseline" else ("", "", "")
        sp = res["by_condition"].get("speech", {}).get(name, {})
        wh = res["by_condition"].get("whispered", {}).get(name, {})
        capped = capped_wer([c[name] for c in whisp], [c["reference"] for c in whisp]) if whisp else None
        drop = m.get("hallucination_drop")
        out.append([label, what, gate or "none", setting, dev_h, dev_w,
                    f"{m['hallucinated']}/{m['n_nonspeech']}",
                    "-" if drop is None else f"{100 * drop:.0f}% [{100 * m['hallucination_drop_ci'][0]:.0f}, "
                                              f"{100 * m['hallucination_drop_ci'][1]:.0f}]",
                    _pts(sp.get("wer_change"), sp.get("wer_change_ci")), _pts(wh.get("wer_change")),
                    _pts(None if capped is None or base_capped is None else capped - base_capped)])
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("evals", nargs="+", help="LABEL=path/to/eval.json (repeat; shared rows printed once per label)")
    args = p.parse_args(argv)
    head = ["model", "method (artifact)", "added gate", "chosen on dev", "dev hallucination", "dev WER change (pts, capped)",
            "held-out hallucinated", "drop [95% CI]", "speech WER change (pts) [95% CI]", "whispered WER change",
            "whispered capped"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    seen: set = set()
    for spec in args.evals:
        label, file = spec.split("=", 1)
        for r in rows(label, file, seen):
            print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
