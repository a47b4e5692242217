"""Batch-Top-K sparse autoencoders on audio-model activations: training, formats, evaluation.

Example
-------
>>> import sae, torch
>>> data = {"h": torch.randn(8192, 32)}
>>> saes = sae.train(data, cfg=sae.TrainConfig(expansion=4, k=8, tokens=16384, batch_size=1024), verbose=False)
>>> saes["h"].encode(torch.randn(3, 32)).shape
torch.Size([3, 128])
"""
import workbench  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
from workbench.lazy import lazy_package

__all__ = ["BatchTopKSAE", "SAEConfig", "TrainConfig", "Recipe", "Runtime", "train", "load_sae", "save_sae", "TrainingDiverged"]
# the names above load on first use (workbench.lazy: the CLI starts without torch/scikit-learn)
lazy_package(__name__, {"Recipe": "sae.config", "Runtime": "sae.config", "SAEConfig": "sae.config",
                        "TrainConfig": "sae.config", "load_sae": "sae.io", "save_sae": "sae.io",
                        "BatchTopKSAE": "sae.model", "TrainingDiverged": "sae.train", "train": "sae.train"})
