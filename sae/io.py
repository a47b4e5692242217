"""Save SAEs in the layouts other tools read, and convert saved ones to :class:`~sae.model.BatchTopKSAE`.

Reading SAELens files is :class:`workbench.features.FeatureDictionary`'s job (the one reader and
encoder); :func:`load_sae` converts what it read (:func:`from_feature_dictionary`), so both agree
on ``apply_b_dec_to_input``, ``k`` and the threshold. A missing ``k`` is an error, never 50.

- ``"saelens"`` (default): ``cfg.json`` + ``sae_weights.safetensors`` with ``W_enc [d_in, d_sae]``,
  ``b_enc``, ``W_dec [d_sae, d_in]``, ``b_dec`` and a per-feature ``threshold`` (architecture
  ``"jumprelu"``, the inference form of a Batch-Top-K SAE in SAELens).
- ``"dictionary_learning"``: ``ae.pt`` (state dict of its ``BatchTopKSAE``: ``encoder.weight
  [d_sae, d_in]``, ``encoder.bias``, ``decoder.weight [d_in, d_sae]``, ``b_dec``, ``k``,
  ``threshold``) + ``config.json`` (``{"trainer": {...}}``).
- ``"audiosae"``: AudioSAE's released ``ae.pt`` (same keys; ``threshold`` only when present).

Example
-------
>>> path = save_sae(sae, "work/saes/l3")                      # doctest: +SKIP
>>> sae = load_sae("work/saes/l3", d_in=384, hook="encoder.blocks.3.hook_resid_post")  # doctest: +SKIP
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from sae.config import SAEConfig
from workbench.atomic import atomic_path, read_json, write_json
from workbench.features import FeatureDictionary

FORMATS = ("saelens", "dictionary_learning", "audiosae")


def save_sae(sae, path: str | os.PathLike, format: str = "saelens") -> Path:
    """Write ``sae`` into directory ``path`` in ``format`` (see module docstring); returns ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().float().contiguous() for k, v in sae.state_dict().items()}
    cfg, thr = sae.cfg, float(sae.threshold)
    if format == "saelens":
        weights = {"W_enc": sd["W_enc"].t().contiguous(), "b_enc": sd["b_enc"], "W_dec": sd["W_dec"],
                   "b_dec": sd["b_dec"]}
        if thr >= 0:
            weights["threshold"] = torch.full((cfg.d_sae,), thr)
        meta = {"hook_name": cfg.hook_name, "model_name": cfg.model_name, "k": cfg.k, "expansion": cfg.expansion,
                "trained_as": "batchtopk", "threshold_learned": thr >= 0, **cfg.metadata}
        doc = {"architecture": "jumprelu" if thr >= 0 else "topk", "d_in": cfg.d_in, "d_sae": cfg.d_sae,
               "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": True, "normalize_activations": "none",
               "reshape_activations": "none", "k": cfg.k, "metadata": meta}
        with atomic_path(path / "sae_weights.safetensors") as tmp:
            save_file(weights, str(tmp))
        write_json(path / "cfg.json", doc, indent=2, default=str)
    elif format in ("dictionary_learning", "audiosae"):
        if thr < 0 and format == "dictionary_learning":
            raise ValueError(f"{path}: this SAE has no learned threshold; dictionary_learning's BatchTopKSAE would "
                             "read the placeholder -1 as a threshold and encode as a dense ReLU. Save it as "
                             "'saelens' (architecture 'topk', per-frame top-k) or 'audiosae' (no threshold) instead")
        state = {"encoder.weight": sd["W_enc"], "encoder.bias": sd["b_enc"], "decoder.weight": sd["W_dec"].t().contiguous(),
                 "b_dec": sd["b_dec"], "k": torch.tensor(cfg.k, dtype=torch.int)}
        if thr >= 0:
            state["threshold"] = torch.tensor(thr, dtype=torch.float32)
        with atomic_path(path / "ae.pt") as tmp:
            torch.save(state, tmp)
        if format == "dictionary_learning":
            trainer = {"trainer_class": "BatchTopKTrainer", "dict_class": "BatchTopKSAE", "activation_dim": cfg.d_in,
                       "dict_size": cfg.d_sae, "k": cfg.k, "lm_name": cfg.model_name, "submodule_name": cfg.hook_name,
                       "layer": None}
            write_json(path / "config.json", {"trainer": trainer}, indent=2)
    else:
        raise ValueError(f"unknown SAE format {format!r}; choose one of {FORMATS}")
    return path


def detect_format(path: str | os.PathLike) -> str:
    path = Path(path)
    if path.is_dir():
        if (path / "sae_weights.safetensors").is_file():
            return "saelens"
        if (path / "ae.pt").is_file():
            return "dictionary_learning" if (path / "config.json").is_file() else "audiosae"
        raise FileNotFoundError(f"{path} holds no SAE: expected cfg.json + sae_weights.safetensors (SAELens) or ae.pt")
    if path.suffix == ".safetensors":
        return "saelens"
    if path.suffix in (".pt", ".pth"):
        return "audiosae"
    raise FileNotFoundError(f"no SAE at {path}")


def load_sae(path: str | os.PathLike, d_in: int | None = None, hook: str | None = None, format: str | None = None):
    """Load an SAE from ``path`` (format detected unless given).

    ``d_in`` (e.g. ``cache.d_model(hook)``) is checked against the SAE's input size; a mismatch
    raises ``ValueError`` naming both sizes, the file and the hook.
    """
    from sae.model import BatchTopKSAE

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no SAE at {path}")
    fmt = format or detect_format(path)
    if fmt == "saelens":
        cfg, state, thr = _read_saelens(path)
    elif fmt in ("dictionary_learning", "audiosae"):
        cfg, state, thr = _read_ae_pt(path)
    else:
        raise ValueError(f"unknown SAE format {fmt!r}; choose one of {FORMATS}")
    if d_in is not None and int(d_in) != cfg.d_in:
        where = f" hook {hook!r}" if hook else " the activations"
        raise ValueError(f"SAE {path} has d_in={cfg.d_in} but{where} has d_model={int(d_in)}: "
                         "it was trained on a different model or layer")
    sae = BatchTopKSAE(cfg)
    with torch.no_grad():
        for name, t in state.items():
            getattr(sae, name).copy_(t)
        sae.threshold.fill_(thr)
    return sae


def _read_saelens(path: Path):
    """Read with the workbench's one SAELens reader (:class:`workbench.features.FeatureDictionary`)
    and convert to this package's :class:`~sae.model.BatchTopKSAE` state."""
    folder = path if path.is_dir() else path.parent
    weights_file = path if path.is_file() else folder / "sae_weights.safetensors"
    fd = FeatureDictionary.from_files(weights_file, folder / "cfg.json", folder)
    return from_feature_dictionary(fd, where=weights_file)


def from_feature_dictionary(fd: FeatureDictionary, where: str | os.PathLike = ""):
    """``(SAEConfig, state, threshold)`` of a :class:`~sae.model.BatchTopKSAE` that encodes exactly
    like ``fd`` (format conversion, no second inference rule).

    ``apply_b_dec_to_input = False`` (the encoder reads ``x``, not ``x - b_dec``) folds ``b_dec``
    into the encoder bias: ``x W + b = (x - b_dec) W + (b + b_dec W)``. A missing ``k`` or
    per-feature thresholds are refused with a message naming the file, never defaulted.
    """
    where = where or fd.path
    d_in, d_sae = fd.d_in, fd.d_sae
    meta = dict(fd.cfg.get("metadata") or {})
    k = fd.k
    if k is None:
        raise ValueError(f"{where}: cfg.json gives no k (top level, metadata.k or activation_fn_kwargs.k); a "
                         "Batch-Top-K SAE needs it (workbench.features reads it as a ReLU/threshold SAE without)")
    thr_t = fd.threshold
    thr = float(thr_t.mean()) if thr_t is not None else -1.0
    if thr_t is not None and float(thr_t.max() - thr_t.min()) > 1e-6 * max(1.0, abs(thr)):
        raise ValueError(f"{where} has per-feature thresholds; this Batch-Top-K SAE supports one shared threshold")
    b_enc = fd.b_enc if fd.apply_b_dec_to_input else fd.b_enc + fd.b_dec @ fd.W_enc
    cfg = SAEConfig(d_in=d_in, d_sae=d_sae, k=min(int(k), d_sae), expansion=max(1, d_sae // d_in),
                    hook_name=meta.pop("hook_name", fd.cfg.get("hook_name", "")) or "",
                    model_name=meta.pop("model_name", fd.cfg.get("model_name", "")) or "",
                    metadata={k2: v for k2, v in meta.items() if k2 not in ("k", "expansion")})
    state = {"W_enc": fd.W_enc.t(), "b_enc": b_enc, "W_dec": fd.W_dec, "b_dec": fd.b_dec}
    return cfg, {k2: v.float().contiguous() for k2, v in state.items()}, thr


def _read_ae_pt(path: Path):
    folder = path if path.is_dir() else path.parent
    pt = path / "ae.pt" if path.is_dir() else path
    try:
        sd = torch.load(pt, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"cannot read SAE checkpoint {pt}: {e}") from e
    for key in ("state_dict", "model", "ae"):  # some releases wrap the state dict
        if isinstance(sd, dict) and isinstance(sd.get(key), dict) and "encoder.weight" not in sd:
            sd = sd[key]
    need = ("encoder.weight", "encoder.bias", "decoder.weight", "b_dec")
    missing = [k for k in need if k not in sd]
    if missing:
        raise ValueError(f"{pt} is missing {missing}; expected an AudioSAE / dictionary_learning ae.pt (keys: {sorted(sd)})")
    W_enc = sd["encoder.weight"].float()
    d_sae, d_in = W_enc.shape
    dec = sd["decoder.weight"].float()
    W_dec = dec.t() if dec.shape == (d_in, d_sae) else dec  # nn.Linear(d_sae, d_in).weight is [d_in, d_sae]
    if W_dec.shape != (d_sae, d_in):
        raise ValueError(f"{pt}: decoder.weight has shape {tuple(dec.shape)}, expected ({d_in}, {d_sae})")
    conf = {}
    if (folder / "config.json").is_file():
        conf = read_json(folder / "config.json").get("trainer", {})
    if "k" not in sd and "k" not in conf:
        raise ValueError(f"{pt}: no k in the checkpoint or its config.json; a Batch-Top-K SAE needs it")
    k = int(sd["k"]) if "k" in sd else int(conf["k"])
    thr = float(sd["threshold"]) if "threshold" in sd else -1.0
    cfg = SAEConfig(d_in=int(d_in), d_sae=int(d_sae), k=min(k, int(d_sae)), expansion=max(1, int(d_sae) // int(d_in)),
                    hook_name=str(conf.get("submodule_name") or ""), model_name=str(conf.get("lm_name") or ""))
    state = {"W_enc": W_enc, "b_enc": sd["encoder.bias"].float(), "W_dec": W_dec, "b_dec": sd["b_dec"].float()}
    return cfg, state, thr
