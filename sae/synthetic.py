"""Synthetic activations with known structure, for tests and for benchmarks without a cache.

Example
-------
>>> data = planted_dictionary(n=1000, d=16, n_atoms=32, active=3, seed=0)
>>> data.X.shape, data.atoms.shape, data.active.shape
(torch.Size([1000, 16]), torch.Size([32, 16]), torch.Size([1000, 3]))
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Planted:
    X: torch.Tensor        # [n, d] frames
    atoms: torch.Tensor    # [n_atoms, d] unit-norm ground-truth directions
    active: torch.Tensor   # [n, active] indices of the atoms in each frame
    coef: torch.Tensor     # [n, active] their coefficients


def planted_dictionary(n: int, d: int, n_atoms: int, active: int, noise: float = 0.01, seed: int = 0,
                       coef_range: tuple[float, float] = (0.5, 2.5)) -> Planted:
    """Frames that are sums of ``active`` distinct random unit atoms with uniform coefficients, plus noise."""
    g = torch.Generator().manual_seed(seed)
    atoms = torch.randn(n_atoms, d, generator=g)
    atoms /= atoms.norm(dim=1, keepdim=True)
    idx = torch.rand(n, n_atoms, generator=g).argsort(dim=1)[:, :active]  # distinct atoms per frame
    lo, hi = coef_range
    coef = lo + (hi - lo) * torch.rand(n, active, generator=g)
    X = (coef[:, :, None] * atoms[idx]).sum(dim=1) + noise * torch.randn(n, d, generator=g)
    return Planted(X, atoms, idx, coef)


def gaussian_mixture(n: int, d: int, n_components: int = 256, seed: int = 0, spread: float = 0.5) -> torch.Tensor:
    """``[n, d]`` frames from a mixture of Gaussians with random means (a stand-in for real activations)."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n_components, d, generator=g) * 2.0
    scales = torch.rand(n_components, 1, generator=g) * spread + 0.1
    comp = torch.randint(0, n_components, (n,), generator=g)
    return means[comp] + scales[comp] * torch.randn(n, d, generator=g)


def best_cosine(decoder: torch.Tensor, atoms: torch.Tensor) -> torch.Tensor:
    """For each atom, the highest cosine with any decoder row."""
    a = torch.nn.functional.normalize(atoms.float(), dim=1)
    w = torch.nn.functional.normalize(decoder.float(), dim=1)
    return (a @ w.T).max(dim=1).values
