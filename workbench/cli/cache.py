"""``workbench cache``: cache hook activations over a corpus; ``workbench cache-info``: describe a cache.

Example
-------
$ workbench cache --model whisper-tiny.en --corpus ../shared/data/manifest.jsonl \\
      --hooks 'encoder.blocks.*.hook_resid_post' --out work/cache
$ torchrun --nproc_per_node 2 -m workbench cache --model whisper-tiny.en --corpus work/synth \\
      --hooks 'encoder.blocks.*.hook_resid_post' --out work/cache      # one share of the clips per rank
$ workbench cache-info work/cache --verify      # also compare every file's sha256 with the index
"""
from __future__ import annotations

import argparse
import json
import sys

from workbench.validate import check_device, check_out_dir, positive_float, positive_int, torch_device


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "cache",
        help="cache hook activations over a corpus (resumable; torchrun for several processes)",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Example\n-------\n", 1)[1],
    )
    p.add_argument("--model", required=True, help="model spec, e.g. whisper-tiny.en, cochleagram or a local dir")
    p.add_argument("--corpus", required=True, help="corpus directory or manifest.jsonl")
    p.add_argument("--hooks", required=True, nargs="+", metavar="PATTERN",
                   help="hook names or globs, e.g. 'encoder.blocks.*.hook_resid_post'")
    p.add_argument("--out", required=True, help="cache directory (created; a rerun continues it)")
    p.add_argument("--dtype", default="float16", choices=["float16", "bfloat16"], help="storage dtype")
    p.add_argument("--batch-seconds", type=positive_float, default=60.0, help="audio seconds per written batch")
    p.add_argument("--max-clips", type=positive_int, default=None, help="cache only the first N clips of the corpus")
    p.add_argument("--strict", action="store_true", help="fail on the first unreadable clip instead of skipping")
    p.add_argument("--device", default=None, type=torch_device,
                   help="torch device (default: cuda[:LOCAL_RANK] if available, else cpu)")
    p.add_argument("--verify", action="store_true",
                   help="before resuming, also compare every file's sha256 with the index (sizes are always checked)")
    p.add_argument("--model-dtype", default=None, choices=["auto", "float32", "float16", "bfloat16"],
                   help="dtype to run the model in (default: the adapter's; auto: bfloat16 where this machine runs it fast)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=run_cache)

    info = subparsers.add_parser("cache-info", help="describe an activation cache (hooks, frames, skipped clips)")
    info.add_argument("dir", help="cache directory")
    info.add_argument("--json", action="store_true", help="print the full description as JSON")
    info.add_argument("--verify", action="store_true",
                      help="also compare every file's sha256 with the index (reads the whole cache)")
    info.set_defaults(func=run_info)


def run_cache(args) -> int:
    from workbench.cache import build_cache
    from workbench.cache.distributed import init_from_env, shutdown
    from workbench.compute import optional_dtype
    from workbench.corpus import load_corpus
    from workbench.models import load

    # Everything that needs no model is checked before the model load (seconds).
    check_out_dir(args.out, resume_flag=None)  # a cache folder is continued by design
    corpus = load_corpus(args.corpus)
    if not len(corpus):
        raise ValueError(f"--corpus {args.corpus} has no clips: nothing to cache")
    dist, device = init_from_env(args.device)
    try:
        check_device(device)
        model_dtype = optional_dtype(args.model_dtype, device)
        model = load(args.model, device=device, dtype=model_dtype)
        cache = build_cache(
            model, corpus, args.hooks, args.out, dtype=args.dtype, batch_seconds=args.batch_seconds,
            max_clips=args.max_clips, strict=args.strict, verbose=not args.quiet and dist.is_main,
            verify=args.verify,
        )
        if dist.is_main and not args.quiet:
            summary = cache.info()["summary"] or {}
            print(json.dumps({k: v for k, v in summary.items() if k != "skipped"}, indent=1))
    finally:
        shutdown()
    return 0


def run_info(args) -> int:
    from pathlib import Path

    from workbench.cache import ActivationCache
    from workbench.cache.inputs import build_state, describe_state

    state = build_state(args.dir)  # a live build holds the lock: "running", not "interrupted"
    try:
        cache = ActivationCache.open(args.dir, verify=args.verify)  # damage: CacheDamagedError naming the file
    except RuntimeError:
        if state["state"] != "running" or not (Path(args.dir) / "cache.json").is_file():
            raise
        print(json.dumps({"root": args.dir, "build": state}, indent=1, default=str) if args.json else
              f"cache {args.dir}: no merged data yet; {describe_state(args.dir, state)}")
        return 0
    info = cache.info()
    info["build"] = state
    if args.verify:
        from workbench.atomic import read_json
        from workbench.cache.verify import checksum_coverage

        files, unsummed = checksum_coverage(read_json(cache.root / "index.json"))
        info["verified"] = {"files": files, "without_checksum": unsummed}
    if args.json:
        print(json.dumps(info, indent=1, default=str))
        return 0
    out = sys.stdout
    m = info["model"]
    print(f"cache {info['root']}: model {m['spec']} ({m['name']}), dtype {info['dtype']}, "
          f"{info['clips']} clips, {info['skipped']} skipped, complete={info['complete']}", file=out)
    if state["state"] != "complete":
        print(f"  {describe_state(cache.root, state)}", file=out)
    if args.verify:
        v = info["verified"]
        print(f"  verified: {v['files']} files have the sizes and sha256 the index records", file=out)
        if v["without_checksum"]:
            print(f"  note: {v['without_checksum']} files were written before checksums were recorded: "
                  "only their sizes were checked", file=out)
    for h, d in info["hooks"].items():
        print(f"  {h}: {d['frames']} frames x {d['d_model']} @ {d['frame_rate']:g} Hz", file=out)
    if cache.skipped:  # failed clips: not cached, retried by the next `workbench cache` run
        print(f"  failed clips ({len(cache.skipped)}; rerun `workbench cache` with the same settings to retry):",
              file=out)
        for cid, err in list(cache.skipped.items())[:10]:
            print(f"    {cid}: {err}", file=out)
        if len(cache.skipped) > 10:
            print(f"    ... and {len(cache.skipped) - 10} more in {cache.root / 'errors.jsonl'}", file=out)
    s = info["summary"] or {}
    if s:
        print(f"  frames per domain: {s.get('frames_per_domain')}; disk {s.get('disk_bytes', 0) / 2**20:.1f} MB",
              file=out)
    return 0
