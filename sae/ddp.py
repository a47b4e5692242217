"""Data-parallel SAE training under torchrun: the few collectives the trainer needs.

Each rank holds a full copy of every SAE and trains on its own block of each global batch
(:meth:`sae.data.BatchSource.epoch` with ``part``). What makes N ranks train *the same SAE* as
one process, step for step:

- the batch top-k is global: each rank selects its local top ``k * N_global`` candidates, the
  candidates' values are all-gathered, and every rank keeps its entries above the global cut
  (ties go to the earliest frame, rank by rank, as in one process);
- losses are sums over the rank's frames divided by the global frame count, and the gradients
  (dense, and the sparse decoder/encoder row gradients, which are dense tensors with zero rows)
  are summed with one all-reduce of a flat buffer, so every rank takes the same optimizer step;
- AuxK's normaliser, the threshold statistic (global min of the selected values), the
  dead-feature firing counts and the logged metrics are reduced across ranks.

Without torchrun :data:`LOCAL` makes every call a no-op. The trainer's sparse kernels run on
the CPU (numpy index work), so training uses gloo even on GPU machines.

Example
-------
>>> comm = Collective()              # one process: no-ops
>>> comm.world_size, float(comm.sum(torch.tensor([2.0]))[0])
(1, 2.0)

$ torchrun --nproc_per_node 2 -m workbench sae train --cache work/cache --hook 'encoder.blocks.*.hook_resid_post' \\
      --tokens 8000000 --out work/saes
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch

from workbench.cache.distributed import Dist


class Collective:
    """All-reduce / all-gather helpers over the default process group (no-ops for one process)."""

    def __init__(self, dist: Dist | None = None) -> None:
        self.dist = dist or Dist()

    @property
    def rank(self) -> int:
        return self.dist.rank

    @property
    def world_size(self) -> int:
        return self.dist.world_size

    @property
    def is_main(self) -> bool:
        return self.dist.rank == 0

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over ranks (in place)."""
        if self.world_size > 1:
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
        return t

    def min(self, t: torch.Tensor) -> torch.Tensor:
        if self.world_size > 1:
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
        return t

    def barrier(self) -> None:
        self.dist.barrier()

    def broadcast_(self, tensors: Iterable[torch.Tensor]) -> None:
        """Rank 0's values into ``tensors`` on every rank (in place)."""
        if self.world_size > 1:
            with torch.no_grad():  # into the storage of parameters, outside autograd's graph
                for t in tensors:
                    torch.distributed.broadcast(t.detach(), src=0)

    def sum_grads_(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Sum the gradients of ``params`` over ranks with one all-reduce of a flat float32 buffer."""
        if self.world_size == 1:
            return
        params = [p for p in params if p.grad is not None]
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        torch.distributed.all_reduce(flat, op=torch.distributed.ReduceOp.SUM)
        offset = 0
        for p in params:
            n = p.grad.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
            offset += n

    def global_top(self, rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor,
                   n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Of each rank's candidates (its local top ``n``, row-major), the ones in the global top ``n``.

        Ties at the cut go to the earliest entries, lower ranks first: ranks hold consecutive
        blocks of the global batch, so this is the single-process rule (``sparse._exact_cut``).
        """
        if self.world_size == 1:
            return rows, cols, vals
        W = self.world_size
        sizes = torch.tensor([vals.numel()], dtype=torch.int64)
        all_sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(W)]
        torch.distributed.all_gather(all_sizes, sizes)
        all_sizes = [int(s) for s in all_sizes]
        width = max(1, max(all_sizes))
        padded = torch.full((width,), -float("inf"), dtype=torch.float32)
        padded[: vals.numel()] = vals.float()
        gathered = torch.empty(W * width, dtype=torch.float32)
        torch.distributed.all_gather_single(gathered, padded)
        parts = [gathered[r * width : r * width + all_sizes[r]].numpy() for r in range(W)]
        every = np.concatenate(parts)
        if every.size <= n:
            return rows, cols, vals
        kth = np.partition(every, every.size - n)[every.size - n]
        above = [int((p > kth).sum()) for p in parts]
        ties = [int((p == kth).sum()) for p in parts]
        quota = n - sum(above)  # ties to hand out, to lower ranks first
        mine = int(np.clip(quota - sum(ties[: self.rank]), 0, ties[self.rank]))
        v = vals.numpy()
        keep = v > kth
        keep[np.flatnonzero(v == kth)[:mine]] = True
        keep_t = torch.from_numpy(keep)
        return rows[keep_t], cols[keep_t], vals[keep_t]


LOCAL = Collective()
