"""A feature's output effect: ablate and amplify one SAE feature in Whisper and see what changes.

For a few clips where the feature fires, the transcript and the first decoding step's most likely
tokens are computed three times: unchanged, with the feature ablated (``scale`` 0) and amplified
(``scale`` ``AMPLIFY``), through :class:`workbench.steering.Steering` (the edit keeps the SAE's
reconstruction error, so only that feature's contribution changes). Runs in the app's worker thread;
results are kept per (SAE, feature) so a second request is instant.

Example
-------
>>> eff = output_effect(model, "encoder.blocks.1.hook_resid_post", "saes/b1/HOOK", 384, 42,
...                     [("clip1", audio)])                                   # doctest: +SKIP
>>> eff["clips"][0]["ablated"]["text"]                                        # doctest: +SKIP
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

AMPLIFY = 5.0
CONDITIONS = (("unchanged", None), ("ablated", 0.0), ("amplified", AMPLIFY))
TOP_TOKENS = 5


def first_step_tokens(model, audio: np.ndarray, k: int = TOP_TOKENS) -> list[tuple[str, float]]:
    """The ``k`` most likely first tokens after the decoder prompt (token text, probability),
    with whatever hooks are active on ``model``."""
    import torch

    feats = model._features([np.asarray(audio, dtype=np.float32)[: 30 * 16000]])
    prompt = torch.tensor([model.prompt_ids()], dtype=torch.long)
    with torch.no_grad():
        logits = model.hf(input_features=feats, decoder_input_ids=prompt).logits[0, -1].float()
    p = logits.softmax(-1)
    top = p.topk(k)
    return [(model.tokenizer.decode([int(i)]), round(float(v), 4)) for v, i in zip(top.values, top.indices)]


def output_effect(model, hook: str, sae_dir: str, d_model: int, feature: int,
                  clips: Sequence[tuple[str, np.ndarray]], progress: Callable[[str, float], None] | None = None) -> dict:
    """``{"feature", "amplify", "clips": [{"clip", cond: {"text", "first_tokens"}}]}`` (see module docstring)."""
    from workbench.steering import Steering

    if not hasattr(model, "transcribe") or not hasattr(model, "prompt_ids"):
        raise ValueError(f"{getattr(model, 'name', model)} has no decoder: the output effect needs a Whisper model")
    base = Steering(model=getattr(model, "spec", "") or "model", hook=hook, d_model=d_model, method="sae",
                    sae=str(sae_dir), edit="scale", strength=1.0, features=[{"index": int(feature)}], n_features=1)
    out = []
    for i, (name, audio) in enumerate(clips):
        row = {"clip": name}
        for j, (cond, strength) in enumerate(CONDITIONS):
            if progress:
                progress(f"{name}: {cond}", (i * len(CONDITIONS) + j) / (len(clips) * len(CONDITIONS)))
            if strength is None:
                row[cond] = {"text": model.transcribe(audio), "first_tokens": first_step_tokens(model, audio)}
                continue
            with base.with_(strength=strength).applied(model, check=False):
                row[cond] = {"text": model.transcribe(audio), "first_tokens": first_step_tokens(model, audio)}
        out.append(row)
    return {"feature": int(feature), "amplify": AMPLIFY, "clips": out}
