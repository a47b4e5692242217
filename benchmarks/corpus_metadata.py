"""How long reading a large corpus's metadata takes: 10,000 small clips in each of three layouts
(ESC-50 CSV, LibriSpeech folders, Common Voice TSV), read with ``workbench.corpus.formats.iter_clips``
as ``workbench corpus build`` does before it decodes any audio. Target: under 10 s each.

Usage::

    .venv/bin/python benchmarks/corpus_metadata.py [--n 10000] [--repeat 3] [--work /tmp/corpus_meta]

Prints JSON: clips, seconds per repeat (min/median/max), the CPU and the load average.
The fixture files are written once (tiny WAVs: the readers never decode audio).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from workbench.corpus.formats import ReadContext, iter_clips  # noqa: E402


def _wav(path: Path, x: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        sf.write(path, x, 16000)


def write_layouts(work: Path, n: int) -> dict[str, Path]:
    x = np.zeros(160, dtype=np.float32)
    esc, ls, cv = work / "esc50", work / "librispeech", work / "commonvoice"
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    cv_rows = ["client_id\tpath\tsentence"]
    trans: dict[Path, list[str]] = {}
    for i in range(n):
        name = f"{i % 5 + 1}-{i}-A-{i % 50}.wav"
        _wav(esc / "audio" / name, x)
        rows.append(f"{name},{i % 5 + 1},{i % 50},class{i % 50},False,{i // 4},A")
        spk, chap = 100 + i // 500, 7 + (i // 50) % 10
        utt = f"{spk}-{chap}-{i:05d}"
        _wav(ls / str(spk) / str(chap) / f"{utt}.wav", x)
        trans.setdefault(ls / str(spk) / str(chap) / f"{spk}-{chap}.trans.txt", []).append(f"{utt} HELLO {i}")
        _wav(cv / "clips" / f"cv_{i}.wav", x)
        cv_rows.append(f"client{i % 97}\tcv_{i}.wav\tsentence {i}")
    (esc / "meta").mkdir(parents=True, exist_ok=True)
    (esc / "meta" / "esc50.csv").write_text("\n".join(rows) + "\n")
    for path, lines in trans.items():
        path.write_text("\n".join(lines) + "\n")
    (cv / "train.tsv").write_text("\n".join(cv_rows) + "\n")
    return {"esc50": esc, "librispeech": ls, "commonvoice": cv}


def _cpu() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", default="/tmp/corpus_meta")
    args = ap.parse_args()
    t0 = time.perf_counter()
    layouts = write_layouts(Path(args.work), args.n)
    out = {"clips": args.n, "fixture_s": round(time.perf_counter() - t0, 1), "cpu": _cpu(), "load_before": os.getloadavg()[0], "formats": {}}
    for fmt, root in layouts.items():
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            n = sum(1 for _ in iter_clips(root, fmt, ReadContext()))
            times.append(time.perf_counter() - t)
        assert n == args.n, (fmt, n)
        out["formats"][fmt] = {"min_s": round(min(times), 2), "median_s": round(statistics.median(times), 2),
                               "max_s": round(max(times), 2), "target_s": 10, "met": max(times) < 10}
    out["load_after"] = os.getloadavg()[0]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
