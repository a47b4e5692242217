"""Checks of user input at the boundary: argparse types, output folders, torch devices.

Every command validates what it can *before* it starts work (and before a model load of
several seconds), and every error names the argument or file. The argparse types raise
``argparse.ArgumentTypeError``, so argparse prints ``workbench X: error: argument --n: ...``
and exits with status 2; the other checks raise ``ValueError`` / ``FileExistsError`` /
``RuntimeError``, which the ``workbench`` entry point prints as one line.

Example
-------
>>> import argparse
>>> p = argparse.ArgumentParser(prog="demo", exit_on_error=False)
>>> _ = p.add_argument("--n", type=positive_int)
>>> _ = p.add_argument("--topk", type=int_list)
>>> p.parse_args(["--n", "3", "--topk", "1,4,16"])
Namespace(n=3, topk=[1, 4, 16])
>>> positive_int("-1")
Traceback (most recent call last):
...
argparse.ArgumentTypeError: must be a positive integer (>= 1), got '-1'
>>> probability("1.5")
Traceback (most recent call last):
...
argparse.ArgumentTypeError: must be a probability in [0, 1], got '1.5'
"""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

__all__ = ["positive_int", "non_negative_int", "positive_float", "non_negative_float", "probability",
           "int_list", "port", "torch_device", "check_device", "check_out_dir", "check_sae_cfg",
           "WorkbenchWarning"]


class WorkbenchWarning(UserWarning):
    """Base of the warnings a user must see (bad audio, odd rates): the ``workbench`` command
    shows them through ``logging``, whatever ``PYTHONWARNINGS`` or ``-W`` says."""


def _int(text: str, what: str) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    return value


def _float(text: str, what: str) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (counts: clips, frames, folds, steps)."""
    what = "a positive integer (>= 1)"
    value = _int(text, what)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (counts where 0 means "none", e.g. ``--splice-clips 0``)."""
    what = "a non-negative integer (>= 0)"
    value = _int(text, what)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite float > 0 (seconds, learning rates, regularisation strengths)."""
    what = "a positive number (> 0)"
    value = _float(text, what)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """A finite float >= 0."""
    what = "a non-negative number (>= 0)"
    value = _float(text, what)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def probability(text: str) -> float:
    """A float in [0, 1] (fractions, rates)."""
    what = "a probability in [0, 1]"
    value = _float(text, what)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def port(text: str) -> int:
    """A TCP port number, 1-65535."""
    value = _int(text, "a TCP port (1-65535)")
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port (1-65535), got {text!r}")
    return value


def int_list(text: str) -> list[int]:
    """Comma-separated positive integers, e.g. ``1,4,16,64`` (duplicates removed, order kept)."""
    parts = [p.strip() for p in str(text).split(",")]
    if not any(parts):
        raise argparse.ArgumentTypeError(f"must be comma-separated positive integers such as 1,4,16, got {text!r}")
    out: list[int] = []
    for p in parts:
        if not p:
            continue
        try:
            v = int(p)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be comma-separated positive integers such as 1,4,16; {p!r} in {text!r} is not one") from None
        if v < 1:
            raise argparse.ArgumentTypeError(f"must be comma-separated positive integers; {p!r} in {text!r} is < 1")
        if v not in out:
            out.append(v)
    return out


_CUDA_HELP = ("install a CUDA build of torch into .venv, e.g. `.venv/bin/pip install torch=={version} "
              "--index-url https://download.pytorch.org/whl/cu128` (see README), or use --device cpu")


def check_device(device: str | None) -> str | None:
    """``device`` if this torch can use it; otherwise ``RuntimeError`` saying why and what to do.

    ``None`` and ``"cpu"`` pass without importing torch. ``"cuda"`` / ``"cuda:N"`` need a CUDA
    build of torch and a visible GPU N; ``"mps"`` needs Apple's Metal backend.
    """
    if device is None or str(device) == "cpu":
        return device
    import torch

    try:
        dev = torch.device(str(device))
    except (RuntimeError, ValueError) as e:
        raise RuntimeError(f"--device {device}: not a torch device ({e}); use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if torch.version.cuda is None:
            help_ = _CUDA_HELP.format(version=torch.__version__.split("+")[0])
            raise RuntimeError(f"--device {device}: this torch ({torch.__version__}) has no CUDA; {help_}")
        n = torch.cuda.device_count()
        if n == 0 or not torch.cuda.is_available():
            raise RuntimeError(f"--device {device}: torch {torch.__version__} has CUDA {torch.version.cuda} but sees "
                               "no GPU (check the driver and CUDA_VISIBLE_DEVICES), or use --device cpu")
        if dev.index is not None and dev.index >= n:
            raise RuntimeError(f"--device {device}: only {n} GPU(s) visible (cuda:0 .. cuda:{n - 1})")
    elif dev.type == "mps":
        backend = getattr(torch.backends, "mps", None)
        if backend is None or not backend.is_available():
            raise RuntimeError(f"--device {device}: this torch has no usable MPS backend (Apple GPUs only); "
                               "use --device cpu")
    elif dev.type != "cpu":
        raise RuntimeError(f"--device {device}: unsupported device type {dev.type!r}; use cpu, cuda, cuda:N or mps")
    return device


def torch_device(text: str) -> str:
    """argparse type for ``--device``: :func:`check_device` at parse time (before any model load)."""
    try:
        return check_device(text)
    except RuntimeError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix(f"--device {text}: ")) from None


def check_out_dir(path: str | os.PathLike, *, resume: bool = False, flag: str = "--out",
                  resume_flag: str | None = "--resume", allow: tuple[str, ...] = ()) -> Path:
    """Check an output folder before any work: not an existing file, and empty unless resuming.

    ``resume_flag=None`` allows a non-empty folder (commands that continue or overwrite their
    own outputs); ``allow`` lists names that may be present in a "fresh" folder (e.g. a
    lock file). Creates nothing. Returns ``Path(path)``.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "log.txt").write_text("an earlier run")
    >>> check_out_dir(d, resume=False)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileExistsError: --out ... is not empty (log.txt); pass --resume to continue it, or choose a new --out
    >>> check_out_dir(d / "log.txt", resume_flag=None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileExistsError: --out .../log.txt is an existing file, not a folder; choose another --out
    >>> check_out_dir(d, resume=True) == d
    True
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise FileExistsError(f"{flag} {p} is an existing file, not a folder; choose another {flag}")
    parent = next((q for q in p.parents if q.exists()), None)
    if parent is not None and not parent.is_dir():
        raise NotADirectoryError(f"{flag} {p}: {parent} is a file, so the folder cannot be created")
    if parent is not None and not os.access(parent, os.W_OK) and not p.exists():
        raise PermissionError(f"{flag} {p}: cannot create it, {parent} is not writable")
    if p.is_dir() and resume_flag is not None and not resume:
        present = [q.name for q in p.iterdir() if q.name not in allow]
        if present:
            shown = ", ".join(sorted(present)[:5]) + (" ..." if len(present) > 5 else "")
            raise FileExistsError(f"{flag} {p} is not empty ({shown}); pass {resume_flag} to continue it, "
                                  f"or choose a new {flag}")
    return p


def check_sae_cfg(cfg: dict, tensors: dict, cfg_file: str | os.PathLike, weights_file: str | os.PathLike) -> None:
    """Validate a SAELens ``cfg.json`` against its weights; ``ValueError`` naming the file and field.

    ``d_in``/``d_sae`` must be the weights' sizes, ``k`` a whole number in 1..d_sae, hook and
    model names strings, and every tensor finite (a NaN threshold or weight is damage, not a
    setting). Fields that are absent are not required: they are read from the weights.
    """
    import torch

    w_enc = tensors.get("W_enc")
    if w_enc is None or w_enc.ndim != 2:
        return  # the reader names missing/malformed tensors itself
    d_in, d_sae = (int(s) for s in w_enc.shape)
    meta = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
    if "metadata" in cfg and not isinstance(cfg["metadata"], dict):
        raise ValueError(f"{cfg_file}: field 'metadata' must be an object, got {cfg['metadata']!r}")

    def whole(field: str, value) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or int(value) != value:
            raise ValueError(f"{cfg_file}: field {field!r} must be a whole number, got {value!r}")
        return int(value)

    for field, actual in (("d_in", d_in), ("d_sae", d_sae)):
        if cfg.get(field) is not None and whole(field, cfg[field]) != actual:
            raise ValueError(f"{cfg_file}: field {field!r} is {cfg[field]!r} but {weights_file} has {field}={actual} "
                             "(W_enc is [d_in, d_sae]): the cfg.json belongs to another SAE or was edited")
    for where, doc in (("", cfg), ("metadata.", meta)):
        if doc.get("k") is not None and not 1 <= whole(f"{where}k", doc["k"]) <= d_sae:
            raise ValueError(f"{cfg_file}: field '{where}k' must be between 1 and d_sae={d_sae}, got {doc['k']!r}")
        for field in ("hook_name", "model_name", "architecture"):
            if doc.get(field) is not None and not isinstance(doc[field], str):
                raise ValueError(f"{cfg_file}: field '{where}{field}' must be a string, got {doc[field]!r}")
    for name, t in tensors.items():
        if torch.is_tensor(t) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{weights_file}: tensor {name!r} holds NaN or infinite values (a damaged SAE)")
