"""Small numeric helpers shared by the cache, the model importers and the SAE trainer.

numpy has no bfloat16, so bf16 data travels as 16-bit integer bit patterns (a cache shard,
a CTranslate2 export, a torch tensor viewed as int16). bfloat16 is the top half of a float32,
so widening the bits is exact.

Example
-------
>>> import numpy as np
>>> bf16_bits_to_float32(np.array([0x3F80, 0xC000], dtype=np.uint16))
array([ 1., -2.], dtype=float32)
"""
from __future__ import annotations

import numpy as np

__all__ = ["bf16_bits_to_float32"]


def bf16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (any 16-bit integer dtype: uint16 or int16) -> float32, exactly."""
    bits = np.asarray(bits)
    if bits.dtype.itemsize != 2 or bits.dtype.kind not in "iu":
        raise TypeError(f"bf16_bits_to_float32 needs 16-bit integer bit patterns, got {bits.dtype}")
    return (bits.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
