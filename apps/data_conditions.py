"""The :class:`~apps.data.Workspace` readers of noise-condition runs (``workbench conditions``, kept under
``WORKSPACE/conditions/NAME/``): the per-layer CKA and probe-robustness tables, and one utterance's
clean, noisy and enhanced versions with their audio URLs and transcripts.

A run folder holds what :mod:`probes.enhancement` writes (``similarity.csv``, ``robustness.csv``,
``wer.csv``, ``quality.csv``, ``transcripts.csv``, ``summary.json``, ``enhanced/ENHANCER/NOISY_ID.flac``).
The clean and noisy audio live in the mixed corpus (``workbench corpus mix``); it is the workspace corpus
whose folder is ``summary.json``'s ``corpus``, or else the one holding the run's noisy clips. Audio is
served only from inside the workspace (:meth:`Workspace.url`). A mixin of :class:`apps.data.Workspace`.

Example
-------
>>> ws = Workspace("workspace/demo")                          # doctest: +SKIP
>>> run = ws.conditions_run("noisy")                          # doctest: +SKIP
>>> run["similarity"].pivot(index="hook", columns="condition", values="cka_no_massive")  # doctest: +SKIP
>>> [(v["role"], v["condition"], v["text"]) for v in ws.condition_versions("noisy", "speech_jfk")]  # doctest: +SKIP
[('clean', 'clean', 'And so my ...'), ('noisy', 'noise_0db', '...'), ('enhanced', 'noise_0db+nsnet2', '...')]
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

TABLES = ("similarity", "robustness", "wer", "quality", "transcripts")


class ConditionRuns:
    """Readers of ``conditions/NAME`` (methods of :class:`apps.data.Workspace`)."""

    def conditions_run(self, name) -> dict:
        """``{"path", "summary", "hooks", TABLE: DataFrame or None for each of TABLES}`` of ``conditions/NAME``
        (``name`` goes through :meth:`part_dir`); a run with neither similarity.csv nor robustness.csv
        is a :class:`~apps.data.PartError` naming the folder."""
        from apps.data import PartError

        path = self.part_dir("conditions", name)
        out: dict = {"path": path}
        for t in TABLES:
            f = path / f"{t}.csv"
            # a run without enhancers writes an empty quality.csv: no table, not an error
            blank = f.is_file() and not f.read_bytes()[:4096].strip()
            out[t] = self.table(f, f"conditions run {name}") if f.is_file() and not blank else None
        out["summary"] = self.json(path / "summary.json", f"conditions run {name}") if (path / "summary.json").is_file() else {}
        if out["similarity"] is None and out["robustness"] is None:
            raise PartError(f"conditions run {name}: no similarity.csv or robustness.csv in {path} (not written yet?)")
        seen = [h for t in ("similarity", "robustness") if out[t] is not None and "hook" in out[t]
                for h in out[t]["hook"]]
        hooks = [h for h in (out["summary"].get("hooks") or []) if h in set(seen)]
        out["hooks"] = hooks + [h for h in dict.fromkeys(seen) if h not in hooks]
        return out

    def _describe_conditions(self, path: Path) -> dict:
        """Key figures of a run for the workspace page."""
        run = self.conditions_run(path.name)
        s = run["summary"]
        out = {"model": s.get("model"), "enhancers": ", ".join(s.get("enhancers") or []) or None, "layers": len(run["hooks"])}
        for enh, gain in (s.get("si_snr_improvement_db") or {}).items():
            out[f"SI-SNR gain {enh} (dB)"] = gain
        return out

    def conditions_corpus(self, name):
        """The workspace corpus the run ``name`` mixed (a :class:`~workbench.corpus.Corpus`), or None."""
        from apps.data import PartError

        run = self.conditions_run(name)
        want = run["summary"].get("corpus")
        folders = self.folders("corpora")
        if want:
            same = [p for p in folders if p.resolve() == Path(want).resolve()]
            folders = same + [p for p in folders if p not in same]
        noisy = set(run["quality"]["clip"]) if run["quality"] is not None and "clip" in run["quality"] else set()
        for p in folders:
            try:
                corpus = self.corpus(p.name)
            except PartError:
                continue
            ids = {c.id for c in corpus}
            if (want and p.resolve() == Path(want).resolve()) or (noisy and noisy <= ids):
                return corpus
        return None

    def condition_utterances(self, name) -> list[str]:
        """The clean ids (utterances) of run ``name`` that the clip view can show."""
        corpus = self.conditions_corpus(name)
        if corpus is not None:
            return list(dict.fromkeys(c.extra["clean_id"] for c in corpus if c.extra.get("clean_id")))
        tr = self.conditions_run(name)["transcripts"]
        return list(dict.fromkeys(tr["clean_id"].dropna().astype(str))) if tr is not None and "clean_id" in tr else []

    def condition_versions(self, name, clean_id) -> list[dict]:
        """Every version of utterance ``clean_id`` in run ``name``: dicts with ``role`` (clean | noisy |
        enhanced), ``condition``, ``clip``, ``url`` (None when the audio lies outside the workspace or is
        missing), ``text`` (the run's transcript, None without transcripts.csv), ``reference``,
        ``si_snr_db`` and ``enhancer``. ``clean_id`` must be one of :meth:`condition_utterances`."""
        from apps.data import PartError

        valid = self.condition_utterances(name)
        if not isinstance(clean_id, str) or clean_id not in valid:
            shown = ", ".join(valid[:20]) + (f" (and {len(valid) - 20} more)" if len(valid) > 20 else "")
            raise PartError(f"no utterance {repr(clean_id)[:80]} in conditions run {name}; valid: {shown or 'none'}")
        run, corpus = self.conditions_run(name), self.conditions_corpus(name)
        said = {}
        if run["transcripts"] is not None:
            said = dict(zip(run["transcripts"]["clip"].astype(str), run["transcripts"]["text"].fillna("").astype(str)))
        q = run["quality"]
        qual = {} if q is None or "clip" not in q else {(r.clip, r.enhancer): r for r in q.itertuples()}
        enh_dir = run["path"] / "enhanced"
        enhancers = sorted(p.name for p in enh_dir.iterdir() if p.is_dir()) if enh_dir.is_dir() else []
        clips = [c for c in (corpus or []) if c.extra.get("clean_id") == clean_id]
        clips.sort(key=lambda c: (c.extra.get("condition") != "clean", -(c.extra.get("snr_db") or 0.0), c.id))
        out = []
        for c in clips:
            cond = c.extra.get("condition")
            row = {"role": "clean" if cond == "clean" else "noisy", "condition": cond, "clip": c.id,
                   "url": self.url(corpus.audio_path(c)) if corpus.audio_path(c).is_file() else None,
                   "text": said.get(c.id), "reference": c.transcript, "enhancer": None, "si_snr_db": None}
            if cond != "clean":
                first = next((qual[(c.id, e)] for e in enhancers if (c.id, e) in qual), None)
                row["si_snr_db"] = None if first is None else float(first.si_snr_noisy_db)
            out.append(row)
            for e in enhancers if cond != "clean" else []:
                f = enh_dir / e / f"{c.id}.flac"
                if not f.is_file():
                    continue
                r = qual.get((c.id, e))
                out.append({"role": "enhanced", "condition": f"{cond}+{e}", "clip": f"{c.id}+{e}",
                            "url": self.url(f), "text": said.get(f"{c.id}+{e}"), "reference": c.transcript,
                            "enhancer": e, "si_snr_db": None if r is None else float(r.si_snr_enhanced_db)})
        return out


def layer_table(df: pd.DataFrame | None, hooks, value: str) -> pd.DataFrame:
    """``hook x condition`` table of ``value`` in layer order (empty without the table or the column)."""
    if df is None or value not in df or "hook" not in df:
        return pd.DataFrame()
    return df.pivot_table(index="hook", columns="condition", values=value, sort=False).reindex(list(hooks))
