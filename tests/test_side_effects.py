"""Issue 19, defect 9: nothing a library call does may outlive it process-wide. Training restores
torch's thread count (also after an error), overlapping probe solves restore it in any exit order,
importing ``sae.sparse`` leaves torch's sparse-invariant setting alone, and the encoder's scratch
buffer belongs to the trainer, not to the module."""
from __future__ import annotations

import importlib.util
import threading

import pytest
import torch

import sae.sparse as sparse
from sae import TrainConfig, train
from workbench.compute import torch_threads

HOOK = "h"


def _data(n: int = 512, d: int = 16) -> dict:
    return {HOOK: torch.randn(n, d, generator=torch.Generator().manual_seed(0))}


@pytest.fixture
def threads_at_3():
    """Start the test at 3 torch threads (a value no default uses), restore afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    yield 3
    torch.set_num_threads(before)


def test_train_restores_the_thread_count(threads_at_3):
    train(_data(), [HOOK], TrainConfig(expansion=2, k=4, tokens=512, batch_size=128, threads=1, dtype="float32"), verbose=False)
    assert torch.get_num_threads() == threads_at_3


def test_train_restores_the_thread_count_after_an_error(threads_at_3):
    bad = _data()
    bad[HOOK][300:] = float("nan")  # the first batches are fine; a later one diverges
    with pytest.raises(Exception):
        train(bad, [HOOK], TrainConfig(expansion=2, k=4, tokens=2048, batch_size=128, threads=1, dtype="float32",
                                       scale_estimate_frames=128, seed=1), verbose=False)
    assert torch.get_num_threads() == threads_at_3


def test_overlapping_probe_solves_restore_the_thread_count(threads_at_3):
    """Two solves on two threads, the first to start ends first: the old save/restore pair left the
    second one's setting (1) in force; the count before both (3) must come back."""
    from probes.estimator import _threads_for

    a, b = _threads_for(0, n_threads=2), _threads_for(0, n_threads=1)
    a.__enter__()
    b.__enter__()
    assert torch.get_num_threads() == 1
    a.__exit__(None, None, None)
    b.__exit__(None, None, None)
    assert torch.get_num_threads() == threads_at_3


def test_torch_threads_from_several_threads(threads_at_3):
    start, done = threading.Barrier(4), []

    def job(n):
        with torch_threads(n):
            start.wait()
        done.append(n)

    workers = [threading.Thread(target=job, args=(n,)) for n in (1, 2, 1, 2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sorted(done) == [1, 1, 2, 2] and torch.get_num_threads() == threads_at_3


def test_importing_sparse_keeps_torch_sparse_checks():
    """A user who enables sparse-tensor invariant checks keeps them after ``import sae.sparse``
    (the module used to disable them for the whole process at import)."""
    checks = torch.sparse.check_sparse_tensor_invariants
    was = checks.is_enabled()
    checks.enable()
    try:
        spec = importlib.util.spec_from_file_location("sae_sparse_fresh", sparse.__file__)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))  # the module's import-time code, again
        assert checks.is_enabled()
        # and its CSR tensors are still built (valid, so they also pass the checks the user asked for)
        p = sparse.SparsePattern(torch.tensor([0, 1]), torch.tensor([2, 0]), 2, 3)
        assert p.csr(torch.tensor([1.0, 2.0])).to_dense().tolist() == [[0, 0, 1], [2, 0, 0]]
    finally:
        checks.enable() if was else checks.disable()


def test_scratch_buffer_is_owned_by_the_caller():
    g = torch.Generator().manual_seed(0)
    x, W, b = torch.randn(700, 32, generator=g), torch.randn(256, 32, generator=g), torch.randn(256, generator=g)
    fresh = sparse.encode_select(x, W, b, 700 * 4, dtype=torch.float32)  # big enough for the chunked path
    scratch = sparse.Scratch()
    first = sparse.encode_select(x, W, b, 700 * 4, dtype=torch.float32, scratch=scratch)
    ptr = scratch.buf.data_ptr()
    again = sparse.encode_select(x, W, b, 700 * 4, dtype=torch.float32, scratch=scratch)
    assert scratch.buf.data_ptr() == ptr  # reused between calls
    for u, v, w in zip(fresh[:3], first[:3], again[:3]):
        assert torch.equal(u, v) and torch.equal(v, w)
    # nothing module-level holds a tensor (the old module kept a [chunk, d_sae] buffer for the process)
    held = [k for k, v in vars(sparse).items() if isinstance(v, torch.Tensor)
            or (isinstance(v, dict) and any(isinstance(t, torch.Tensor) for t in v.values()))]
    assert held == []
