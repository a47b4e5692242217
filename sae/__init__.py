"""Batch-Top-K sparse autoencoders on audio-model activations: training, formats, evaluation.

Example
-------
>>> import sae, torch
>>> data = {"h": torch.randn(8192, 32)}
>>> saes = sae.train(data, cfg=sae.TrainConfig(expansion=4, k=8, tokens=16384, batch_size=1024), verbose=False)
>>> saes["h"].encode(torch.randn(3, 32)).shape
torch.Size([3, 128])
"""
from sae.config import SAEConfig, TrainConfig
from sae.io import load_sae, save_sae
from sae.model import BatchTopKSAE
from sae.train import TrainingDiverged, train

__all__ = ["BatchTopKSAE", "SAEConfig", "TrainConfig", "train", "load_sae", "save_sae", "TrainingDiverged"]
