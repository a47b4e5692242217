"""Wall time of `workbench tokens analyze --no-model` (usage, purity/MI, token cochleagrams: everything but
re-encoding audio through the token model) on token caches, with the machine's CPU and load.

Runs the CLI in a fresh process per cache (imports included, as a user sees it) and prints one JSON
object: per cache the audio seconds, frames, wall seconds, the step times from summary.json, and the
wall time scaled to 10 minutes of audio (target: under 60 s).

    python benchmarks/tokens_analyze.py --out work/bench_tokens work/caches/cochlear work/caches/units-b2 ...
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from workbench.compute import cpu_name


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("caches", nargs="+", help="token caches (one integer hook each, or pass --hook)")
    ap.add_argument("--hook", default=None)
    ap.add_argument("--cochleagram-cache", default="auto", help="passed to tokens analyze ('none': from the audio)")
    ap.add_argument("--out", default=None, help="folder for the analyses (default: a temporary folder)")
    args = ap.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="bench_tokens_"))
    from workbench.cache import ActivationCache

    result = {"cpu": cpu_name(), "cores": os.cpu_count(), "python": sys.version.split()[0], "caches": {}}
    for c in args.caches:
        cache = ActivationCache.open(c)
        hook = args.hook or next(h for h in cache.hooks if cache.hook_dtype(h) == "int32")
        frames = cache.n_frames(hook)
        audio_s = frames / cache.frame_rate(hook)
        dest = out / Path(c).name
        cmd = [sys.executable, "-m", "workbench", "tokens", "analyze", "--cache", c, "--hook", hook, "--no-model",
               "--cochleagram-cache", args.cochleagram_cache, "--out", str(dest)]
        load0 = os.getloadavg()
        t = time.time()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wall = time.time() - t
        summary = json.loads((dest / "summary.json").read_text())
        result["caches"][Path(c).name] = {
            "hook": hook, "frames": frames, "audio_s": round(audio_s, 1), "wall_s": round(wall, 2),
            "wall_s_per_10_min": round(wall * 600 / audio_s, 2), "steps_s": summary["times_s"],
            "cochleagram_cache": summary.get("cochleagram_cache"),
            "load_before": [round(x, 2) for x in load0], "load_after": [round(x, 2) for x in os.getloadavg()]}
        print(json.dumps({Path(c).name: result["caches"][Path(c).name]}), file=sys.stderr, flush=True)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
