"""The SAEs a bench compares, read through :class:`workbench.features.FeatureDictionary`.

:func:`find_saes` expands each ``--sae`` argument (one SAE directory, a training run with one
sub-folder per hook, or a dictionary_learning / AudioSAE ``ae.pt``) into named SAEs;
:class:`BenchSAE` gives a FeatureDictionary the small interface the evaluation code of
:mod:`sae.metrics`, :mod:`sae.analyses` and :mod:`sae.splice` calls (``encode(x, mode)``,
``decode``, ``sae(x)``, ``cfg.hook_name``, ``W_dec``).

Example
-------
>>> for name, sae in find_saes(["work/saes/run1", "work/dl/ae.pt"]):      # doctest: +SKIP
...     print(name, sae.d_sae, sae.cfg.hook_name)
"""
from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import torch

from workbench.features import FeatureDictionary, is_sae_dir


class BenchSAE:
    """A :class:`~workbench.features.FeatureDictionary` with the call signature of ``sae.model``'s SAE.

    ``mode`` is accepted and ignored: a saved SAE has one inference rule (JumpReLU with its
    threshold; top-k per frame or ReLU without one).
    """

    def __init__(self, fd: FeatureDictionary, name: str = "", fmt: str = "saelens") -> None:
        self.fd, self.name, self.format = fd, name or Path(fd.path).name, fmt
        self.cfg = SimpleNamespace(hook_name=fd.hook_name or "", model_name=fd.model_name or "", k=fd.k)

    d_in = property(lambda self: self.fd.d_in)
    d_sae = property(lambda self: self.fd.d_sae)
    W_dec = property(lambda self: self.fd.W_dec)
    path = property(lambda self: self.fd.path)

    def encode(self, x, mode: str | None = None) -> torch.Tensor:
        return self.fd.encode(torch.as_tensor(x).float())

    def decode(self, z) -> torch.Tensor:
        return self.fd.decode(z)

    def __call__(self, x, mode: str | None = None) -> torch.Tensor:
        return self.decode(self.encode(x))

    def encode_numpy(self, X, batch_size: int = 8192):
        return self.fd.encode_numpy(X, batch_size)


def load_bench_sae(path: str | os.PathLike, name: str = "") -> BenchSAE:
    """An SAE directory (SAELens layout) or an ``ae.pt`` (dictionary_learning / AudioSAE) as a :class:`BenchSAE`.

    ``ae.pt`` files are parsed by :func:`sae.io.load_sae` (the one parser of that layout) and handed
    over as a FeatureDictionary, so every SAE is encoded by the same inference code.
    """
    path = Path(path)
    if path.is_dir() and is_sae_dir(path):
        return BenchSAE(FeatureDictionary.load(path), name, "saelens")
    from sae.io import detect_format, load_sae

    fmt = detect_format(path)  # raises FileNotFoundError naming the path when it holds no SAE
    m = load_sae(path, format=fmt)
    thr = float(m.threshold)
    fd = FeatureDictionary(m.W_enc.detach().t().contiguous().float(), m.b_enc.detach().float(),
                           m.W_dec.detach().float(), m.b_dec.detach().float(),
                           torch.full((m.d_sae,), thr) if thr >= 0 else None,
                           {"hook_name": m.cfg.hook_name, "model_name": m.cfg.model_name, "k": m.cfg.k,
                            "apply_b_dec_to_input": True}, str(path))
    return BenchSAE(fd, name, fmt)


def _sae_paths(path: Path) -> list[Path]:
    if is_sae_dir(path) or (path / "ae.pt").is_file() or path.is_file():
        return [path]
    found = sorted({p.parent for pat in ("*/cfg.json", "*/ae.pt") for p in path.glob(pat)})
    if not found:
        raise FileNotFoundError(f"no SAE in {path}: expected cfg.json + sae_weights.safetensors, an ae.pt, "
                                "or sub-folders (one per hook) holding them")
    return found


def find_saes(args) -> list[tuple[str, Path]]:
    """``[(name, path)]`` for the ``--sae`` arguments; a name is the argument's folder name, plus the
    hook folder for a training run with several hooks (``run1/encoder.blocks.3.hook_resid_post``)."""
    out: list[tuple[str, Path]] = []
    for arg in args:
        arg = Path(arg)
        paths = _sae_paths(arg)
        base = arg.parent.name if arg.is_file() else arg.name
        for p in paths:
            name = base if p == arg else f"{base}/{p.name}"
            if any(name == n for n, _ in out):
                name = f"{name}#{len(out)}"
            out.append((name, p))
    return out
