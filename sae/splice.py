"""Spliced-in effect: run the model with a hook's activations replaced by the SAE reconstruction.

For Whisper (models with ``transcribe``): word error rate with and without the splice on clips
with transcripts (jiwer), pooled over the clips and per clip, and the relative error of the final
encoder output. For other models: the relative error of the last hook point. Only real frames are
replaced; Whisper's 30 s padding is left as the model made it (the SAE never saw padding in
training); clips over 30 s are spliced window by window.

The per-clip table (:func:`clip_table`, written as ``splice_clips.csv`` by ``sae eval``) and
its summary (:func:`wer_distribution`: median and quantiles of the per-clip WER change, the worst
clips with their transcripts) keep one clip that the spliced model turns into a repetition loop
from hiding inside a pooled mean.

Example
-------
>>> model = workbench.models.load("whisper-tiny.en")                                 # doctest: +SKIP
>>> spliced_effect(model, sae, "encoder.blocks.3.hook_resid_post", clips, texts)     # doctest: +SKIP
{'wer_clean': 0.05, 'wer_spliced': 0.09, 'wer_change': 0.04, 'rel_error_output': 0.2, ...}
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from workbench.text import normalize_text  # noqa: F401 (re-exported: sae.steer and benchmarks import it here)


def _real_frames(model, hook: str, n_samples: int) -> list[int] | None:
    """Real frames per forward row the hook sees for one clip (the adapter's ``window_frames``),
    or None when every position is real."""
    if getattr(model, "is_decoder_hook", lambda h: False)(hook):
        return None
    try:
        return model.window_frames(hook, n_samples)
    except (ValueError, NotImplementedError):
        return None


class SpliceFn:
    """``act -> act`` replacing the real frames of each window by ``sae(act)``; also measures the
    reconstruction's relative error there. Set ``windows`` before each clip.

    ``norm_limit``: frames whose norm exceeds it (the massive frames an SAE was trained without,
    :mod:`sae.massive`) pass through unreconstructed; ``passed``/``seen`` count them.
    """

    def __init__(self, sae, mode: str | None = None, norm_limit: float | None = None) -> None:
        self.sae, self.mode, self.norm_limit = sae, mode, norm_limit
        self.windows: list[int] | None = None
        self._queue: list[int] = []
        self.sq_err = self.sq_norm = 0.0
        self.passed = self.seen = 0

    def start(self, windows: list[int] | None) -> None:
        self.windows = windows
        self._queue = list(windows or [])

    @torch.no_grad()
    def __call__(self, act: torch.Tensor) -> torch.Tensor:
        new = act.clone()
        rows = act.reshape(-1, *act.shape[-2:]) if act.dim() >= 3 else act.reshape(1, *act.shape)
        out = new.reshape(rows.shape)
        for b in range(rows.shape[0]):
            n = self._queue.pop(0) if self._queue else (None if self.windows is None else 0)
            if self.windows is not None and n == 0:
                continue  # a repeated forward (e.g. generation) past the windows we were told about
            n = rows.shape[1] if n is None else min(n, rows.shape[1])
            x = rows[b, :n].float()
            rec = self.reconstruct(x)
            if self.norm_limit is not None:
                big = torch.linalg.vector_norm(x, dim=-1) > self.norm_limit
                rec = torch.where(big[:, None], x, rec)
                self.passed += int(big.sum())
            self.seen += int(n)
            self.sq_err += float((rec - x).pow(2).sum())
            self.sq_norm += float(x.pow(2).sum())
            out[b, :n] = rec.to(act.dtype)
        return new

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """What replaces the real frames ``x [n, d]``: the SAE's reconstruction (subclasses may alter it)."""
        return self.sae(x, self.mode)

    @property
    def rel_error(self) -> float:
        return math.sqrt(self.sq_err / self.sq_norm) if self.sq_norm > 0 else float("nan")


def _output_hook(model) -> str | None:
    if hasattr(model, "encoder_output"):
        return None
    # the last float hook: integer tracks (codec codes, token ids) are indices, not vectors to compare
    return [h for h in model.hook_points if h not in model.integer_hooks][-1]


@torch.no_grad()
def _outputs(model, audio: np.ndarray, out_hook: str | None) -> torch.Tensor:
    if out_hook is None:
        return model.encoder_output(audio).float()
    return model.run_with_cache(audio, [out_hook])[out_hook].float()


def _clip_wer(ref: str, hyp: str) -> float:
    import jiwer

    if not ref:
        return float("nan")
    return float(jiwer.wer(ref, hyp)) if hyp else 1.0


def spliced_effect(model, sae, hook: str, audio: Sequence[np.ndarray], transcripts: Sequence[str | None] | None = None,
                   mode: str | None = None, verbose: bool = True, ids: Sequence[str] | None = None,
                   domains: Sequence[str] | None = None, worst: int = 5, groups: Sequence[str] | None = None,
                   clean_memo: dict | None = None, norm_limit: float | None = None) -> dict:
    """Effect of splicing ``sae`` into ``model`` at ``hook`` over clips ``audio`` (float32 at the model's rate).

    Returns ``rel_error_hook`` (reconstruction error / norm at the hook, real frames),
    ``rel_error_output`` (pooled ``||out_spliced - out|| / ||out||`` of the encoder output or last
    hook point), ``per_domain`` (both errors pooled per domain when ``domains`` are given),
    ``clips_table`` (one row per clip, see :func:`clip_table`) and, for models with ``transcribe``
    and clips with transcripts, ``wer_clean``, ``wer_spliced``, ``wer_change`` (pooled over all
    words), ``wer_distribution`` (per-clip changes, see :func:`wer_distribution`), ``wer_by_group``
    (pooled WERs per value of ``groups``, e.g. each clip's source: synthetic vs natural speech)
    and the texts. ``clean_memo`` (a dict kept across calls) reuses the clean transcript and output
    of a clip id already seen with the same model, e.g. when several layers' SAEs are evaluated.
    ``norm_limit``: frames above it pass through unreconstructed (the SAE's training filter,
    :mod:`sae.massive`); ``massive_passed_through`` reports how many.
    """
    import jiwer

    model.resolve_exact([hook])
    if sae.cfg.hook_name and sae.cfg.hook_name != hook:
        import logging

        logging.getLogger(__name__).warning("SAE was trained on %s, spliced into %s", sae.cfg.hook_name, hook)
    fn = SpliceFn(sae, mode, norm_limit=norm_limit)
    out_hook = _output_hook(model)
    n = len(audio)
    transcripts = list(transcripts) if transcripts is not None else [None] * n
    ids_given = ids is not None  # the memo is keyed by clip id: only real ids may use it
    ids = [str(i) for i in ids] if ids is not None else [f"clip{i}" for i in range(n)]
    domains = [str(d) for d in domains] if domains is not None else ["unknown"] * n
    groups = [str(g) for g in groups] if groups is not None else domains
    if not len(transcripts) == len(ids) == len(domains) == len(groups) == n:
        raise ValueError(f"spliced_effect: {n} clips but {len(transcripts)} transcripts, {len(ids)} ids, "
                         f"{len(domains)} domains")
    can_transcribe = hasattr(model, "transcribe") and getattr(model, "tokenizer", True) is not None
    rows, clips, windows_of = [], [], []
    for clip, ref, cid, dom, grp in tqdm(list(zip(audio, transcripts, ids, domains, groups)), desc=f"splice {hook}",
                                         disable=not verbose):
        clip = np.asarray(clip, dtype=np.float32)
        windows = _real_frames(model, hook, len(clip))
        key = (id(model), cid, len(clip))
        memo = clean_memo.get(key) if clean_memo is not None and ids_given else None
        base = memo["base"] if memo else _outputs(model, clip, out_hook)
        hook_err0, hook_norm0 = fn.sq_err, fn.sq_norm
        fn.start(windows)
        with model.hooks({hook: fn}):
            alt = _outputs(model, clip, out_hook)
        row = {"clip_id": cid, "domain": dom, "group": grp, "seconds": len(clip) / model.sample_rate,
               "hook_sq_err": fn.sq_err - hook_err0, "hook_sq_norm": fn.sq_norm - hook_norm0,
               "out_sq_err": float((alt - base).pow(2).sum()), "out_sq_norm": float(base.pow(2).sum())}
        if ref and can_transcribe:
            row["reference"] = normalize_text(ref)
            if memo and "clean" in memo:
                row["clean"] = memo["clean"]
        rows.append(row)
        clips.append(clip)
        windows_of.append(windows)
        if clean_memo is not None and ids_given:
            clean_memo[key] = {"base": base, **({"clean": memo["clean"]} if memo and "clean" in memo else {})}
    _transcribe_batched(model, hook, fn, rows, clips, windows_of, clean_memo if ids_given else None)
    table = clip_table(rows)
    err, norm = table["out_sq_err"].sum(), table["out_sq_norm"].sum()
    result = {"hook": hook, "clips": n, "rel_error_hook": fn.rel_error,
              "rel_error_output": math.sqrt(err / norm) if norm > 0 else float("nan"),
              "output": "encoder_output" if out_hook is None else out_hook,
              "per_domain": _per_domain(table), "clips_table": table,
              "massive_passed_through": {"norm_limit": norm_limit, "frames": fn.passed, "of_frames": fn.seen}}
    scored = table[table["reference"].notna()] if "reference" in table else table.iloc[:0]
    if len(scored):
        refs, clean, spliced = (scored[c].tolist() for c in ("reference", "clean", "spliced"))
        wc, ws = jiwer.wer(refs, clean), jiwer.wer(refs, spliced)
        result.update(wer_clean=wc, wer_spliced=ws, wer_change=ws - wc, wer_clips=len(refs),
                      wer_distribution=wer_distribution(table, worst=worst),
                      wer_by_group={str(g): _pooled_wer(part) for g, part in scored.groupby("group", sort=True)},
                      transcripts=[{"clip_id": r.clip_id, "reference": r.reference, "clean": r.clean,
                                    "spliced": r.spliced} for r in scored.itertuples()])
    return result


def _transcribe_batched(model, hook: str, fn: SpliceFn, rows: list[dict], clips: list, windows_of: list, clean_memo) -> None:
    """Fill ``clean`` and ``spliced`` of the rows with a reference: all clips decoded in one batched call each
    (the adapter batches 30 s windows; greedy decoding of a batch costs about as much as one clip's on a CPU).
    The splice's windows queue runs over the clips in order; its error counters are left as the encoder-only
    pass measured them (decoding repeats the frames: count once)."""
    todo = [i for i, r in enumerate(rows) if "reference" in r]
    if not todo:
        return
    # a transcript of 4 tokens per reference word is a repetition loop already: decoding stops there (a looping
    # batch would otherwise run to Whisper's 448 tokens), so such a clip's WER is a lower bound
    cap = 4 * max(len(rows[i]["reference"].split()) for i in todo) + 16
    need_clean = [i for i in todo if "clean" not in rows[i]]
    if need_clean:
        for i, text in zip(need_clean, model.transcribe([clips[i] for i in need_clean], max_new_tokens=cap)):
            rows[i]["clean"] = normalize_text(text)
            if clean_memo is not None:
                clean_memo[(id(model), rows[i]["clip_id"], len(clips[i]))]["clean"] = rows[i]["clean"]
    saved = fn.sq_err, fn.sq_norm, fn.passed, fn.seen
    per_clip = [windows_of[i] for i in todo]
    fn.start(None if any(w is None for w in per_clip) else [n for w in per_clip for n in w])
    texts = model.transcribe([clips[i] for i in todo], interventions={hook: fn}, max_new_tokens=cap)
    fn.sq_err, fn.sq_norm, fn.passed, fn.seen = saved
    for i, text in zip(todo, texts):
        rows[i]["spliced"] = normalize_text(text)


def _pooled_wer(part) -> dict:
    import jiwer

    wc, ws = jiwer.wer(part["reference"].tolist(), part["clean"].tolist()), jiwer.wer(part["reference"].tolist(),
                                                                                     part["spliced"].tolist())
    return {"clips": int(len(part)), "wer_clean": wc, "wer_spliced": ws, "wer_change": ws - wc,
            "median_clip_change": float(part["wer_change"].median())}


def clip_table(rows: Sequence[dict]):
    """Per-clip splice results as pandas: ``clip_id, domain, seconds, rel_error_hook, rel_error_output``
    and, for clips with transcripts, ``reference, clean, spliced, wer_clean, wer_spliced, wer_change``
    (per-clip WER from jiwer) and ``length_ratio`` (spliced words / reference words: a looping
    transcript shows up as a ratio well above 1)."""
    import pandas as pd

    table = pd.DataFrame(list(rows))
    if table.empty:
        return table
    with np.errstate(invalid="ignore", divide="ignore"):
        table["rel_error_hook"] = np.sqrt(table["hook_sq_err"] / table["hook_sq_norm"])
        table["rel_error_output"] = np.sqrt(table["out_sq_err"] / table["out_sq_norm"])
    if "reference" in table:
        has = table["reference"].notna()
        table["wer_clean"] = [(_clip_wer(r, c) if h else np.nan) for r, c, h in zip(table["reference"], table["clean"], has)]
        table["wer_spliced"] = [(_clip_wer(r, s) if h else np.nan)
                                for r, s, h in zip(table["reference"], table["spliced"], has)]
        table["wer_change"] = table["wer_spliced"] - table["wer_clean"]
        table["length_ratio"] = [(len(str(s).split()) / max(1, len(str(r).split())) if h else np.nan)
                                 for r, s, h in zip(table["reference"], table["spliced"], has)]
    return table


def _per_domain(table) -> dict:
    out = {}
    for dom, part in table.groupby("domain", sort=True):
        hn, on = part["hook_sq_norm"].sum(), part["out_sq_norm"].sum()
        d = {"clips": int(len(part)),
             "rel_error_hook": math.sqrt(part["hook_sq_err"].sum() / hn) if hn > 0 else float("nan"),
             "rel_error_output": math.sqrt(part["out_sq_err"].sum() / on) if on > 0 else float("nan")}
        if "wer_change" in part and part["wer_change"].notna().any():
            d["median_wer_change"] = float(part["wer_change"].median())
        out[str(dom)] = d
    return out


def wer_distribution(table, worst: int = 5) -> dict:
    """Summary of per-clip WER changes: ``median``, ``mean``, ``q90``, ``max``, ``clips_worse`` (change
    > 0), ``clips_worse_10pt`` (> 0.10) and the ``worst`` clips (id, WERs, length ratio, transcripts)."""
    if "wer_change" not in table:
        return {}
    scored = table[table["wer_change"].notna()]
    if scored.empty:
        return {}
    ch = scored["wer_change"].to_numpy(dtype=float)
    top = scored.sort_values("wer_change", ascending=False, kind="stable").head(worst)
    cols = ["clip_id", "domain", "wer_clean", "wer_spliced", "wer_change", "length_ratio", "reference", "clean", "spliced"]
    return {"clips": int(len(ch)), "median": float(np.median(ch)), "mean": float(ch.mean()),
            "q90": float(np.quantile(ch, 0.9)), "max": float(ch.max()), "min": float(ch.min()),
            "clips_worse": int((ch > 0).sum()), "clips_worse_10pt": int((ch > 0.10).sum()),
            "worst": top[[c for c in cols if c in top]].to_dict(orient="records")}


def select_clips(corpus, max_clips: int | None = None, domain: str | None = None, clip_ids=None) -> list:
    """Clips of ``corpus`` (restricted to ``clip_ids`` and/or ``domain``), clips with transcripts first."""
    wanted = None if clip_ids is None else set(clip_ids)
    clips = [c for c in corpus if (domain is None or c.domain == domain) and (wanted is None or c.id in wanted)]
    clips = sorted(clips, key=lambda c: not c.transcript)  # stable: corpus order within each group
    return clips[:max_clips] if max_clips else clips


def corpus_clips(corpus, sample_rate: int, max_clips: int | None = None, domain: str | None = None):
    """``(audio list, transcripts)`` from a corpus, clips with transcripts first (None where absent)."""
    from workbench.audio import load_audio

    clips = select_clips(corpus, max_clips, domain)
    return [load_audio(corpus.audio_path(c), sr=sample_rate) for c in clips], [c.transcript for c in clips]
