"""Sparsified uploads (lora/sparsify.py): hand-computed values and identities."""

from __future__ import annotations

import pytest
import torch

from airtune.lora.ops import fedit_aggregate
from airtune.lora.ops_soft import orthogonality_penalty, rank_importance
from airtune.lora.sparsify import (
    kept_elements,
    masked_aggregate,
    orthogonality_penalty_grad,
    partial_rank_aggregate,
    rank_mask,
    singular_values_from_factors,
    soft_select,
    svd_truncate,
    topk_index_bits,
    topk_mask,
    topk_payload_bits,
)

D = torch.float64


def t(x):
    return torch.tensor(x, dtype=D)


def test_masked_aggregate_by_hand():
    g = t([0.0, 0.0])
    xs = [t([2.0, 4.0]), t([4.0, 8.0])]
    masks = [torch.tensor([True, False]), torch.tensor([True, True])]
    # keep_global: g + sum p_k m_k (x_k - g), p = (1/2, 1/2)
    assert torch.equal(masked_aggregate(g, xs, masks, [1, 1]), t([3.0, 4.0]))
    # renormalise: entry 1 only device 2 sent it
    assert torch.equal(masked_aggregate(g, xs, masks, [1, 1], "renormalise"), t([3.0, 8.0]))
    # nobody sent -> global value under both rules
    none = [torch.tensor([False, False])] * 2
    assert torch.equal(masked_aggregate(t([5.0, 6.0]), xs, none, [1, 3], "renormalise"), t([5.0, 6.0]))
    assert torch.equal(masked_aggregate(t([5.0, 6.0]), xs, none, [1, 3]), t([5.0, 6.0]))
    with pytest.raises(ValueError, match="rule"):
        masked_aggregate(g, xs, masks, [1, 1], "mean")


def test_partial_rank_aggregate_by_hand():
    # r = 2, n = 1, d = 1: A rows / B columns are the rank components
    A_g, B_g = t([[1.0], [1.0]]), t([[1.0, 1.0]])
    As = [t([[3.0], [5.0]]), t([[5.0], [9.0]])]
    Bs = [t([[2.0, 4.0]]), t([[6.0, 8.0]])]
    masks = [rank_mask(2, torch.tensor([0])), rank_mask(2, torch.tensor([0, 1]))]
    A, B = partial_rank_aggregate(A_g, B_g, As, Bs, masks, [1, 3])  # p = (1/4, 3/4)
    # component 0: both sent -> 1/4*3 + 3/4*5 = 4.5 ; component 1: device 1 kept global 1 -> 1/4*1 + 3/4*9 = 7
    assert torch.allclose(A, t([[4.5], [7.0]]))
    assert torch.allclose(B, t([[0.25 * 2 + 0.75 * 6, 0.25 * 1 + 0.75 * 8]]))
    A2, B2 = partial_rank_aggregate(A_g, B_g, As, Bs, masks, [1, 3], "renormalise")
    assert torch.allclose(A2, t([[4.5], [9.0]])) and torch.allclose(B2, t([[5.0, 8.0]]))


def test_partial_rank_aggregate_identities():
    gen = torch.Generator().manual_seed(0)
    r, d, n, K = 4, 7, 5, 3
    A_g, B_g = torch.randn(r, n, generator=gen, dtype=D), torch.randn(d, r, generator=gen, dtype=D)
    As = [torch.randn(r, n, generator=gen, dtype=D) for _ in range(K)]
    Bs = [torch.randn(d, r, generator=gen, dtype=D) for _ in range(K)]
    w = [3.0, 1.0, 2.0]
    # full masks: FedIT's separate averaging
    full = [torch.ones(r, dtype=torch.bool)] * K
    A, B = partial_rank_aggregate(A_g, B_g, As, Bs, full, w)
    A_ref, B_ref = fedit_aggregate(As, Bs, w)
    assert torch.allclose(A, A_ref) and torch.allclose(B, B_ref)
    # keep_global = FedAvg of the effective factors (unsent components replaced by the global ones)
    masks = [rank_mask(r, torch.tensor(ix)) for ix in ([0, 2], [1], [0, 1, 3])]
    A, B = partial_rank_aggregate(A_g, B_g, As, Bs, masks, w)
    effA = [torch.where(m[:, None], a, A_g) for a, m in zip(As, masks)]
    effB = [torch.where(m[None, :], b, B_g) for b, m in zip(Bs, masks)]
    A_ref, B_ref = fedit_aggregate(effA, effB, w)
    assert torch.allclose(A, A_ref) and torch.allclose(B, B_ref)


def test_soft_select_picks_top_scores_and_error_feedback_conserves_the_update():
    gen = torch.Generator().manual_seed(1)
    r, d, n = 5, 6, 4
    A_g, B_g = torch.randn(r, n, generator=gen, dtype=D), torch.randn(d, r, generator=gen, dtype=D)
    A_k, B_k = A_g + torch.randn(r, n, generator=gen, dtype=D), B_g + torch.randn(d, r, generator=gen, dtype=D)
    res_A, res_B = torch.randn(r, n, generator=gen, dtype=D), torch.randn(d, r, generator=gen, dtype=D)
    A_c, B_c, mask, scores, rA, rB = soft_select(A_g, B_g, A_k, B_k, 2, res_A, res_B)
    assert torch.equal(A_c, A_k + res_A) and torch.equal(B_c, B_k + res_B)
    assert torch.equal(scores, rank_importance(A_c, B_c))
    top2 = set(torch.argsort(scores, descending=True)[:2].tolist())
    assert set(torch.nonzero(mask).flatten().tolist()) == top2
    # sent + residual = full (corrected) update, entry by entry
    sent_A = torch.where(mask[:, None], A_c - A_g, torch.zeros_like(A_g))
    sent_B = torch.where(mask[None, :], B_c - B_g, torch.zeros_like(B_g))
    assert torch.allclose(sent_A + rA, A_c - A_g) and torch.allclose(sent_B + rB, B_c - B_g)
    assert torch.all(rA[mask] == 0) and torch.all(rB[:, mask] == 0)
    # hand case: scores (1*1, 3*1, 2*1) -> keep component 1
    A = t([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    B = t([[1.0, 3.0, 0.0], [0.0, 0.0, 2.0]])
    _, _, mask, scores, _, _ = soft_select(torch.zeros_like(A), torch.zeros_like(B), A, B, 1)
    assert scores.tolist() == [1.0, 3.0, 2.0] and mask.tolist() == [False, True, False]


def test_topk_mask_and_index_bits_by_hand():
    x = t([[0.5, -3.0], [2.0, -2.0]])
    assert topk_mask(x, 2).tolist() == [[False, True], [True, False]]  # tie |2| = |-2|: lower index
    assert kept_elements(3072, 0.25) == 768 and kept_elements(10, 0.01) == 1 and kept_elements(10, 1.0) == 10
    assert topk_index_bits(3072, 10, "position") == 10 * 12
    assert topk_index_bits(3072, 10, "mask") == 3072
    assert topk_index_bits(3072, 300, "min") == 3072 and topk_index_bits(3072, 10, "min") == 120
    # two tensors of 3072 and 3072 entries, 768 kept each, 32-bit values + 12-bit positions
    assert topk_payload_bits([3072, 3072], [768, 768]) == 2 * 768 * (32 + 12)


def test_svd_truncate_is_eckart_young_and_qr_spectrum_exact():
    gen = torch.Generator().manual_seed(2)
    A, B = torch.randn(4, 9, generator=gen, dtype=D), torch.randn(8, 4, generator=gen, dtype=D)
    A_m, B_m, sigma = svd_truncate(A, B, 2)
    assert A_m.shape == A.shape and B_m.shape == B.shape and torch.all(A_m[2:] == 0)
    U, S, Vh = torch.linalg.svd(B @ A)
    assert torch.allclose(B_m @ A_m, U[:, :2] @ torch.diag(S[:2]) @ Vh[:2])
    assert torch.allclose(((B @ A - B_m @ A_m) ** 2).sum(), (sigma[2:] ** 2).sum())
    assert torch.allclose(singular_values_from_factors(A, B), S[:4])


def test_orthogonality_gradient_by_hand_and_autograd():
    A, B = t([[2.0, 0.0]]), t([[1.0, 1.0], [0.0, 1.0]])
    B1 = t([[1.0], [0.0]])
    gA, _ = orthogonality_penalty_grad(A, B1)
    assert gA.tolist() == [[24.0, 0.0]]          # 4 (AA^T - I) A = 4 * 3 * [2, 0]
    A2 = t([[1.0, 0.0], [0.0, 1.0]])             # orthonormal rows: no A gradient
    gA2, gB = orthogonality_penalty_grad(A2, B)
    assert torch.all(gA2 == 0)
    assert gB.tolist() == [[4.0, 4.0], [4.0, 0.0]]   # 4 B offdiag(B^T B) = 4 [[1,1],[0,1]] [[0,1],[1,0]]
    assert float(orthogonality_penalty(A2, B)) == 2.0  # offdiag entries 1, 1
    gen = torch.Generator().manual_seed(3)
    A = torch.randn(3, 7, generator=gen, dtype=D, requires_grad=True)
    B = torch.randn(6, 3, generator=gen, dtype=D, requires_grad=True)
    orthogonality_penalty(A, B).backward()
    gA, gB = orthogonality_penalty_grad(A.detach(), B.detach())
    assert torch.allclose(A.grad, gA) and torch.allclose(B.grad, gB)
