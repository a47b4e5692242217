"""``workbench corpus``: build, synthesize and inspect corpora.

Example
-------
$ workbench corpus build ../shared/data --out work/corpus --align
$ workbench corpus build data/TIMIT --format timit --out work/timit
$ workbench corpus build data/ESC-50-master --out work/esc50 --max-clips 400 --seed 0
$ workbench corpus build my_hf_dataset --format hf --text-column sentence --out work/hf
$ workbench corpus synth --n 200 --out work/synth --seed 0
$ workbench corpus nonspeech --n 12 --out work/nonspeech --seed 0
$ workbench corpus info work/synth --json
$ workbench corpus tts --n 200 --out work/tts --exclude-text work/heldout/manifest.jsonl
$ workbench corpus augment work/train work/tts --passes 4 --noise work/nonspeech --exclude heldout.txt --out work/aug
$ workbench corpus segment work/naplib --seconds 8 --align --out work/naplib_segments
$ workbench corpus mix --speech work/heldout --noise work/environment --snr 0 5 10 --out work/noisy
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter

from workbench.corpus.formats import FORMATS
from workbench.validate import check_out_dir, non_negative_int, positive_float, positive_int

logger = logging.getLogger(__name__)


def _print_summary(summary: dict, as_json: bool, title: str) -> None:
    if as_json:
        print(json.dumps(summary, indent=2, sort_keys=True))
        return
    print(title)
    print(f"  clips:    {summary['clips']}")
    print(f"  hours:    {summary['hours']:.4f} ({summary['hours'] * 60:.1f} min)")
    print(f"  domains:  {', '.join(f'{k} {v}' for k, v in sorted(summary['domains'].items())) or '-'}")
    spk = summary["speakers"]
    shown = ", ".join(f"{k} {v}" for k, v in sorted(spk.items())[:12]) + (" ..." if len(spk) > 12 else "")
    print(f"  speakers: {len(spk)}{' (' + shown + ')' if spk else ''}")
    print(f"  tiers:    {', '.join(summary['tiers']) or '-'}")
    inv = summary["phone_inventory"]
    print(f"  phones:   {len(inv)} labels, {sum(inv.values())} segments")
    if inv:
        print("            " + " ".join(f"{k}:{v}" for k, v in inv.items()))


def _build(args: argparse.Namespace) -> int:
    from workbench.corpus import build_corpus

    check_out_dir(args.out, resume_flag=None)  # a corpus folder may be rebuilt in place
    options = {k: v for k, v in (("split", args.split), ("audio_column", args.audio_column),
                                 ("text_column", args.text_column), ("speaker_column", args.speaker_column),
                                 ("label_column", args.label_column), ("id_column", args.id_column)) if v}
    res = build_corpus(args.src[0] if len(args.src) == 1 else args.src, args.out, align=args.align, strict=args.strict,
                       fold_phones=not args.no_fold, textgrids=args.textgrids, verbose=not args.quiet,
                       fmt=args.format, max_clips=args.max_clips, seed=args.seed, options=options)
    summary = res.corpus.summary()
    summary["skipped"] = sum(1 for e in res.skipped if e.get("action") == "skipped")
    summary["problems"] = len(res.skipped)
    summary["aligned"] = res.aligned
    _print_summary(summary, args.json, f"wrote {res.manifest}")
    if not args.json:
        if args.align:
            print(f"  aligned:  {res.aligned} clips with pocketsphinx")
        if res.skipped:
            print(f"  problems: {len(res.skipped)} ({summary['skipped']} files skipped), see {res.errors_file}")
            for e in res.skipped[:10]:
                print(f"    [{e['stage']}] {e['path']}: {e['error']} ({e['action']})")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from workbench.corpus.synth import synth_corpus

    check_out_dir(args.out, resume_flag=None)
    corpus = synth_corpus(args.n, args.out, seed=args.seed, n_speakers=args.speakers, sr=args.sr, fmt=args.format,
                          verbose=not args.quiet, id_prefix=args.id_prefix)
    _print_summary(corpus.summary(), args.json, f"wrote {corpus.root / 'manifest.jsonl'}")
    return 0


def _nonspeech(args: argparse.Namespace) -> int:
    from workbench.corpus.nonspeech import synth_nonspeech

    kinds = args.kinds.split(",") if args.kinds else None
    corpus = synth_nonspeech(args.n, args.out, seed=args.seed, sr=args.sr, duration_s=args.duration, kinds=kinds,
                             id_prefix=args.id_prefix)
    _print_summary(corpus.summary(), args.json, f"wrote {corpus.root / 'manifest.jsonl'}")
    return 0


def _tts(args: argparse.Namespace) -> int:
    from workbench.corpus import load_corpus
    from workbench.corpus.tts import tts_corpus

    check_out_dir(args.out, resume_flag=None)  # resumable: clips already written are kept
    sentences = None
    if args.sentences:
        sentences = [line.strip() for line in open(args.sentences, encoding="utf-8") if line.strip()]
    banned = [c.transcript for src in args.exclude_text for c in load_corpus(src) if c.transcript]
    corpus = tts_corpus(args.n, args.out, seed=args.seed, sentences=sentences, exclude_text=banned,
                        align=not args.no_align, verbose=not args.quiet)
    _print_summary(corpus.summary(), args.json, f"wrote {corpus.root / 'manifest.jsonl'}")
    return 0


def _augment(args: argparse.Namespace) -> int:
    from workbench.corpus import load_corpus
    from workbench.corpus.augment import augment_corpus

    check_out_dir(args.out, resume_flag=None)
    exclude: set[str] = set()
    for path in args.exclude:
        exclude |= {line.strip() for line in open(path, encoding="utf-8") if line.strip()}
    corpus = augment_corpus([load_corpus(s) for s in args.src], args.out, args.passes,
                            noise=load_corpus(args.noise) if args.noise else None, exclude=exclude, seed=args.seed,
                            verbose=not args.quiet)
    _print_summary(corpus.summary(), args.json, f"wrote {corpus.root / 'manifest.jsonl'}")
    return 0


def _segment(args: argparse.Namespace) -> int:
    from workbench.corpus import load_corpus
    from workbench.corpus.segment import segment_corpus

    check_out_dir(args.out, resume_flag=None)
    corpus = segment_corpus(load_corpus(args.src), args.seconds, args.out, align=args.align, verbose=not args.quiet,
                            jobs=args.jobs)
    _print_summary(corpus.summary(), args.json, f"wrote {corpus.root / 'manifest.jsonl'}")
    return 0


def _mix(args: argparse.Namespace) -> int:
    from workbench.corpus import load_corpus
    from workbench.corpus.mix import mix_corpus

    check_out_dir(args.out, resume_flag=None)
    corpus = mix_corpus(load_corpus(args.speech), args.out, args.snr, noise=load_corpus(args.noise) if args.noise else None,
                        speakers=args.speakers, reverb=args.reverb, keep_clean=not args.no_clean, seed=args.seed,
                        verbose=not args.quiet)
    summary = corpus.summary()
    summary["conditions"] = dict(sorted(Counter(c.extra["condition"] for c in corpus).items()))
    _print_summary(summary, args.json, f"wrote {corpus.root / 'manifest.jsonl'}")
    if not args.json:
        print(f"  conditions: {', '.join(f'{k} {v}' for k, v in summary['conditions'].items())}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from workbench.corpus import load_corpus

    corpus = load_corpus(args.src, fold_phones=not args.no_fold)
    summary = corpus.summary()
    missing = [str(corpus.audio_path(c)) for c in corpus if not corpus.audio_path(c).is_file()]
    unknown = sum(1 for c in corpus if not c.duration_s)
    if missing:
        summary["missing_audio"] = missing
        print(f"workbench corpus info: warning: {len(missing)} of {len(corpus)} clips have no audio file "
              f"(e.g. {missing[0]}); they count 0 s in the hours", file=sys.stderr)
    if unknown > len(missing):
        print(f"workbench corpus info: warning: {unknown} of {len(corpus)} clips have no duration_s in "
              f"{args.src}; run `workbench corpus build` to measure them", file=sys.stderr)
    if not len(corpus):
        print(f"workbench corpus info: warning: {args.src} holds no clips", file=sys.stderr)
    _print_summary(summary, args.json, f"{args.src}")
    return 0


def register(subparsers) -> None:
    """Add ``corpus build|synth|info`` to the ``workbench`` command line."""
    p = subparsers.add_parser("corpus", help="build, synthesize and inspect corpora",
                              description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="corpus_command", metavar="ACTION", required=True)

    b = sub.add_parser("build", help="manifest / folder tree -> DIR/manifest.jsonl (tiers inline)")
    b.add_argument("src", nargs="+", help="manifest.jsonl, a folder holding one, a folder tree (domain = sub-folder), "
                   "a corpus in a known layout (see --format) or a Hugging Face dataset; several sources are merged")
    b.add_argument("--out", required=True, help="output folder (manifest.jsonl, errors.jsonl)")
    b.add_argument("--align", action="store_true",
                   help="force-align natural speech that has a transcript but no word tier (pocketsphinx)")
    b.add_argument("--strict", action="store_true", help="stop at the first bad file instead of skipping it")
    b.add_argument("--textgrids", action="store_true", help="also write DIR/textgrids/<clip>.TextGrid")
    b.add_argument("--format", choices=("auto",) + FORMATS, default="auto",
                   help="source layout (default auto: detected where unambiguous; musan and wham must be named)")
    b.add_argument("--max-clips", type=positive_int, default=None, help="keep a seeded uniform subset of N clips")
    b.add_argument("--seed", type=int, default=0, help="seed of the --max-clips subset (default 0)")
    b.add_argument("--split", default=None, help="only this split (Common Voice / FLEURS table, FSD50K split, "
                   "WHAM! folder, Hugging Face split)")
    for col in ("audio", "text", "speaker", "label", "id"):
        b.add_argument(f"--{col}-column", default=None, help=f"--format hf: the {col} column (default: guessed)")
    b.set_defaults(func=_build)

    s = sub.add_parser("synth", help="espeak-ng speech with exact phone/word timings")
    s.add_argument("--n", type=positive_int, default=40, help="number of clips (default 40)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--speakers", type=positive_int, default=8, help="number of distinct synthetic speakers (default 8)")
    s.add_argument("--sr", type=positive_int, default=16000, help="sample rate of the written audio (default 16000)")
    s.add_argument("--format", choices=["flac", "wav"], default="flac")
    s.add_argument("--id-prefix", default="synth_", help="clip ids are PREFIX + index (default synth_)")
    s.set_defaults(func=_synth)

    ns = sub.add_parser("nonspeech", help="synthetic non-speech: noise colours, tones, chords, click trains")
    ns.add_argument("--n", type=int, default=12, help="number of clips, cycling through the kinds (default 12)")
    ns.add_argument("--out", required=True, help="output folder")
    ns.add_argument("--seed", type=int, default=0)
    ns.add_argument("--sr", type=int, default=16000, help="sample rate (default 16000)")
    ns.add_argument("--duration", type=float, default=2.0, help="seconds per clip (default 2)")
    ns.add_argument("--kinds", default=None, help="comma-separated subset of workbench.corpus.nonspeech.KINDS "
                    "(white_noise, pink_noise, brown_noise, clicks, tone, chord; default all)")
    ns.add_argument("--id-prefix", default="", help="prefix for the clip ids (<kind>_<index>)")
    ns.set_defaults(func=_nonspeech)

    t = sub.add_parser("tts", help="Piper neural TTS speech with exact text, aligned (the [tts] extra)")
    t.add_argument("--n", type=positive_int, default=100, help="number of clips (default 100)")
    t.add_argument("--out", required=True, help="output folder")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--sentences", default=None, help="text file, one sentence per line (default: the espeak list)")
    t.add_argument("--exclude-text", nargs="*", default=[], metavar="CORPUS",
                   help="corpora whose transcripts are never read (e.g. the held-out clips)")
    t.add_argument("--no-align", action="store_true", help="skip forced alignment (no word/phone tiers)")
    t.set_defaults(func=_tts)

    a = sub.add_parser("augment", help="random cuts, speed, level and background noise at 5-25 dB SNR")
    a.add_argument("src", nargs="+", help="corpora to augment")
    a.add_argument("--passes", type=positive_int, default=4, help="augmented passes over each clip (default 4)")
    a.add_argument("--noise", default=None, help="corpus of backgrounds (default: the sources' non-speech clips "
                   "and coloured noise)")
    a.add_argument("--exclude", nargs="*", default=[], metavar="FILE",
                   help="files of clip ids never read (one per line), e.g. the held-out clips")
    a.add_argument("--out", required=True, help="output folder")
    a.add_argument("--seed", type=int, default=0)
    a.set_defaults(func=_augment)

    g = sub.add_parser("segment", help="cut long recordings into segments with their aligned transcripts and tiers")
    g.add_argument("src", help="corpus directory or manifest.jsonl")
    g.add_argument("--seconds", type=positive_float, required=True, help="target segment length")
    g.add_argument("--align", action="store_true", help="force-align speech that has a transcript but no word tier")
    g.add_argument("--jobs", type=non_negative_int, default=0,
                   help="with --align: clips aligned side by side in worker processes (0: one per CPU core)")
    g.add_argument("--out", required=True, help="output folder")
    g.set_defaults(func=_segment)

    m = sub.add_parser("mix", help="noisy / two-speaker / reverberant versions of a speech corpus, clean kept")
    m.add_argument("--speech", required=True, help="speech corpus (its clips of domain 'speech' are mixed)")
    m.add_argument("--noise", default=None, help="noise corpus (needed unless --speakers 2)")
    m.add_argument("--snr", type=float, nargs="+", default=[0.0, 5.0, 10.0],
                   help="SNRs in dB (signal-to-interferer ratios with --speakers 2; default 0 5 10)")
    m.add_argument("--speakers", type=int, choices=[1, 2], default=1, help="2: mix with another speaker's clip")
    m.add_argument("--reverb", type=positive_float, default=None, metavar="RT60", help="synthetic room, RT60 seconds")
    m.add_argument("--no-clean", action="store_true", help="do not add the clean clips as condition 'clean'")
    m.add_argument("--out", required=True, help="output folder")
    m.add_argument("--seed", type=int, default=0)
    m.set_defaults(func=_mix)

    i = sub.add_parser("info", help="clips, hours, domains, speakers, tiers, phone inventory")
    i.add_argument("src", help="DIR or manifest.jsonl (or a folder tree)")
    i.set_defaults(func=_info)

    for q in (b, s, ns, t, a, g, m, i):
        q.add_argument("--json", action="store_true", help="print the summary as JSON")
        q.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    for q in (b, i):
        q.add_argument("--no-fold", action="store_true", help="keep phone labels as found (no 39-set folding)")
