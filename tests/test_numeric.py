import numpy as np
import pytest
import torch

from workbench.numeric import bf16_bits_to_float32


def test_bf16_bits_widen_exactly_from_int16_and_uint16_views():
    x = torch.randn(1000, dtype=torch.float32).to(torch.bfloat16)
    x[:3] = torch.tensor([0.0, -0.0, float("-inf")], dtype=torch.bfloat16)
    want = x.float().numpy()
    as_int16 = x.view(torch.int16).numpy()  # negative numbers have negative int16 bit patterns
    for bits in (as_int16, as_int16.view(np.uint16)):
        got = bf16_bits_to_float32(bits)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)


def test_bf16_bits_refuse_other_dtypes():
    with pytest.raises(TypeError, match="16-bit integer"):
        bf16_bits_to_float32(np.zeros(3, np.float16))
