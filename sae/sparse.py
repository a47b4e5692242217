"""Sparse kernels for Batch-Top-K training on CPU: exact batch top-k selection and sparse autograd.

Only the encoder matmul is dense. Everything after the selection touches the ``k * N`` selected
(frame, feature) pairs only: decoding gathers the selected decoder rows
(``torch.nn.functional.embedding_bag`` with per-sample weights), and the backward pass uses
sparse-times-dense products (CSR ``torch.sparse.mm``) and a sampled dense-dense product
(``torch.sparse.sampled_addmm``) instead of three more ``[N, d] x [d, m]`` matmuls.

Example
-------
>>> pre = torch.randn(64, 512)
>>> rows, cols, vals = select_batch_topk(pre, 64 * 8)
>>> len(vals), bool(torch.equal(vals.sort().values, pre.flatten().topk(512).values.sort().values))
(512, True)
"""
from __future__ import annotations

import math
import warnings

import torch

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
warnings.filterwarnings("ignore", message="Sparse invariant checks", category=UserWarning)

#: below this many entries an exact ``torch.topk`` over the flat batch is cheap enough
_SMALL = 1 << 20
#: rows per chunk when thresholding, so the chunk stays in cache between compare and nonzero
_CHUNK_ROWS = 256


class SparsePattern:
    """Positions of the selected entries of an ``[n_rows, n_cols]`` code matrix, sorted row-major.

    Holds the CSR row pointer and, lazily, the column-major permutation used by the backward pass.
    """

    def __init__(self, rows: torch.Tensor, cols: torch.Tensor, n_rows: int, n_cols: int) -> None:
        self.rows, self.cols = rows, cols
        self.n_rows, self.n_cols = int(n_rows), int(n_cols)
        counts = torch.bincount(rows, minlength=self.n_rows)
        self.crow = torch.zeros(self.n_rows + 1, dtype=torch.long)
        torch.cumsum(counts, 0, out=self.crow[1:])
        self._by_col: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def nnz(self) -> int:
        return int(self.rows.numel())

    def by_col(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(order, ccol)``: permutation sorting entries by column (stable) and its column pointer."""
        if self._by_col is None:
            order = torch.argsort(self.cols, stable=True)
            ccol = torch.zeros(self.n_cols + 1, dtype=torch.long)
            torch.cumsum(torch.bincount(self.cols, minlength=self.n_cols), 0, out=ccol[1:])
            self._by_col = (order, ccol)
        return self._by_col

    def csr(self, vals: torch.Tensor) -> torch.Tensor:
        return torch.sparse_csr_tensor(self.crow, self.cols, vals, (self.n_rows, self.n_cols))

    def csr_t(self, vals: torch.Tensor) -> torch.Tensor:
        """The transposed matrix ``[n_cols, n_rows]`` in CSR form (for ``codes^T @ dense``)."""
        order, ccol = self.by_col()
        return torch.sparse_csr_tensor(ccol, self.rows[order], vals[order], (self.n_cols, self.n_rows))

    def to_dense(self, vals: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(self.n_rows, self.n_cols, dtype=vals.dtype)
        out[self.rows, self.cols] = vals
        return out


def select_batch_topk(pre: torch.Tensor, n: int, exact_below: int = _SMALL) -> tuple[torch.Tensor, ...]:
    """The ``n`` largest positive entries of a 2-D ``pre`` (any float dtype), as ``(rows, cols, vals)``.

    Entries come back sorted row-major, values as float32. Ties at the cut are broken arbitrarily;
    if fewer than ``n`` entries are positive, all positive entries are returned (ReLU first).
    Large matrices avoid a full sort: a threshold estimated on a strided sample keeps a few
    more than ``n`` candidates (found chunk by chunk), and an exact top-k runs on those.
    """
    if pre.dim() != 2:
        raise ValueError(f"select_batch_topk expects a 2-D [N, m] tensor, got shape {tuple(pre.shape)}")
    n_rows, n_cols = pre.shape
    n = int(min(max(n, 0), pre.numel()))
    if pre.numel() <= exact_below:
        flat = pre.reshape(-1).float()
        vals, idx = flat.topk(n, sorted=False)
        keep = vals > 0
        idx = idx[keep].sort().values
        return idx // n_cols, idx % n_cols, flat[idx]
    margin = 0.15
    thr = _estimate_threshold(pre, n, margin)
    while True:
        rows, cols = _above(pre, thr)
        if rows.numel() >= n or thr <= 0:
            break
        margin *= 3
        lower = _estimate_threshold(pre, n, margin)
        thr = lower if lower < thr else thr * 0.5 if thr > 1e-6 else 0.0
    vals = pre[rows, cols].float()
    if vals.numel() > n:
        top = vals.topk(n, sorted=False).indices.sort().values
        rows, cols, vals = rows[top], cols[top], vals[top]
    return rows, cols, vals


def _estimate_threshold(pre: torch.Tensor, n: int, margin: float) -> float:
    """A value with about ``n * (1 + margin)`` entries of ``pre`` above it, from a strided sample."""
    n_rows, n_cols = pre.shape
    row_step = max(1, n_rows // 256)
    col_step = max(1, math.ceil((n_rows // row_step) * n_cols / 131072))
    sample = pre[::row_step, ::col_step].reshape(-1).float()
    frac = min(1.0, n * (1.0 + margin) / pre.numel())
    above = int(frac * sample.numel())
    if above >= sample.numel():
        return 0.0
    if above < 1:
        return float(sample.max())
    return max(0.0, float(sample.kthvalue(sample.numel() - above).values))


def _above(pre: torch.Tensor, thr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-major (rows, cols) of entries ``> thr``; chunks of rows keep compare + nonzero in cache."""
    thr = max(float(thr), 0.0)
    mask = torch.empty(min(_CHUNK_ROWS, pre.shape[0]), pre.shape[1], dtype=torch.bool)
    parts = []
    for a in range(0, pre.shape[0], _CHUNK_ROWS):
        chunk = pre[a : a + _CHUNK_ROWS]
        m = mask[: chunk.shape[0]]
        torch.gt(chunk, thr, out=m)
        idx = m.nonzero()
        if a:
            idx[:, 0] += a
        parts.append(idx)
    idx = torch.cat(parts) if len(parts) > 1 else parts[0]
    return idx[:, 0], idx[:, 1]


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
        grad_b_enc = torch.zeros(p.n_cols, dtype=g.dtype).index_add_(0, p.cols, g)
        grad_W_enc = torch.sparse.mm(p.csr_t(g), x_c) if ctx.needs_input_grad[3] else None
        # d pre / d b_dec = -W_enc[j] for every selected (i, j): a vector-matrix product
        grad_b_dec = -(grad_b_enc @ W_enc) if ctx.needs_input_grad[2] else None
        return None, None, grad_b_dec, grad_W_enc, grad_b_enc if ctx.needs_input_grad[4] else None, None


class SparseDecode(torch.autograd.Function):
    """``codes @ W_dec`` for sparse codes (no bias), gathering only the selected decoder rows."""

    @staticmethod
    def forward(ctx, vals, W_dec, pattern: SparsePattern):
        ctx.save_for_backward(vals, W_dec)
        ctx.pattern = pattern
        return torch.nn.functional.embedding_bag(
            pattern.cols, W_dec, pattern.crow[:-1], mode="sum", per_sample_weights=vals.to(W_dec.dtype)
        )

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
            grad_W = torch.sparse.mm(p.csr_t(vals.to(grad_out.dtype)), grad_out)
        return grad_vals, grad_W, None
