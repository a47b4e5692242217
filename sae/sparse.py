"""Sparse kernels for Batch-Top-K training on CPU: exact batch top-k selection and sparse autograd.

Only the encoder matmul is dense. Everything after the selection touches the ``k * N`` selected
(frame, feature) pairs only: decoding gathers the selected decoder rows
(``torch.nn.functional.embedding_bag`` with per-sample weights), and the backward pass uses
the same gather-and-sum for ``codes^T @ dense`` (entries regrouped by feature) and a sampled
dense-dense product (``torch.sparse.sampled_addmm``) instead of three more ``[N, d] x [d, m]``
matmuls.

Example
-------
>>> pre = torch.randn(64, 512)
>>> rows, cols, vals = select_batch_topk(pre, 64 * 8)
>>> len(vals), bool(torch.equal(vals.sort().values, pre.flatten().topk(512).values.sort().values))
(512, True)
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from workbench.numeric import bf16_bits_to_float32

#: below this many entries an exact ``torch.topk`` over the flat batch is cheap enough
_SMALL = 1 << 15
#: rows per chunk when thresholding, so the chunk stays in cache between compare and nonzero
_CHUNK_ROWS = 64


def _csr(crow, col, vals, shape) -> torch.Tensor:
    with warnings.catch_warnings():  # "CSR support is in beta" is not news to us
        warnings.simplefilter("ignore", UserWarning)
        # we build valid CSR: skip the checks for this tensor only (never toggle torch's global setting)
        return torch.sparse_csr_tensor(crow, col, vals, shape, check_invariants=False)


def _pointer(sorted_ids: np.ndarray, n: int) -> np.ndarray:
    """CSR-style pointer: entries with id i are ``[ptr[i], ptr[i + 1])`` of the sorted ids."""
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(sorted_ids, minlength=n), out=ptr[1:])
    return ptr


class SparsePattern:
    """Positions of the selected entries of an ``[n_rows, n_cols]`` code matrix, sorted row-major.

    Holds the CSR row pointer and, lazily, the column-major permutation used by the backward pass.
    """

    def __init__(self, rows: torch.Tensor, cols: torch.Tensor, n_rows: int, n_cols: int,
                 gather_dtype: torch.dtype = torch.float32) -> None:
        self.rows, self.cols = rows, cols
        self.n_rows, self.n_cols = int(n_rows), int(n_cols)
        #: dtype of the gathered rows in (t_)matmul (bfloat16 halves the memory traffic); sums come back float32
        self.gather_dtype = gather_dtype
        # index bookkeeping in numpy: single-threaded, no OpenMP start-up per tiny op
        self.crow = torch.from_numpy(_pointer(rows.numpy(), self.n_rows))
        self._by_col: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @property
    def nnz(self) -> int:
        return int(self.rows.numel())

    def by_col(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(order, rows[order], ccol)``: the stable permutation sorting entries by column, the
        rows in that order and the column pointer (for ``codes^T @ dense`` products)."""
        if self._by_col is None:
            cols = self.cols.numpy()
            # a stable sort of 16-bit keys is a radix sort in numpy: ~10x faster than on int64
            keys = cols.astype(np.uint16) if self.n_cols <= 1 << 16 else cols
            order = np.argsort(keys, kind="stable")
            self._by_col = (torch.from_numpy(order), self.rows[torch.from_numpy(order)],
                            torch.from_numpy(_pointer(cols[order], self.n_cols)))
        return self._by_col

    def csr(self, vals: torch.Tensor) -> torch.Tensor:
        return _csr(self.crow, self.cols, vals, (self.n_rows, self.n_cols))

    def t_matmul(self, vals: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """``codes^T @ dense`` -> ``[n_cols, D]`` where codes hold ``vals`` at this pattern."""
        order, rows_by_col, ccol = self.by_col()
        return self._bag(rows_by_col, dense, ccol, vals[order])

    def matmul(self, vals: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """``codes @ dense`` -> ``[n_rows, D]`` (gathers only the selected rows of ``dense``)."""
        return self._bag(self.cols, dense, self.crow, vals)

    def _bag(self, index, dense, pointer, weights) -> torch.Tensor:
        dt = self.gather_dtype
        out = torch.nn.functional.embedding_bag(index, dense.to(dt), pointer[:-1], mode="sum",
                                                per_sample_weights=weights.to(dt))
        return out.float()

    def to_dense(self, vals: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(self.n_rows, self.n_cols, dtype=vals.dtype)
        out[self.rows, self.cols] = vals
        return out


def select_batch_topk(pre: torch.Tensor, n: int, exact_below: int = _SMALL) -> tuple[torch.Tensor, ...]:
    """The ``n`` largest positive entries of a 2-D ``pre`` (any float dtype), as ``(rows, cols, vals)``.

    Entries come back sorted row-major, values as float32. Ties at the cut are broken arbitrarily;
    if fewer than ``n`` entries are positive, all positive entries are returned (ReLU first).
    Large matrices avoid a full sort: a threshold estimated on a strided sample keeps a few
    more than ``n`` candidates, and an exact top-k runs on those. The scan compares the raw bits
    as integers in numpy (for non-negative IEEE floats the integer order is the value order, and
    negative values have the sign bit set), several times faster than ``torch.gt`` + ``nonzero``
    on bfloat16 here.
    """
    if pre.dim() != 2:
        raise ValueError(f"select_batch_topk expects a 2-D [N, m] tensor, got shape {tuple(pre.shape)}")
    n_rows, n_cols = pre.shape
    n = int(min(max(n, 0), pre.numel()))
    if pre.numel() <= exact_below or pre.dtype not in _INT_VIEW:
        flat = pre.reshape(-1).float()
        vals, idx = flat.topk(n, sorted=False)
        idx = torch.sort(idx[vals > 0], stable=True).values
        return idx // n_cols, idx % n_cols, flat[idx]
    pre = pre.contiguous()
    bits = pre.view(_INT_VIEW[pre.dtype]).numpy()
    margin = 0.15
    thr = _estimate_threshold(bits, n, margin)
    while True:
        idx = _flat_above(bits, thr)
        if len(idx) >= n or thr <= 0:
            break
        margin *= 3
        lower = _estimate_threshold(bits, n, margin)
        thr = lower if lower < thr else thr // 2
    return _exact_cut(idx, _as_float32(bits.reshape(-1)[idx], pre.dtype), n, n_cols)


def _exact_cut(idx: np.ndarray, vals: np.ndarray, n: int, n_cols: int) -> tuple[torch.Tensor, ...]:
    """Keep the ``n`` largest candidates (ties go to the earliest, row-major) -> (rows, cols, vals)."""
    if len(vals) > n:
        kth = np.partition(vals, len(vals) - n)[len(vals) - n]
        keep = vals > kth
        ties = np.flatnonzero(vals == kth)[: n - int(keep.sum())]
        keep[ties] = True
        idx, vals = idx[keep], vals[keep]
    rows, cols = np.divmod(idx, n_cols)
    return torch.from_numpy(rows), torch.from_numpy(cols), torch.from_numpy(vals)


class Scratch:
    """The reused ``[chunk_rows, d_sae]`` matmul buffer of :func:`encode_select`, owned by its caller
    (the trainer keeps one per SAE): a fresh buffer per call would page-fault every step, and a
    module-level one would be shared by every SAE and thread in the process and never freed."""

    def __init__(self) -> None:
        self.buf: torch.Tensor | None = None

    def get(self, rows: int, cols: int, dtype: torch.dtype) -> torch.Tensor:
        if self.buf is None or self.buf.shape != (rows, cols) or self.buf.dtype != dtype:
            self.buf = torch.empty(rows, cols, dtype=dtype)
        return self.buf


def encode_select(x_c: torch.Tensor, W_enc: torch.Tensor, b_enc: torch.Tensor, n: int, bf16: bool = True,
                  dead_idx: torch.Tensor | None = None, chunk_rows: int = 1024, dtype: torch.dtype | None = None,
                  scratch: Scratch | None = None):
    """The dense encoder pass fused with the batch top-k scan: ``(rows, cols, vals, dead_pre)``.

    ``pre = x_c @ W_enc^T + b_enc`` is computed ``chunk_rows`` frames at a time into one reused
    buffer and scanned while it is still in cache, so the full ``[N, d_sae]`` matrix is never
    written to memory. The threshold comes from the first chunk (frames are shuffled) with a 20%
    margin; if the candidates fall short of ``n`` the pass is redone with a lower one.
    ``dead_pre`` holds the (float32) pre-activations of the ``dead_idx`` columns for AuxK.
    ``dtype`` of the matmul (float32 or bfloat16; default from the older ``bf16`` flag).
    ``scratch`` holds the chunk buffer between calls (None: a fresh one for this call).
    """
    dtype = dtype or (torch.bfloat16 if bf16 else torch.float32)
    N, m = x_c.shape[0], W_enc.shape[0]
    n = int(min(n, N * m))
    if N * m <= _SMALL * 4:
        pre = torch.addmm(b_enc.detach().to(dtype), x_c.detach().to(dtype), W_enc.detach().t().to(dtype))
        dead_pre = pre.index_select(1, dead_idx).float() if dead_idx is not None else None
        return (*select_batch_topk(pre, n), dead_pre)
    buf, int_dtype = (scratch or Scratch()).get(chunk_rows, m, dtype), _INT_VIEW[dtype]
    # the bias rides in the matmul as an extra input column of ones (cheaper than addmm's broadcast);
    # written straight into the matmul dtype: one conversion pass over the weights, not a cat and a copy
    d = x_c.shape[1]
    xq = torch.empty(N, d + 1, dtype=dtype)
    xq[:, :d].copy_(x_c.detach())
    xq[:, d] = 1
    W_q = torch.empty(m, d + 1, dtype=dtype)
    W_q[:, :d].copy_(W_enc.detach())
    W_q[:, d].copy_(b_enc.detach())
    W_t = W_q.t()
    thr, prev_thr, margin = None, None, 0.2
    while True:
        idx_parts, val_parts, dead_parts = [], [], []
        for a in range(0, N, chunk_rows):
            out = buf[: min(chunk_rows, N - a)]
            torch.mm(xq[a : a + chunk_rows], W_t, out=out)
            bits = out.view(int_dtype).numpy()
            if thr is None:
                guess = _estimate_threshold(bits, n * out.shape[0] / N, margin)
                thr = guess if prev_thr is None or guess < prev_thr else prev_thr // 2
            flat = bits.reshape(-1)
            hit = np.flatnonzero(flat > thr)
            val_parts.append(_as_float32(flat[hit], dtype))
            idx_parts.append(hit + a * m)
            if dead_idx is not None:
                dead_parts.append(out.index_select(1, dead_idx).float())
        idx, vals = np.concatenate(idx_parts), np.concatenate(val_parts)
        if len(idx) >= n or thr <= 0:
            break
        prev_thr, thr, margin = thr, None, margin * 3
    dead_pre = torch.cat(dead_parts) if dead_idx is not None else None
    return (*_exact_cut(idx, vals, n, m), dead_pre)


def _as_float32(raw: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    """float32 values from raw bits of ``dtype`` (bfloat16 is the top half of a float32)."""
    if dtype == torch.bfloat16:
        return bf16_bits_to_float32(raw)
    if dtype == torch.float16:
        return raw.view(np.float16).astype(np.float32)
    return raw.view(np.float32).copy()


_INT_VIEW = {torch.bfloat16: torch.int16, torch.float16: torch.int16, torch.float32: torch.int32}


def _estimate_threshold(bits: np.ndarray, n: int, margin: float) -> int:
    """Bit pattern of a value with about ``n * (1 + margin)`` entries above it, from a strided sample.

    The sample is sized so that about 400 sampled entries lie above the estimate (a ~5% count
    error, well inside the margin), between 16k and 128k entries. Never below 0 (ReLU).
    """
    n_rows, n_cols = bits.shape
    frac = min(1.0, n * (1.0 + margin) / bits.size)
    want = int(min(131072, max(16384, 400 / max(frac, 1e-12))))
    row_step = max(1, n_rows // 256)
    col_step = max(1, (n_rows // row_step) * n_cols // want)
    sample = bits[::row_step, ::col_step].ravel()
    above = int(frac * sample.size)
    if above >= sample.size:
        return 0
    if above < 1:
        return max(0, int(sample.max()))
    return max(0, int(np.partition(sample, sample.size - above)[sample.size - above]))


def _flat_above(bits: np.ndarray, thr: int) -> np.ndarray:
    """Flat (row-major) int64 indices of entries whose bits exceed ``thr``, chunk by chunk (cache-sized)."""
    flat = bits.reshape(-1)
    step = _CHUNK_ROWS * bits.shape[1]
    parts = []
    for a in range(0, flat.size, step):
        hit = np.flatnonzero(flat[a : a + step] > thr)
        parts.append(hit + a if a else hit)
    return np.concatenate(parts).astype(np.int64, copy=False) if len(parts) > 1 else parts[0].astype(np.int64)


class SelectedPreActs(torch.autograd.Function):
    """Selected pre-activations ``W_enc[j] . (x_i - b_dec) + b_enc[j]`` with a sparse backward.

    ``vals`` are the values computed in the dense (no-grad) encoder pass; the backward sends
    gradients to ``W_enc`` (rows of selected features only), ``b_enc`` and ``b_dec``.
    """

    @staticmethod
    def forward(ctx, vals, x_c, b_dec, W_enc, b_enc, pattern: SparsePattern):
        ctx.save_for_backward(x_c, W_enc)
        ctx.pattern = pattern
        return vals.clone()

    @staticmethod
    def backward(ctx, g):
        x_c, W_enc = ctx.saved_tensors
        p: SparsePattern = ctx.pattern
        g = g.contiguous()
        grad_b_enc = torch.from_numpy(np.bincount(p.cols.numpy(), weights=g.numpy(), minlength=p.n_cols)).to(g.dtype)
        grad_W_enc = p.t_matmul(g, x_c) if ctx.needs_input_grad[3] else None
        # d pre / d b_dec = -W_enc[j] for every selected (i, j): a vector-matrix product
        grad_b_dec = -(grad_b_enc @ W_enc) if ctx.needs_input_grad[2] else None
        return None, None, grad_b_dec, grad_W_enc, grad_b_enc if ctx.needs_input_grad[4] else None, None


class SparseDecode(torch.autograd.Function):
    """``codes @ W_dec`` for sparse codes (no bias), gathering only the selected decoder rows."""

    @staticmethod
    def forward(ctx, vals, W_dec, pattern: SparsePattern):
        ctx.save_for_backward(vals, W_dec)
        ctx.pattern = pattern
        return pattern.matmul(vals, W_dec)

    @staticmethod
    def backward(ctx, grad_out):
        vals, W_dec = ctx.saved_tensors
        p: SparsePattern = ctx.pattern
        grad_out = grad_out.contiguous()
        grad_vals = grad_W = None
        if ctx.needs_input_grad[0]:
            ones = p.csr(torch.ones(p.nnz, dtype=grad_out.dtype))
            grad_vals = torch.sparse.sampled_addmm(ones, grad_out, W_dec.t(), beta=0.0).values()
        if ctx.needs_input_grad[1]:
            grad_W = p.t_matmul(vals, grad_out)
        return grad_vals, grad_W, None
