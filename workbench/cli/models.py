"""``workbench models``: inspect model adapters and transcribe with Whisper.

Example
-------
$ workbench models info whisper-tiny.en
$ workbench models info whisper-tiny.en --json
$ workbench models transcribe whisper-tiny.en ../shared/data/speech/jfk.flac
$ workbench models transcribe whisper-tiny.en noise.flac --steering work/steer/steering/tiny_sae
$ workbench models enhance nsnet2 noisy/*.flac --out work/enhanced
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from workbench.audio import load_audio  # noqa: F401  (re-exported: tests and older callers import it from here)
from workbench.validate import torch_device

logger = logging.getLogger(__name__)


def _hook_dims(model) -> dict[str, int | None]:
    """d_model per hook: from ``info()`` when the adapter reports it, else by running 1 s of silence."""
    info = model.info()
    if "d_model" in info:
        return {h: int(info["d_model"]) for h in model.hook_points}
    try:
        acts = model.run_with_cache(np.zeros(model.sample_rate, np.float32), model.hook_points)
        return {h: int(a.shape[-1]) if a.ndim > 1 else 1 for h, a in acts.items()}
    except Exception as e:  # an adapter that cannot run silence still lists its hooks
        logger.warning("could not probe hook sizes: %s", e)
        return {h: None for h in model.hook_points}


def _info(args: argparse.Namespace) -> int:
    from workbench.compute import optional_dtype
    from workbench.models import load

    model = load(args.spec, device=args.device, dtype=optional_dtype(args.dtype, args.device))
    info = model.info()
    dims = _hook_dims(model)
    info["hooks"] = [{"name": h, "frame_rate": rate, "d_model": dims[h]} for h, rate in info["hook_points"].items()]
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    print(f"{info['name']}  (spec {info['spec']}, {info['sample_rate']} Hz)")
    for key in ("d_model", "encoder_layers", "decoder_layers", "vocab_size", "multilingual"):
        if key in info:
            print(f"  {key}: {info[key]}")
    width = max(len(h["name"]) for h in info["hooks"])
    print(f"  {'hook point':<{width}}  {'frames/s':>9}  {'d_model':>7}")
    for h in info["hooks"]:
        rate = "per token" if h["frame_rate"] is None else f"{h['frame_rate']:g}"
        print(f"  {h['name']:<{width}}  {rate:>9}  {h['d_model'] if h['d_model'] is not None else '?':>7}")
    return 0


def _transcribe(args: argparse.Namespace) -> int:
    from workbench.compute import optional_dtype
    from workbench.models import load

    missing = [p for p in args.audio if not Path(p).is_file()]
    if missing:  # fail before the model load, not after
        raise FileNotFoundError(f"audio file(s) not found: {', '.join(missing)}")
    steering = None
    if getattr(args, "steering", None):  # read (and fail on) the artifact before the model load
        from workbench.steering import Steering, canonical_model

        steering = Steering.load(args.steering)
        if steering.model and canonical_model(steering.model) != canonical_model(args.spec):  # no load needed
            raise ValueError(f"steering {steering.path} was made for model {steering.model!r}, not {args.spec!r}")
    model = load(args.spec, device=args.device, dtype=optional_dtype(args.dtype, args.device))
    if not hasattr(model, "transcribe"):
        raise ValueError(f"{args.spec}: the {type(model).__name__} adapter cannot transcribe (use a Whisper model)")
    if steering is not None:
        steering.check_model(model)
    results = []
    for path in args.audio:
        audio = load_audio(path, sr=model.sample_rate)
        text = model.transcribe(audio, max_new_tokens=args.max_new_tokens, language=args.language)
        results.append({"path": str(path), "text": text})
        if steering is not None:
            with steering.applied(model):
                results[-1]["steered"] = model.transcribe(audio, max_new_tokens=args.max_new_tokens,
                                                          language=args.language)
            if not args.json:
                head = f"{path}\t" if len(args.audio) > 1 else ""
                print(f"{head}plain:   {text}\n{head}steered: {results[-1]['steered']}", flush=True)
        elif not args.json:
            print(f"{path}\t{text}" if len(args.audio) > 1 else text, flush=True)
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
    return 0


def _enhance(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from workbench.audio import audio_info, resample, save_audio
    from workbench.models import load

    missing = [p for p in args.audio if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"audio file(s) not found: {', '.join(missing)}")
    names = [Path(p).stem for p in args.audio]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:  # the same name in two folders would overwrite one output with the other
        raise ValueError(f"two inputs would write the same file under --out: {', '.join(dup)}.flac")
    model = load(args.spec, device=args.device)
    if not hasattr(model, "enhance"):
        raise ValueError(f"{args.spec}: the {type(model).__name__} adapter is no enhancer (use nsnet2, nsnet2-48k, "
                         "gtcrn or deepfilternet3)")
    out = Path(args.out)
    for path in tqdm(args.audio, desc=f"enhance ({model.name})", unit="file", disable=args.json):
        sr = audio_info(path)[0]
        audio = load_audio(path, sr=model.sample_rate)
        clean = resample(model.enhance(audio), model.sample_rate, sr)  # written at the input's rate
        target = save_audio(out / f"{Path(path).stem}.flac", clean, sr)
        if not args.json:
            tqdm.write(f"{path} -> {target}")
    if args.json:
        print(json.dumps({"model": model.name, "out": str(out), "files": len(args.audio)}))
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help="inspect model adapters, transcribe with Whisper",
                                   description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    def common(p):
        p.add_argument("spec", help="model spec: whisper-tiny.en, whisper-base, a hub id or a local dir")
        p.add_argument("--device", default="cpu", type=torch_device, help="torch device (default: cpu)")
        p.add_argument("--dtype", default=None, choices=["auto", "float32", "bfloat16", "float16"],
                       help="float32 (default), bfloat16, float16, or auto: bfloat16 where this machine runs it fast")
        p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("info", help="list hook points with frame rates and sizes")
    common(p)
    p.set_defaults(func=_info)

    p = sub.add_parser("transcribe", help="greedy transcripts of audio files (Whisper)")
    common(p)
    p.add_argument("audio", nargs="+", help="audio files (any rate; resampled to the model's)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="decoding budget per 30 s window")
    p.add_argument("--language", default="en", help="language for multilingual models (default: en)")
    p.add_argument("--steering", default=None, metavar="STEER_DIR",
                   help="also transcribe with this steering artifact (workbench steer fit) and print both")
    p.set_defaults(func=_transcribe)

    p = sub.add_parser("enhance", help="denoise audio files with a speech enhancer (nsnet2, gtcrn, deepfilternet3)")
    common(p)
    p.add_argument("audio", nargs="+", help="audio files (any rate; resampled to the model's and back)")
    p.add_argument("--out", required=True, help="folder: OUT/<name>.flac at the input's sample rate")
    p.set_defaults(func=_enhance)
