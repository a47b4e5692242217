"""ESPnet adapter beyond the common contract: a clear error naming the extra, CTC phone recognition
that interventions reach. The contract tests (tests/test_adapter_contract.py) cover hooks and frames."""
from __future__ import annotations

import builtins

import numpy as np
import pytest

from workbench.models import family_of


def test_specs_resolve_to_the_espnet_family(tmp_path):
    assert family_of("espnet/powsm") == family_of("espnet/owsm_v3.1_ebf") == family_of("espnet-random") == "espnet"
    (tmp_path / "config.yaml").write_text("encoder: e_branchformer\n")
    assert family_of(str(tmp_path)) == "espnet"


def test_missing_espnet_names_the_extra(monkeypatch):
    from workbench.models import espnet

    real = builtins.__import__

    def no_espnet(name, *a, **k):
        if name.startswith("espnet2"):
            raise ImportError("No module named 'espnet2'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_espnet)
    with pytest.raises(espnet.MissingESPnetError, match=r"\[espnet\]"):
        espnet.load("espnet-random")


def test_ctc_phone_recognition_follows_interventions():
    pytest.importorskip("espnet2", reason="the optional `espnet` extra is not installed")
    import torch

    from workbench.models.espnet import PHONES, random_espnet

    model = random_espnet(seed=0)
    audio = (np.random.default_rng(0).standard_normal(16000) * 0.1).astype(np.float32)
    phones = model.recognize(audio).split()
    assert phones and set(phones) <= set(PHONES) - {"<blank>"}
    # force the CTC posterior to phone "AA" everywhere: recognition must read the edited stream
    aa = PHONES.index("AA")

    def only_aa(lp):
        out = torch.full_like(lp, -30.0)
        out[..., aa] = 0.0
        return out

    with model.hooks({"ctc.hook_log_probs": only_aa}):
        assert model.recognize(audio) == "AA"
    assert model.transcribe(audio) == model.recognize(audio)  # no hub beam search: greedy CTC
