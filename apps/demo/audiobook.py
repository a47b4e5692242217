"""The demo's real speech: naplib's audiobook excerpts, split by excerpt, and the SAE's held-out list.

``workbench neuro naplib --out DIR`` writes naplib's ten 62-s audiobook excerpts (with transcripts)
as ``DIR/corpus``. :func:`split_excerpts` writes three sub-manifests beside it, one excerpt never in
two of them (each excerpt is its own group: :func:`workbench.conventions.groups_of` with
``by="clip"``): ``train.jsonl`` (cut into segments for the caches and SAE training),
``heldout.jsonl`` (segments cached too, but listed by :func:`write_holdout` so that ``sae train
--holdout-file`` never trains on them: the SAE's FVU and spliced-in WER are measured on them),
``dev.jsonl`` (never cached: real speech on which the steering sweep spends its WER budget) and
``steer.jsonl`` (never cached: the steering evaluation's real held-out speech). The demo cuts each
with ``workbench corpus segment --align`` (segments keep ``source_id`` = their excerpt).

Example
-------
$ python -m apps.demo.audiobook split corpora/audiobook/source/corpus --train 5 --heldout 2 --steer 2
$ python -m apps.demo.audiobook holdout corpora/sae_holdout.txt corpora/audiobook/heldout corpora/shared

>>> from workbench.corpus.types import Clip
>>> parts = assign([Clip(f"stim{i}", f"{i}.wav", "speech") for i in range(5)], 2, 1, 1)
>>> {k: [c.id for c in v] for k, v in parts.items()}
{'train': ['stim0', 'stim1'], 'heldout': ['stim2'], 'dev': [], 'steer': ['stim3']}
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

__all__ = ["assign", "split_excerpts", "write_holdout"]

PARTS = ("train", "heldout", "dev", "steer")


def assign(clips, n_train: int, n_heldout: int, n_steer: int, n_dev: int = 0) -> dict[str, list]:
    """Clips by part, whole groups (source recordings) at a time, in corpus order."""
    from workbench.conventions import groups_of

    clips = list(clips)
    labels = groups_of(clips, by="clip")
    order = list(dict.fromkeys(labels))
    want = {"train": n_train, "heldout": n_heldout, "dev": n_dev, "steer": n_steer}
    if sum(want.values()) > len(order):
        raise ValueError(f"{sum(want.values())} excerpts asked for ({want}) but the corpus has {len(order)}")
    out, start = {}, 0
    for part in PARTS:
        chosen = set(order[start:start + want[part]])
        out[part] = [c for c, g in zip(clips, labels) if g in chosen]
        start += want[part]
    return out


def split_excerpts(src: str | os.PathLike, n_train: int, n_heldout: int, n_steer: int, n_dev: int = 0) -> dict[str, Path]:
    """Write ``SRC/{train,heldout,dev,steer}.jsonl`` (audio paths relative to SRC); returns their paths."""
    from workbench.corpus import load_corpus
    from workbench.corpus.types import Corpus

    src = Path(src)
    corpus = load_corpus(src)
    for clip in corpus:  # each excerpt is its own recording: whole or cut, it groups as one (conventions.group_of)
        clip.extra.setdefault("source_id", clip.id)
    return {part: Corpus(clips, root=src).save(src / f"{part}.jsonl")
            for part, clips in assign(corpus, n_train, n_heldout, n_steer, n_dev).items()}


def write_holdout(out: str | os.PathLike, *corpora: str | os.PathLike) -> list[str]:
    """Write the ids of the speech clips of ``corpora`` (one a line: ``sae train --holdout-file``)."""
    from workbench.atomic import write_text
    from workbench.corpus import load_corpus

    ids = [c.id for src in corpora for c in load_corpus(src) if c.domain == "speech"]
    if not ids:
        raise ValueError(f"no speech clips in {[str(c) for c in corpora]}: nothing to hold out")
    write_text(out, "\n".join(ids) + "\n")
    return ids


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m apps.demo.audiobook", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("split", help="train/heldout/steer sub-manifests, whole excerpts each")
    s.add_argument("src")
    for part in PARTS:
        s.add_argument(f"--{part}", type=int, required=part != "dev", default=0)
    h = sub.add_parser("holdout", help="the speech clip ids of CORPUS... into OUT")
    h.add_argument("out")
    h.add_argument("corpora", nargs="+")
    a = p.parse_args(argv)
    if a.cmd == "split":
        split_excerpts(a.src, a.train, a.heldout, a.steer, a.dev)
    else:
        write_holdout(a.out, *a.corpora)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
