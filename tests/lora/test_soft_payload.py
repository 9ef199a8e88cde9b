"""SOFT payload bits (papers.md §2.3 [R]): hand-computed cases, both index codings."""

import math

import numpy as np
import pytest

from airtune.lora.soft_payload import (
    index_bits,
    kept_from_ratio,
    soft_payload_bits,
    soft_payload_table,
    sparsification_ratio,
)
from airtune.wireless.cost import lora_payload_bits

MINILM_QV = [(384, 384)] * 12  # W_q and W_v of the 6 MiniLM-L6 layers: L = 12 matrices


def test_index_bits_hand_values():
    # mask: r bits whatever m
    np.testing.assert_array_equal(index_bits(8, [0, 3, 8], "mask"), [8, 8, 8])
    # combinatorial: ceil(log2 C(r, m)); C(8,3) = 56 -> 6, C(4,2) = 6 -> 3, C(5,2) = 10 -> 4
    assert index_bits(8, 3, "combinatorial") == 6
    np.testing.assert_array_equal(index_bits(4, [0, 1, 2, 3, 4], "combinatorial"), [0, 2, 3, 2, 0])
    assert index_bits(5, 2, "combinatorial") == 4
    # exact integer arithmetic for a large rank: C(64, 32) = 1.83e18 -> 61 bits
    assert index_bits(64, 32, "combinatorial") == math.ceil(math.log2(math.comb(64, 32))) == 61
    np.testing.assert_array_equal(index_bits(8, [1, 7], "none"), [0, 0])


def test_soft_payload_hand_values():
    # one component of one (384, 384) matrix: (384 + 384) * 32 = 24,576 bits; L = 12 matrices
    factors = 3 * 768 * 32 * 12  # m = 3 -> 884,736 bits
    assert soft_payload_bits(3, MINILM_QV, rank=8, index_coding="none") == factors
    assert soft_payload_bits(3, MINILM_QV, rank=8, index_coding="mask") == factors + 12 * 8
    assert soft_payload_bits(3, MINILM_QV, rank=8, index_coding="combinatorial") == factors + 12 * 6
    # per-device m, fp16
    np.testing.assert_array_equal(
        soft_payload_bits([1, 8], [(10, 20)], rank=8, bits_per_value=16),
        [1 * 30 * 16 + 8, 8 * 30 * 16 + 8],
    )


def test_per_matrix_kept_components():
    # m = (1, 2) on matrices (10 x 20) and (30 x 40), q = 16, r = 4, mask
    bits = soft_payload_bits([[1, 2]], [(10, 20), (30, 40)], rank=4, bits_per_value=16,
                             per_matrix=True)
    np.testing.assert_array_equal(bits, [1 * 30 * 16 + 2 * 70 * 16 + 2 * 4])
    with pytest.raises(ValueError, match="per_matrix"):
        soft_payload_bits([1, 2, 3], [(10, 20), (30, 40)], rank=4, per_matrix=True)


def test_full_rank_without_index_equals_lora_payload():
    for r in (1, 4, 8):
        assert soft_payload_bits(r, MINILM_QV, r, 32, "none") == lora_payload_bits(r, MINILM_QV)


def test_table_is_the_formula_for_every_m_and_increases():
    for coding in ("mask", "combinatorial", "none"):
        table = soft_payload_table(8, MINILM_QV, 32, coding)
        assert table.shape == (9,) and table.dtype == np.int64
        for m in range(9):
            assert table[m] == soft_payload_bits(m, MINILM_QV, 8, 32, coding)
        assert np.all(np.diff(table) > 0)


def test_sparsification_ratio_round_trip():
    np.testing.assert_allclose(sparsification_ratio([0, 2, 8], 8), [1.0, 0.75, 0.0])
    m = np.arange(9)
    np.testing.assert_array_equal(kept_from_ratio(sparsification_ratio(m, 8), 8), m)
    assert kept_from_ratio(0.3, 8) == 6  # ceil(0.7 * 8) = ceil(5.6)


def test_validation():
    with pytest.raises(ValueError, match="rank"):
        soft_payload_bits(1, MINILM_QV, rank=0)
    with pytest.raises(ValueError, match=r"\[0, r=4\]"):
        soft_payload_bits(5, MINILM_QV, rank=4)
    with pytest.raises(ValueError, match="index coding"):
        soft_payload_bits(1, MINILM_QV, rank=4, index_coding="huffman")
    with pytest.raises(ValueError, match="in_out_dims"):
        soft_payload_bits(1, [], rank=4)
    with pytest.raises(ValueError, match="integers"):
        soft_payload_bits(1.5, MINILM_QV, rank=4)
    with pytest.raises(ValueError, match="ratio"):
        kept_from_ratio(1.5, 4)
