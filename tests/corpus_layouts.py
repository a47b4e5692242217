"""Small corpora written in the exact layouts of TIMIT, LibriSpeech, Common Voice, FLEURS, ESC-50,
UrbanSound8K, FSD50K, MUSAN, WHAM! and a Hugging Face dataset, for the reader tests and the
metadata benchmark. Audio is short tones/noise (the readers never look at the content)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


def tone(n: int, seed: int = 0, freq: float | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = freq or float(rng.uniform(150, 900))
    t = np.arange(n) / SR
    return (0.3 * np.sin(2 * np.pi * f * t) + 0.02 * rng.standard_normal(n)).astype(np.float32)


def write_wav(path: Path, n: int = 1600, seed: int = 0, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(n, seed), SR, format=fmt)
    return path


def write_sphere(path: Path, samples: np.ndarray, sr: int = SR, coding: str = "pcm") -> Path:
    """A NIST SPHERE file as on the TIMIT discs (1024-byte ASCII header + little-endian int16)."""
    x = np.asarray(np.clip(samples, -1, 1) * 32767, dtype="<i2")
    header = (f"NIST_1A\n   1024\ndatabase_id -s5 TIMIT\nsample_count -i {len(x)}\nsample_rate -i {sr}\n"
              f"channel_count -i 1\nsample_n_bytes -i 2\nsample_byte_format -s2 01\n"
              f"sample_coding -s{len(coding)} {coding}\nsample_min -i {int(x.min())}\nsample_max -i {int(x.max())}\n"
              "end_head\n").encode("ascii").ljust(1024, b" ")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + x.tobytes())
    return path


# TIMIT phone and word files: "start end label" in samples (16 kHz)
TIMIT_PHN = [(0, 2260, "h#"), (2260, 3720, "sh"), (3720, 5337, "iy"), (5337, 5960, "hv"), (5960, 7000, "ae"),
             (7000, 7500, "dcl"), (7500, 8200, "jh"), (8200, 9600, "axr"), (9600, 12000, "h#")]
TIMIT_WRD = [(2260, 5337, "she"), (5337, 7500, "had"), (7500, 9600, "your")]


def timit(root: Path, speakers=("fcjf0", "mdab0"), utts=("sa1", "si1027")) -> Path:
    for split, dr, spk in (("TRAIN", "DR1", speakers[0]), ("TEST", "DR2", speakers[1])):
        for j, utt in enumerate(utts):
            d = root / split / dr / spk.upper()
            write_sphere(d / f"{utt.upper()}.WAV", tone(12000, seed=j))
            (d / f"{utt.upper()}.PHN").write_text("".join(f"{a} {b} {lab}\n" for a, b, lab in TIMIT_PHN))
            (d / f"{utt.upper()}.WRD").write_text("".join(f"{a} {b} {lab}\n" for a, b, lab in TIMIT_WRD))
            (d / f"{utt.upper()}.TXT").write_text("0 12000 She had your dark suit.\n")
    return root


def librispeech(root: Path) -> Path:
    for spk, chap in (("1272", "128104"), ("2277", "149896")):
        d = root / "dev-clean" / spk / chap
        lines = []
        for u in range(3):
            utt = f"{spk}-{chap}-{u:04d}"
            write_wav(d / f"{utt}.flac", seed=u, fmt="FLAC")
            lines.append(f"{utt} MISTER QUILTER IS THE APOSTLE {u}")
        (d / f"{spk}-{chap}.trans.txt").write_text("\n".join(lines) + "\n")
    return root


def commonvoice(root: Path) -> Path:
    header = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tlocale\tsegment\n"
    for split, ids in (("train", range(0, 4)), ("dev", range(4, 6))):
        rows = []
        for i in ids:
            name = f"common_voice_en_{100 + i}.wav"
            write_wav(root / "clips" / name, seed=i)
            rows.append(f"spk{i % 3}\t{name}\tSentence number {i}.\t2\t0\ttwenties\tfemale\t\ten\t\n")
        (root / f"{split}.tsv").write_text(header + "".join(rows))
    return root


def fleurs(root: Path) -> Path:
    for split, ids in (("train", range(3)), ("dev", range(3, 5))):
        rows = []
        for i in ids:
            name = f"{1000 + i}.wav"
            write_wav(root / "audio" / split / name, seed=i)
            rows.append(f"{i // 2}\t{name}\tRaw Text {i}.\traw text {i}\tr a w\t1600\tFEMALE\n")
        (root / f"{split}.tsv").write_text("".join(rows))
    return root


def esc50(root: Path, n: int = 8, write_audio: bool = True) -> Path:
    cats = ["dog", "rooster", "rain", "crying_baby"]
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    for i in range(n):
        name = f"{1 + i % 5}-{100032 + i // 2}-{'AB'[i % 2]}-{i % 4}.wav"
        if write_audio:
            write_wav(root / "audio" / name, n=800, seed=i)
        rows.append(f"{name},{1 + i % 5},{i % 4},{cats[i % 4]},True,{100032 + i // 2},{'AB'[i % 2]}")
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / "meta" / "esc50.csv").write_text("\n".join(rows) + "\n")
    return root


def urbansound8k(root: Path) -> Path:
    rows = ["slice_file_name,fsID,start,end,salience,fold,classID,class"]
    for i in range(6):
        fold = 1 + i % 2
        name = f"{100032 + i // 3}-3-0-{i}.wav"
        write_wav(root / "audio" / f"fold{fold}" / name, n=800, seed=i)
        rows.append(f"{name},{100032 + i // 3},0.0,0.3,1,{fold},3,{['dog_bark', 'siren'][i % 2]}")
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    (root / "metadata" / "UrbanSound8K.csv").write_text("\n".join(rows) + "\n")
    return root


def fsd50k(root: Path) -> Path:
    gt = root / "FSD50K.ground_truth"
    gt.mkdir(parents=True, exist_ok=True)
    (gt / "dev.csv").write_text('fname,labels,mids,split\n64760,"Electric_guitar,Guitar",/m/02sgy,train\n'
                                '16399,"Bark,Dog",/m/05tny_,val\n')
    (gt / "eval.csv").write_text('fname,labels,mids\n37199,"Rain",/m/06mb1\n')
    for part, names in (("dev", ("64760", "16399")), ("eval", ("37199",))):
        for i, n in enumerate(names):
            write_wav(root / f"FSD50K.{part}_audio" / f"{n}.wav", n=800, seed=i)
    return root


def musan(root: Path) -> Path:
    for domain, coll in (("music", "fma"), ("noise", "free-sound"), ("speech", "librivox")):
        for i in range(2):
            write_wav(root / domain / coll / f"{domain}-{coll}-{i:04d}.wav", n=800, seed=i)
    return root


def wham(root: Path) -> Path:
    for split in ("tr", "cv", "tt"):
        for i in range(2):
            write_wav(root / "wham_noise" / split / f"{split}{i}_noise.wav", n=800, seed=i)
    return root


def hf_dataset(root: Path) -> Path:
    """A ``datasets`` DatasetDict saved with ``save_to_disk``: audio bytes embedded, a ClassLabel, text."""
    import datasets

    def flac(seed):
        buf = io.BytesIO()
        sf.write(buf, tone(1600, seed), SR, format="FLAC")
        return buf.getvalue()

    feat = datasets.Features({"audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
                              "sentence": datasets.Value("string"), "speaker_id": datasets.Value("int64"),
                              "label": datasets.ClassLabel(names=["speech", "music"])})
    splits = {}
    for split, ids in (("train", range(3)), ("test", range(3, 5))):
        ds = datasets.Dataset.from_dict(
            {"audio": [{"bytes": flac(i), "path": f"utt{i}.flac"} for i in ids],
             "sentence": [f"hello number {i}" for i in ids], "speaker_id": [i % 2 for i in ids],
             "label": [i % 2 for i in ids]}, features=feat)
        splits[split] = ds.cast_column("audio", datasets.Audio(sampling_rate=SR, decode=False))
    datasets.DatasetDict(splits).save_to_disk(str(root))
    return root
