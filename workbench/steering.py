"""Steering a model through its activations: the one reader and applier of a steering artifact.

A steering artifact is a directory (written by ``workbench steer fit``, read here so that the core
CLI and the app can steer without importing ``sae``)::

    STEER_DIR/
      steering.json   what to edit and how (below)
      sweep.csv       the dev-split sweep over N and strength (one row per setting)
      pareto.html     hallucination rate vs WER of the sweep (plotly)
      eval/eval.json  held-out evaluation, written by ``workbench steer eval``

``steering.json`` (format ``workbench.steering/1``):

- ``model`` (spec, e.g. ``whisper-tiny.en``), ``hook`` (e.g. ``encoder.blocks.3.hook_resid_post``),
  ``d_model`` (width of the hook);
- ``method``: ``"sae"`` (edit SAE codes; ``sae`` is the SAE directory, read with
  :class:`workbench.features.FeatureDictionary`) or ``"direction"`` (``direction``: the raw difference
  of class means, concept minus rest, as a list of ``d_model`` floats; ``midpoint``: the projection
  of the midpoint between the class means on the unit direction, used by the frame gate);
- ``features``: ranked list of ``{"index", "effect_size", "auroc", ...}`` (``method`` sae); the first
  ``n_features`` are edited;
- ``edit`` and ``strength`` ``s``. SAE edits change only the chosen codes and keep the SAE's
  reconstruction error: ``x' = x + sum_f (z'_f - z_f) d_f`` with ``z'_f`` = ``s z_f`` (``scale``:
  1 = unchanged, 0 = ablated, -1 = negated), ``(1 - s) z_f`` (``ablate``: 1 = ablated), ``-s z_f``
  (``negate``) or ``s`` (``clamp``). Direction edits with ``u`` the direction: ``x - s (x.û) û``
  (``project``, û = u / |u|) or ``x - s u`` (``subtract``; negative ``s`` adds the concept);
- ``method`` ``"vector"``: an optimised vector (``direction``, trained by :mod:`sae.steer.vector`),
  edit ``add``: ``x + s v`` (``add`` also applies to ``direction``);
- SAE edit ``clamp_target``: ``z'_f = z_f + s (t_f - z_f)`` with ``t_f`` = the feature record's
  ``target`` (its typical value on the concept's frames): ``s`` = 0 unchanged, 1 clamped to the target;
- ``gate``: ``"none"``, ``"frame"`` (edit only frames where a chosen feature fires, or, for a
  direction, whose projection on û is above ``midpoint``) or ``"detector"``: ``detector`` =
  ``{"weight", "bias", "level": "clip"|"frame", "space": "acts"|"sae", "features"}``, a linear
  detector (logit ``f.w + b`` on the activations, or on the codes of the listed SAE features) that
  lets the edit act on frames with a positive logit (``frame``) or on a whole window whose mean logit
  over its real frames is positive (``clip``; :meth:`Steering.applied` finds the real frames of each
  Whisper window);
- values are validated on load (:mod:`workbench.steering_check`): non-finite numbers, feature indices
  that are negative, not integers or outside the SAE get one error naming the file and the field;
- ``layers`` (methods ``direction``/``vector``, gate ``none``): more hooks edited at once, each
  ``{"hook", "direction"}`` with the same edit and strength (e.g. an optimised vector at blocks 2 and
  3, trained jointly by :mod:`sae.steer.vector`); empty = one hook;
- ``concept`` and ``selection`` (how features were chosen: scores, significance bar, fit clips),
  ``sweep`` (dev clips, WER budget, chosen point), ``command`` (the command that wrote it).

Edits act through ``model.hooks``: for Whisper encoder hooks they run once per 30 s window, so the
decoder reads the edited encoder states at every step; all 1500 positions of a window are edited
(the gate decides per frame).

Example
-------
>>> steering = Steering.load("work/steer/steering/tiny_sae")              # doctest: +SKIP
>>> with steering.applied(model):                                         # doctest: +SKIP
...     text = model.transcribe(audio)
>>> louder = steering.with_(features=[12, 40], strength=8.0)              # doctest: +SKIP

A direction edit on a toy stream (no artifact on disk needed):

>>> import torch
>>> s = Steering(model="toy", hook="h", d_model=2, method="direction", edit="project", strength=1.0,
...              direction=[1.0, 0.0])
>>> s.edit_fn()(torch.tensor([[3.0, 4.0]]))
tensor([[0., 4.]])
>>> s.with_(strength=0.0).edit_fn()(torch.tensor([[3.0, 4.0]]))
tensor([[3., 4.]])
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from workbench.atomic import read_json, write_json

log = logging.getLogger(__name__)

FORMAT = "workbench.steering/1"
STEERING_FILE = "steering.json"
SAE_EDITS = ("scale", "ablate", "negate", "clamp", "clamp_target")
DIRECTION_EDITS = ("project", "subtract", "add")
METHODS = ("sae", "direction", "vector")
GATES = ("none", "frame", "detector")


def canonical_model(spec: str | None) -> str:
    """Model spec with hub ids mapped to their offline alias, so both name the same weights."""
    from workbench.models.whisper import HUB_TO_OFFLINE

    spec = str(spec or "")
    return HUB_TO_OFFLINE.get(spec, spec)


@dataclass
class Steering:
    """A steering edit at one hook (see the module docstring for the file format)."""

    model: str
    hook: str
    d_model: int
    method: str  # "sae" | "direction"
    edit: str
    strength: float
    features: list[dict] = field(default_factory=list)
    n_features: int | None = None
    sae: str | None = None
    direction: list[float] | None = None
    midpoint: float = 0.0
    gate: str = "none"
    detector: dict | None = None
    layers: list[dict] = field(default_factory=list)
    concept: str | None = None
    selection: dict = field(default_factory=dict)
    sweep: dict = field(default_factory=dict)
    command: str | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        from workbench.steering_check import check_fields

        check_fields(self)  # types, finite values, index ranges: errors name the field
        if self.method == "sae" and self.n_features is None:
            self.n_features = len(self.features)
        self._fd = None
        self._device_cache: dict = {}

    # --- files --------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> Steering:
        """Read ``path/steering.json`` (or the file itself); errors name the file."""
        path = Path(path)
        file = path if path.is_file() else path / STEERING_FILE
        if not file.is_file():
            raise FileNotFoundError(f"not a steering artifact: {file} is missing "
                                    "(write one with `workbench steer fit`)")
        d = read_json(file)  # a damaged file: ValueError naming it, with line and column
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            got = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"{file}: expected format {FORMAT!r}, got {got!r}")
        names = {f.name for f in dataclasses.fields(cls)} - {"path"}
        missing = [k for k in ("model", "hook", "d_model", "method", "edit", "strength") if k not in d]
        if missing:
            raise ValueError(f"{file}: missing keys {missing}")
        try:
            s = cls(**{k: v for k, v in d.items() if k in names}, path=str(file.parent))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{file}: {e}") from None
        if s.sae and not Path(s.sae).is_absolute():  # relative SAE paths are relative to the artifact
            s.sae = str((file.parent / s.sae).resolve())
        if s.method == "sae" and Path(s.sae).is_dir():  # feature indices against the SAE, now
            try:
                _ = s.dictionary  # loading validates the feature indices
            except ValueError as e:
                raise ValueError(f"{file}: {e}") from None
        return s

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "path"}
        return {"format": FORMAT, **d}

    def save(self, path: str | Path) -> Path:
        """Write ``path/steering.json`` atomically; returns the file."""
        return write_json(Path(path) / STEERING_FILE, self.to_dict())

    # --- variants -----------------------------------------------------------------------------
    def with_(self, *, features: Sequence[int] | None = None, n_features: int | None = None,
              strength: float | None = None, edit: str | None = None, gate: str | None = None,
              detector: dict | None = None) -> Steering:
        """A copy with other settings, e.g. for live steering in the app.

        ``features``: explicit SAE feature indices (ranked entries are kept for listed indices that
        have scores); ``n_features``: use the first N ranked features; ``strength``/``edit``/``gate``.
        """
        new = dataclasses.replace(self, features=list(self.features), selection=dict(self.selection),
                                  sweep=dict(self.sweep), layers=[dict(x) for x in self.layers])
        if features is not None:
            if self.method != "sae":
                raise ValueError("features= applies to an SAE steering, not a direction")
            scored = {int(f["index"]): f for f in self.features}
            new.features = [scored.get(int(i), {"index": int(i)}) for i in features]
            new.n_features = len(new.features)
        if n_features is not None:
            if not 0 <= n_features <= len(new.features):
                raise ValueError(f"n_features={n_features}: only {len(new.features)} ranked features")
            new.n_features = int(n_features)
        if strength is not None:
            new.strength = float(strength)
        if edit is not None:
            new.edit = edit
        if gate is not None:
            new.gate = gate
        if detector is not None:
            new.detector = dict(detector)
        new.__post_init__()
        new._fd = self._fd  # share the loaded SAE (read-only: devices get their own copies)
        return new

    @property
    def chosen(self) -> list[int]:
        """SAE feature indices that are edited (empty for a direction)."""
        return [int(f["index"]) for f in self.features[: self.n_features or 0]] if self.method == "sae" else []

    @property
    def is_identity(self) -> bool:
        """True for N = 0 or a zero-strength direction: nothing is attached. (A zero change in SAE
        space, e.g. ``scale`` 1, is still computed: ``x + 0`` is ``x`` exactly, SAE error kept.)"""
        if self.method == "sae":
            return not self.chosen or (self.edit == "clamp_target" and self.strength == 0.0)
        return self.strength == 0.0

    def describe(self) -> str:
        what = {"sae": f"{len(self.chosen)} SAE features", "direction": "the class-mean direction",
                "vector": "the optimised vector"}[self.method]
        where = " + ".join([self.hook] + [x["hook"] for x in self.layers])
        return f"{self.edit} {what} at {where} (strength {self.strength:g}, gate {self.gate})"

    # --- applying -----------------------------------------------------------------------------
    @property
    def dictionary(self):
        """The SAE as a :class:`~workbench.features.FeatureDictionary` (method ``sae``), loaded once
        and never modified (each device gets its own copy in :meth:`_tensors`)."""
        if self._fd is None and self.method == "sae":
            from workbench.features import FeatureDictionary
            from workbench.steering_check import check_sae

            fd = FeatureDictionary.load(self.sae)
            check_sae(self, fd)
            self._fd = fd
        return self._fd

    def _tensors(self, device: torch.device) -> dict[str, torch.Tensor]:
        key = (str(device), self.n_features, tuple(self.chosen))
        if key not in self._device_cache:
            if self.method == "sae":
                fd = self.dictionary
                local = copy.copy(fd)  # the shared dictionary stays where it is
                local.W_enc, local.b_enc, local.b_dec = fd.W_enc.to(device), fd.b_enc.to(device), fd.b_dec.to(device)
                local.threshold = None if fd.threshold is None else fd.threshold.to(device)
                target = [float(f.get("target", 0.0)) for f in self.features[: self.n_features or 0]]
                t = {"fd": local, "W_dec": fd.W_dec[self.chosen].to(device),
                     "idx": torch.tensor(self.chosen, device=device),
                     "target": torch.tensor(target, dtype=torch.float32, device=device)}
            else:
                u = torch.tensor(self.direction, dtype=torch.float32, device=device)
                t = {"u": u, "unit": u / u.norm().clamp_min(1e-12)}
            if self.gate == "detector":
                t["det_w"] = torch.tensor(self.detector["weight"], dtype=torch.float32, device=device)
                t["det_idx"] = torch.tensor(self.detector.get("features") or [], dtype=torch.long, device=device)
            self._device_cache = {key: t}
        return self._device_cache[key]

    def edit_fn(self, lengths: Callable[[], list[int] | None] | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
        """``act [..., d_model] -> edited act`` (same dtype); returns ``act`` itself when :attr:`is_identity`.

        ``lengths()`` gives the real (unpadded) frame count of each batch row, for the clip-level
        detector gate (:meth:`applied` supplies it for Whisper; without it all frames count)."""

        @torch.no_grad()
        def fn(act: torch.Tensor) -> torch.Tensor:
            if self.is_identity:
                return act
            if act.shape[-1] != self.d_model:
                raise ValueError(f"steering for {self.hook} expects width {self.d_model}, got {tuple(act.shape)}")
            x = act.float()
            t = self._tensors(x.device)
            z = None
            if self.method == "sae":
                delta, fires, z = self._sae_delta(x, t)
            else:
                proj = x @ t["unit"]
                delta = {"project": lambda: -self.strength * proj[..., None] * t["unit"],
                         "subtract": lambda: -self.strength * t["u"],
                         "add": lambda: self.strength * t["u"]}[self.edit]()
                fires = proj > self.midpoint
            if self.gate == "frame":
                delta = delta * fires[..., None]
            elif self.gate == "detector":
                delta = delta * self._detect(x, z, t, lengths() if lengths else None)[..., None]
            return (x + delta).to(act.dtype)

        return fn

    def _detect(self, x: torch.Tensor, z, t: dict, lengths) -> torch.Tensor:
        """Where the detector gate lets the edit act (bool ``[..., T]``): its logit ``f.w + b`` > 0 per
        frame (``level`` frame) or its mean over each row's real frames > 0 (``level`` clip)."""
        det = self.detector
        f = z if det.get("space", "acts") == "sae" else x  # sae: codes of the detector's features
        logit = f @ t["det_w"] + float(det.get("bias", 0.0))
        if det.get("level", "frame") == "frame":
            return logit > 0
        T = logit.shape[-1]
        rows = logit.reshape(-1, T)
        n = [T] * rows.shape[0] if not lengths or len(lengths) != rows.shape[0] else [max(1, min(T, k)) for k in lengths]
        mean = torch.stack([r[:k].mean() for r, k in zip(rows, n)])
        return (mean > 0)[:, None].expand(-1, T).reshape(logit.shape)

    def _sae_delta(self, x: torch.Tensor, t: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        full = t["fd"].encode(x)
        z = full[..., t["idx"]]
        s = self.strength
        new = {"scale": lambda: s * z, "ablate": lambda: (1.0 - s) * z, "negate": lambda: -s * z,
               "clamp": lambda: torch.full_like(z, s), "clamp_target": lambda: z + s * (t["target"] - z)}[self.edit]()
        det_idx = t.get("det_idx")
        codes = full[..., det_idx] if det_idx is not None and len(det_idx) else None
        return (new - z) @ t["W_dec"], (z > 0).any(-1), codes

    def hooks(self, lengths: Callable[[], list[int] | None] | None = None) -> dict[str, Callable]:
        """``{hook: edit}`` for ``model.hooks(...)`` (empty when the edit is the identity); one entry per
        hook of a multi-layer edit (``layers``)."""
        if self.is_identity:
            return {}
        out = {self.hook: self.edit_fn(lengths)}
        for x in self.layers:  # the same edit and strength at each further hook, with its own direction
            out[x["hook"]] = dataclasses.replace(self, hook=x["hook"], direction=x["direction"], layers=[]).edit_fn()
        return out

    def check_model(self, model) -> None:
        """Refuse a model this artifact was not made for (other hook set, other width, other weights)."""
        where = f"steering {self.path or ''}".strip()
        for hook in [self.hook] + [x["hook"] for x in self.layers]:
            if hook not in model.hook_points:
                raise ValueError(f"{where} edits {hook}, which {model.name} does not have "
                                 f"(made for {self.model})")
        info = model.info()
        width = info.get("d_model")
        if width is not None and int(width) != self.d_model:
            raise ValueError(f"{where} was made for {self.model} (width {self.d_model} at {self.hook}); "
                             f"{model.spec or model.name} has width {width}")
        if self.model and canonical_model(model.spec) != canonical_model(self.model):
            raise ValueError(f"{where} was made for model {self.model!r}, not {model.spec or model.name!r}")

    @contextlib.contextmanager
    def applied(self, model, check: bool = True) -> Iterator[Steering]:
        """``with steering.applied(model): model.transcribe(x)`` runs with the edit in place."""
        if check:
            self.check_model(model)
        with contextlib.ExitStack() as stack:
            lengths = None
            if self.gate == "detector" and (self.detector or {}).get("level") == "clip":
                lengths = stack.enter_context(_window_frames(model))
            stack.enter_context(model.hooks(self.hooks(lengths)))
            yield self


@contextlib.contextmanager
def _window_frames(model) -> Iterator[Callable[[], list[int] | None]]:
    """Real encoder frames of each window the model encodes next (Whisper pads every window to 30 s
    with zeros, whose log-mel columns are all equal: the real part ends at the last column that
    differs from the final one). Yields a getter; ``None`` where the model is not a Whisper."""
    encoder = getattr(getattr(getattr(model, "hf", None), "model", None), "encoder", None)
    if encoder is None:
        yield lambda: None
        return
    seen: dict[str, list[int]] = {}

    def pre(_module, args, kwargs):
        feats = args[0] if args else kwargs.get("input_features")
        if feats is not None:
            differs = (feats != feats[..., -1:]).any(1)  # [B, mel frames]
            last = torch.where(differs.any(-1), differs.float().cumsum(-1).argmax(-1) + 1,
                               torch.full_like(differs[:, 0], differs.shape[-1], dtype=torch.long))
            seen["n"] = [int((k + 1) // 2) for k in last.tolist()]  # two mel frames per encoder frame

    handle = encoder.register_forward_pre_hook(pre, with_kwargs=True)
    try:
        yield lambda: seen.get("n")
    finally:
        handle.remove()
