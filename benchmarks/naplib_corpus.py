"""Write naplib's sample audiobook excerpts as a corpus folder (FLAC clips + manifest.jsonl).

naplib ships ``naplib/io/sample_data/demo_data.mat`` (MATLAB v7.3 = HDF5): ten ~62 s excerpts of
one audiobook read by one narrator, with their scripts. Group ``out`` holds one reference per
trial for ``sound`` ([1, n] float64 at ``soundf`` Hz, 11025), ``script`` (uint16 characters) and
``name``. The clips are resampled to 16 kHz and written as ``<name>.flac``; the manifest has
``domain: speech``, ``speaker: naplib_narrator`` and the transcript, so ``workbench corpus build``
reads it like any other manifest. Needs ``pip install --no-deps naplib==2.6.0`` and h5py.

Usage::

    .venv/bin/python benchmarks/naplib_corpus.py --out work/naplib
    workbench corpus build work/naplib/manifest.jsonl --out work/naplib_corpus

Prints a JSON summary (clips, seconds, out).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np

from workbench.atomic import write_jsonl
from workbench.audio import resample, save_audio

SPEAKER = "naplib_narrator"


def demo_data_path() -> Path:
    spec = importlib.util.find_spec("naplib")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("naplib is not installed: .venv/bin/pip install --no-deps naplib==2.6.0")
    path = Path(list(spec.submodule_search_locations)[0]) / "io" / "sample_data" / "demo_data.mat"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: naplib's sample data is missing")
    return path


def _text(f, ref) -> str:
    return "".join(map(chr, np.asarray(f[ref][()]).ravel()))


def read_trials(path: Path) -> list[dict]:
    """``[{name, audio (float32), sr, script}]`` from naplib's demo_data.mat."""
    import h5py

    with h5py.File(path, "r") as f:
        out = f["out"]
        trials = []
        for i in range(out["sound"].shape[0]):
            sr = int(np.asarray(f[out["soundf"][i, 0]][()]).ravel()[0])
            audio = np.asarray(f[out["sound"][i, 0]][()], dtype=np.float32).ravel()
            trials.append({"name": _text(f, out["name"][i, 0]), "audio": audio, "sr": sr,
                           "script": " ".join(_text(f, out["script"][i, 0]).split())})
    return trials


def write_corpus(out: Path, sr: int = 16000) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for t in read_trials(demo_data_path()):
        audio = resample(t["audio"], t["sr"], sr)
        peak = float(np.abs(audio).max()) or 1.0
        save_audio(out / f"{t['name']}.flac", (0.9 / peak * audio).astype(np.float32), sr)
        rows.append({"id": f"naplib_{t['name']}", "path": f"{t['name']}.flac", "domain": "speech",
                     "speaker": SPEAKER, "transcript": t["script"].lower(), "duration_s": round(len(audio) / sr, 3),
                     "source": "naplib 2.6.0 io/sample_data/demo_data.mat", "license": "MIT (naplib)"})
    write_jsonl(out / "manifest.jsonl", rows)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder for the FLAC clips and manifest.jsonl")
    args = ap.parse_args()
    rows = write_corpus(Path(args.out))
    print(json.dumps({"clips": len(rows), "seconds": round(sum(r["duration_s"] for r in rows), 1), "out": args.out}))


if __name__ == "__main__":
    main()
