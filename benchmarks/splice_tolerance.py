"""How much reconstruction error can Whisper take at a hook? WER with the SAE's error scaled, or
replaced by random noise of the same per-frame size.

For each setting ``KIND:A`` the real frames of the hook become ``x + A * e`` where ``e`` is the
SAE's reconstruction error (``sae``), a random direction with the same per-frame norm (``noise``),
or the SAE's error with the massive-norm frames (> 10x the clip's median norm) left clean
(``keepmassive``). ``sae:1.0`` is the ordinary splice. This tells which per-frame error an SAE
must reach to keep the WER near clean, and whether the error's direction matters.

Usage::

    .venv/bin/python benchmarks/splice_tolerance.py --sae work/saeeval/saes_8M_s0 --corpus work/saeeval/mixed \
        --clips naplib_stim08 naplib_stim09 naplib_stim10 speech_jfk speech_cold_corpus3 \
        --settings sae:1.0 sae:0.5 noise:1.0 keepmassive:1.0

Prints one JSON object: the clean WER and, per setting, the pooled and per-clip WER.
"""
from __future__ import annotations

import argparse
import json

import torch

from sae.splice import SpliceFn, _real_frames, normalize_text

KINDS = ("sae", "noise", "keepmassive")


class ScaledError(SpliceFn):
    """Real frames ``x -> x + a * e`` (see the module docstring for ``kind``)."""

    def __init__(self, sae, a: float, kind: str, seed: int = 0) -> None:
        super().__init__(sae)
        self.a, self.kind = a, kind
        self.gen = torch.Generator().manual_seed(seed)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        err = super().reconstruct(x) - x
        if self.kind == "noise":
            g = torch.randn(x.shape, generator=self.gen)
            err = g / g.norm(dim=-1, keepdim=True) * err.norm(dim=-1, keepdim=True)
        elif self.kind == "keepmassive":
            norms = x.norm(dim=-1)
            err[norms > 10 * norms.median()] = 0
        return x + self.a * err


def parse_setting(s: str) -> tuple[str, float]:
    kind, _, a = s.partition(":")
    if kind not in KINDS or not a:
        raise argparse.ArgumentTypeError(f"setting {s!r}: expected KIND:SCALE with KIND in {KINDS}, e.g. sae:0.5")
    return kind, float(a)


def main() -> None:
    import jiwer

    import workbench.models
    from sae.io import load_sae
    from workbench.audio import load_audio
    from workbench.corpus import load_corpus

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sae", required=True, help="an SAE folder (or a run folder holding HOOK/)")
    ap.add_argument("--hook", default="encoder.blocks.3.hook_resid_post")
    ap.add_argument("--model", default="whisper-tiny.en")
    ap.add_argument("--corpus", required=True, help="corpus with the clips and their transcripts")
    ap.add_argument("--clips", nargs="+", required=True, help="clip ids (with transcripts) to transcribe")
    ap.add_argument("--settings", nargs="+", type=parse_setting, default=[("sae", 1.0), ("sae", 0.5)])
    args = ap.parse_args()
    model = workbench.models.load(args.model)
    path = args.sae if args.sae.rstrip("/").endswith(args.hook) else f"{args.sae}/{args.hook}"
    sae = load_sae(path, hook=args.hook)
    corpus = load_corpus(args.corpus)
    clips = {c.id: c for c in corpus}
    missing = [c for c in args.clips if c not in clips or not clips[c].transcript]
    if missing:
        raise SystemExit(f"--clips: {missing} not in {args.corpus} or without a transcript")
    audio = [load_audio(corpus.audio_path(clips[c]), sr=model.sample_rate) for c in args.clips]
    refs = [normalize_text(clips[c].transcript) for c in args.clips]
    clean = [normalize_text(model.transcribe(a)) for a in audio]
    out = {"sae": path, "clips": args.clips, "wer_clean": jiwer.wer(refs, clean), "settings": []}
    for kind, a in args.settings:
        fn, hyp = ScaledError(sae, a, kind), []
        for x in audio:
            fn.start(_real_frames(model, args.hook, len(x)))
            hyp.append(normalize_text(model.transcribe(x, interventions={args.hook: fn})))
        out["settings"].append({"kind": kind, "scale": a, "wer": jiwer.wer(refs, hyp),
                                "per_clip": [jiwer.wer(r, h) for r, h in zip(refs, hyp)]})
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
