"""torch.distributed support for caching: each rank caches its share of the clips.

Under ``torchrun --nproc_per_node N -m workbench cache ...`` every rank runs the same
command; :func:`init_from_env` joins the process group (gloo on CPU, nccl on GPU) and
:class:`Dist` gives the few collectives the cache needs (barrier, broadcast of small
Python objects from rank 0). Rank 0 prepares the directory and merges the index;
every rank writes only its own shard files, so ranks never touch the same file.

Without torchrun (or with one process) everything degrades to a no-op ``Dist(0, 1)``.

Example
-------
$ torchrun --nproc_per_node 2 -m workbench cache --model whisper-tiny.en \\
      --corpus data/manifest.jsonl --hooks 'encoder.blocks.*.hook_resid_post' --out work/cache
"""
from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any, Sequence, TypeVar

import torch

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Dist:
    """Rank and world size plus the collectives used by the cache writer."""

    rank: int = 0
    world_size: int = 1

    @classmethod
    def current(cls) -> "Dist":
        """The active process group, or a single-process ``Dist`` when there is none."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (pickled; for small control messages only)."""
        if self.world_size == 1:
            return obj
        import torch.distributed as dist

        box = [obj if self.rank == 0 else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def share(self, items: Sequence[T], weights: Sequence[float] | None = None) -> list[T]:
        """This rank's contiguous slice of ``items``, balanced by ``weights`` (e.g. durations).

        Contiguous slices keep each rank's clips in corpus order, which makes the merged
        cache identical to a single-process one.
        """
        return list(items[slice(*share_bounds(len(items), self.rank, self.world_size, weights))])


def share_bounds(n: int, rank: int, world_size: int, weights: Sequence[float] | None = None) -> tuple[int, int]:
    """``(start, stop)`` of rank's contiguous block of ``n`` items with about equal total weight."""
    if world_size <= 1 or n == 0:
        return 0, n
    import numpy as np

    w = np.ones(n) if weights is None else np.clip(np.asarray(weights, dtype=np.float64), 0.0, None)
    if not w.sum() > 0:
        w = np.ones(n)
    mids = np.cumsum(w) - w / 2  # item i goes to the rank whose share holds its midpoint
    owner = np.minimum((mids / w.sum() * world_size).astype(np.int64), world_size - 1)
    return int(np.searchsorted(owner, rank, "left")), int(np.searchsorted(owner, rank + 1, "left"))


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def init_from_env(device: str | None = None, timeout_hours: float = 24.0) -> tuple[Dist, str]:
    """Join the torchrun process group if launched by torchrun; returns ``(Dist, device)``.

    ``device`` None picks ``cuda:<LOCAL_RANK>`` (nccl) when CUDA is available, else CPU
    (gloo). The long timeout lets ranks with more audio finish before the final barrier.
    """
    import torch.distributed as dist

    if not launched_by_torchrun():
        return Dist(), device or ("cuda" if torch.cuda.is_available() else "cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    use_cuda = str(device).startswith("cuda")
    if use_cuda:
        if str(device) == "cuda":
            device = f"cuda:{local_rank}"
        torch.cuda.set_device(torch.device(device))
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo", timeout=datetime.timedelta(hours=timeout_hours)
        )
    d = Dist.current()
    logger.info("rank %d/%d on %s", d.rank, d.world_size, device)
    return d, device


def shutdown() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
