"""Exactness tests for the pure LoRA maths (airtune.lora.ops, airtune.lora.ops_hetero)."""

from __future__ import annotations

import math

import pytest
import torch

from airtune.lora.checks import normalize_weights
from airtune.lora.ops import (
    cross_covariance,
    fedit_aggregate,
    ffa_aggregate,
    ffa_init_A,
    lora_delta,
    lora_delta_norm,
    lora_scale,
    pad_rank,
    truncate_rank,
    weighted_mean,
)
from airtune.lora.ops_hetero import (
    flexlora_aggregate,
    flexlora_redistribute,
    flexlora_svd,
    flora_merge,
    flora_stack,
)
from airtune.lora.ops_hetlora import (
    hetlora_aggregate,
    hetlora_distribute,
    hetlora_prune_rank,
    hetlora_tail_penalty,
    hetlora_weights,
)
from airtune.lora.ops_soft import (
    orthogonality_error,
    orthogonality_penalty,
    rank_importance,
    top_m_components,
    truncation_error_curve,
    truncation_error_from_scores,
)

F64 = torch.float64
TOL = dict(rtol=1e-10, atol=1e-10)
SHAPES = [(6, 9), (10, 4), (7, 7)]  # (d, n): tall, wide, square
ALPHA = 16.0


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def pair(d: int, r: int, n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(r, n, generator=g, dtype=F64), torch.randn(d, r, generator=g, dtype=F64)


def devices(d: int, n: int, ranks: list[int], seed: int):
    g = gen(seed)
    As, Bs = zip(*(pair(d, r, n, g) for r in ranks))
    scales = [lora_scale(ALPHA, r) for r in ranks]
    weights = (torch.rand(len(ranks), generator=g, dtype=F64) * 100 + 1).tolist()
    return list(As), list(Bs), scales, weights


def ideal(As, Bs, scales, weights) -> torch.Tensor:
    p = normalize_weights(weights, len(As))
    return sum(p[k] * s * B @ A for k, (A, B, s) in enumerate(zip(As, Bs, scales)))


# --------------------------------------------------------------------------- basics
def test_lora_delta_and_scale():
    A, B = pair(5, 3, 4, gen(0))
    torch.testing.assert_close(lora_delta(A, B, 2.5), 2.5 * B @ A, **TOL)
    assert lora_scale(16, 4) == 4.0 and lora_scale(16, 4, use_rslora=True) == 8.0
    torch.testing.assert_close(lora_delta_norm(A, B, -2.0), torch.linalg.norm(2 * B @ A), **TOL)
    with pytest.raises(ValueError, match="rank mismatch"):
        lora_delta(A, B[:, :2])


def test_weighted_mean_normalises_and_validates():
    xs = [torch.full((2, 3), float(v), dtype=F64) for v in (1, 2, 4)]
    torch.testing.assert_close(weighted_mean(xs, [2, 1, 1]), torch.full((2, 3), 2.0, dtype=F64))
    torch.testing.assert_close(weighted_mean(xs, torch.tensor([0.0, 0.0, 3.0])), xs[2])
    for bad in ([1, -1, 1], [0, 0, 0], [1, float("nan"), 1], [1, 1]):
        with pytest.raises(ValueError):
            weighted_mean(xs, bad)
    half = [x.to(torch.bfloat16) for x in xs]
    assert weighted_mean(half, [1, 1, 1]).dtype == torch.bfloat16


# --------------------------------------------------------------------------- FedIT / covariance
@pytest.mark.parametrize("d,n", SHAPES)
def test_fedit_covariance_identity(d, n):
    As, Bs, _, w = devices(d, n, [3, 3, 3, 3], seed=d * n)
    A_bar, B_bar = fedit_aggregate(As, Bs, w)
    p = normalize_weights(w, 4)
    torch.testing.assert_close(A_bar, sum(pk * A for pk, A in zip(p, As)), **TOL)
    avg_of_products = ideal(As, Bs, [1.0] * 4, w)
    cov = cross_covariance(As, Bs, w)
    torch.testing.assert_close(avg_of_products - B_bar @ A_bar, cov, **TOL)
    direct = sum(pk * (B - B_bar) @ (A - A_bar) for pk, A, B in zip(p, As, Bs))
    torch.testing.assert_close(cov, direct, **TOL)
    assert cov.norm() > 1e-3  # genuinely non-zero for random factors


def test_fedit_rejects_mixed_ranks():
    As, Bs, _, w = devices(5, 4, [2, 3], seed=1)
    with pytest.raises(ValueError, match="hetlora"):
        fedit_aggregate(As, Bs, w)


# --------------------------------------------------------------------------- FFA-LoRA
@pytest.mark.parametrize("d,n", SHAPES)
def test_ffa_product_of_averages_is_exact(d, n):
    A = ffa_init_A((4, n), seed=7, dtype=F64)
    _, Bs, _, w = devices(d, n, [4, 4, 4], seed=d + n)
    B_bar = ffa_aggregate(Bs, w)
    torch.testing.assert_close(B_bar @ A, ideal([A] * 3, Bs, [1.0] * 3, w), **TOL)
    assert cross_covariance([A] * 3, Bs, w).abs().max() < 1e-12


def test_ffa_init_deterministic_and_peft_like():
    a1, a2, a3 = ffa_init_A((8, 50), 3), ffa_init_A((8, 50), 3), ffa_init_A((8, 50), 4)
    assert torch.equal(a1, a2) and not torch.equal(a1, a3)
    assert a1.abs().max() <= 1 / math.sqrt(50) and a1.std() > 0.5 / math.sqrt(3 * 50)
    torch.manual_seed(0)
    b = ffa_init_A((8, 50), 3)
    torch.manual_seed(1)
    assert torch.equal(b, ffa_init_A((8, 50), 3))  # independent of the global RNG


# --------------------------------------------------------------------------- rank surgery / HetLoRA
def test_pad_and_truncate():
    A, B = pair(6, 3, 5, gen(2))
    Ap, Bp = pad_rank(A, B, 7)
    assert Ap.shape == (7, 5) and Bp.shape == (6, 7)
    assert Ap[3:].abs().sum() == 0 and Bp[:, 3:].abs().sum() == 0
    torch.testing.assert_close(Bp @ Ap, B @ A, **TOL)
    At, Bt = truncate_rank(Ap, Bp, 2)
    assert torch.equal(At, A[:2]) and torch.equal(Bt, B[:, :2])
    At[0, 0] = 123.0
    assert Ap[0, 0] != 123.0  # copies, not views
    with pytest.raises(ValueError):
        pad_rank(A, B, 2)
    with pytest.raises(ValueError):
        truncate_rank(A, B, 4)


@pytest.mark.parametrize("d,n", SHAPES)
def test_hetlora_aggregate_and_distribute(d, n):
    ranks = [2, 4, 3]
    As, Bs, scales, w = devices(d, n, ranks, seed=11 + d)
    hw = hetlora_weights(As, Bs, scales)
    norms = torch.stack([torch.linalg.norm(s * B @ A) for A, B, s in zip(As, Bs, scales)])
    torch.testing.assert_close(hw, norms / norms.sum(), **TOL)
    torch.testing.assert_close(hw.sum(), torch.tensor(1.0, dtype=F64), **TOL)
    for weighting, p in (("norm", hw), ("data", normalize_weights(w, 3))):
        A_g, B_g = hetlora_aggregate(As, Bs, ranks, scales, 6, weighting=weighting, data_weights=w)
        assert A_g.shape == (6, n) and B_g.shape == (d, 6)
        padded = [pad_rank(A, s * B, 6) for A, B, s in zip(As, Bs, scales)]
        torch.testing.assert_close(A_g, sum(pk * a for pk, (a, _) in zip(p, padded)), **TOL)
        torch.testing.assert_close(B_g, sum(pk * b for pk, (_, b) in zip(p, padded)), **TOL)
        assert A_g[4:].abs().max() == 0 and B_g[:, 4:].abs().max() == 0
        for r in (1, 3, 6):
            s_r = lora_scale(ALPHA, r)
            A_k, B_k = hetlora_distribute(A_g, B_g, r, s_r)
            assert A_k.shape == (r, n) and B_k.shape == (d, r)
            torch.testing.assert_close(A_k, A_g[:r], **TOL)
            torch.testing.assert_close(s_r * B_k, B_g[:, :r], **TOL)
    with pytest.raises(ValueError):
        hetlora_aggregate(As, Bs, [2, 4, 4], scales)
    with pytest.raises(ValueError):
        hetlora_aggregate(As, Bs, ranks, scales, weighting="data")
    zeros = [torch.zeros_like(B) for B in Bs]
    with pytest.raises(ValueError, match="data"):
        hetlora_weights(As, zeros, scales)


def test_hetlora_tail_penalty_and_pruning():
    g = gen(5)
    A, B = pair(6, 8, 5, g)
    pen = hetlora_tail_penalty(A, B, 0.5)
    torch.testing.assert_close(pen, torch.linalg.norm(B[:, 4:]) * torch.linalg.norm(A[4:]), **TOL)
    A0 = A.clone().requires_grad_(True)
    B0 = torch.zeros(6, 8, dtype=F64, requires_grad=True)
    hetlora_tail_penalty(A0, B0, 0.5).backward()
    assert torch.isfinite(B0.grad).all() and torch.isfinite(A0.grad).all()

    first = hetlora_prune_rank(A, B, 8, 0.5, None)
    assert not first.pruned and first.rank == 8
    assert first.next_reference == pytest.approx(float(pen))
    grew = hetlora_prune_rank(A, B, 8, 0.5, float(pen) * 0.9)
    assert not grew.pruned and grew.A.shape == (8, 5)
    shrank = hetlora_prune_rank(A * 0.5, B, 8, 0.5, float(pen))
    assert shrank.pruned and shrank.rank == 4 and shrank.next_reference is None
    assert torch.equal(shrank.A, 0.5 * A[:4]) and torch.equal(shrank.B, B[:, :4])
    floor = hetlora_prune_rank(A[:1], B[:, :1], 1, 0.5, 1e9)
    assert not floor.pruned and floor.rank == 1  # minimum rank 1
    padded = hetlora_prune_rank(*pad_rank(A[:3], B[:, :3], 8), 3, 0.4, 1e9)
    assert padded.pruned and padded.rank == 1  # floor(0.4 * 3) = 1, active rank 3 of 8


# --------------------------------------------------------------------------- FLoRA / FlexLoRA
@pytest.mark.parametrize("d,n", SHAPES)
@pytest.mark.parametrize("ranks", [[4, 4], [1, 3, 8], [2, 5, 2, 6]])
def test_flora_stack_is_exact(d, n, ranks):
    As, Bs, scales, w = devices(d, n, ranks, seed=d * 100 + len(ranks))
    A_stk, B_stk = flora_stack(As, Bs, scales, w)
    assert A_stk.shape == (sum(ranks), n) and B_stk.shape == (d, sum(ranks))
    target = ideal(As, Bs, scales, w)
    torch.testing.assert_close(B_stk @ A_stk, target, **TOL)
    W = torch.randn(d, n, generator=gen(3), dtype=F64)
    torch.testing.assert_close(flora_merge(W, A_stk, B_stk), W + target, **TOL)
    torch.testing.assert_close(flexlora_aggregate(As, Bs, scales, w), target, **TOL)


@pytest.mark.parametrize("d,n", SHAPES)
def test_flexlora_redistribution_is_best_rank_r(d, n):
    ranks = [2, 3, 5]
    As, Bs, scales, w = devices(d, n, ranks, seed=d + 3 * n)
    delta = flexlora_aggregate(As, Bs, scales, w)
    q = min(d, n)
    U, S, Vh = torch.linalg.svd(delta, full_matrices=False)
    svd = flexlora_svd(delta)
    for r in range(1, q + 2):
        s_r = lora_scale(ALPHA, r)
        A_k, B_k = flexlora_redistribute(delta, r, s_r)
        assert A_k.shape == (r, n) and B_k.shape == (d, r)  # not the transpose (d != n)
        approx = s_r * B_k @ A_k
        best = (U[:, :r] * S[:r]) @ Vh[:r]
        torch.testing.assert_close(approx, best, **TOL)
        err = torch.linalg.norm(delta - approx)
        torch.testing.assert_close(err, S[r:].square().sum().sqrt(), **TOL)
        eye_q = torch.diag((torch.arange(r) < q).to(F64))  # orthonormal rows, zero padding
        torch.testing.assert_close(A_k @ A_k.T, eye_q, **TOL)
        A2, B2 = flexlora_redistribute(delta, r, s_r, svd=svd)
        torch.testing.assert_close(s_r * B2 @ A2, approx, **TOL)
        if r >= q:
            torch.testing.assert_close(approx, delta, **TOL)  # full rank recovers delta exactly
    if d != n:
        with pytest.raises(ValueError):
            flexlora_redistribute(delta.T, 2, 1.0, svd=svd)  # a transposed delta is caught


# --------------------------------------------------------------------------- one-device round trips
@pytest.mark.parametrize("d,n", SHAPES)
def test_single_device_round_trip_preserves_effective_delta(d, n):
    r, r_max = 4, 8
    s = lora_scale(ALPHA, r)
    A, B = pair(d, r, n, gen(d * n + 1))
    target = s * B @ A
    A1, B1 = fedit_aggregate([A], [B], [3.0])
    torch.testing.assert_close(s * B1 @ A1, target, **TOL)
    for rmax in (r, r_max):  # r_k = r_max and r_k < r_max
        for weighting in ("norm", "data"):
            A_g, B_g = hetlora_aggregate([A], [B], [r], [s], rmax, weighting, data_weights=[5])
            torch.testing.assert_close(B_g @ A_g, target, **TOL)
            for r_recv in (r, rmax):
                A_k, B_k = hetlora_distribute(A_g, B_g, r_recv, lora_scale(ALPHA, r_recv))
                torch.testing.assert_close(lora_scale(ALPHA, r_recv) * B_k @ A_k, target, **TOL)
    delta = flexlora_aggregate([A], [B], [s], [2.0])
    for r_recv in (r, r_max):
        A_k, B_k = flexlora_redistribute(delta, r_recv, lora_scale(ALPHA, r_recv))
        torch.testing.assert_close(lora_scale(ALPHA, r_recv) * B_k @ A_k, target, **TOL)
    A_stk, B_stk = flora_stack([A], [B], [s], [9.0])
    torch.testing.assert_close(B_stk @ A_stk, target, **TOL)


# --------------------------------------------------------------------------- SOFT
def orthogonal_pair(d: int, r: int, n: int, g: torch.Generator, row_norms=None):
    Qa, _ = torch.linalg.qr(torch.randn(n, r, generator=g, dtype=F64))  # (n, r)
    Qb, _ = torch.linalg.qr(torch.randn(d, r, generator=g, dtype=F64))  # (d, r)
    col = torch.randperm(r, generator=g).to(F64) + 1.0 + torch.rand(r, generator=g, dtype=F64)
    A = Qa.T if row_norms is None else Qa.T * row_norms[:, None]
    return A, Qb * col  # distinct column norms, shuffled order


@pytest.mark.parametrize("d,r,n", [(9, 4, 12), (12, 5, 7), (8, 3, 8)])
@pytest.mark.parametrize("scaled_rows", [False, True])
def test_soft_scores_are_singular_values(d, r, n, scaled_rows):
    g = gen(d * r + n)
    rows = torch.rand(r, generator=g, dtype=F64) + 0.5 if scaled_rows else None
    A, B = orthogonal_pair(d, r, n, g, rows)
    if not scaled_rows:
        e_a, e_b = orthogonality_error(A, B)
        assert e_a < 1e-12 and e_b < 1e-12 and orthogonality_penalty(A, B) < 1e-24
    scores = rank_importance(A, B)
    M = B @ A
    U, S, Vh = torch.linalg.svd(M, full_matrices=False)
    torch.testing.assert_close(torch.sort(scores, descending=True).values, S[:r], **TOL)
    curve = truncation_error_curve(scores)
    assert curve.shape == (r + 1,) and curve[-1] == 0
    for m in range(r + 1):
        A_m, B_m, idx = top_m_components(A, B, m)
        assert A_m.shape == (m, n) and B_m.shape == (d, m) and torch.all(idx[1:] > idx[:-1])
        torch.testing.assert_close(B_m @ A_m, (U[:, :m] * S[:m]) @ Vh[:m], **TOL)
        err = truncation_error_from_scores(scores, idx)
        torch.testing.assert_close(err, torch.linalg.norm(M - B_m @ A_m) ** 2, **TOL)
        torch.testing.assert_close(err, curve[m], **TOL)


def test_orthogonality_error_values_and_gradient():
    A = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]], dtype=F64, requires_grad=True)
    B = torch.tensor([[1.0, 1.0], [0.0, 1.0]], dtype=F64, requires_grad=True)
    e_a, e_b = orthogonality_error(A, B)
    torch.testing.assert_close(e_a, torch.tensor(3.0, dtype=F64))  # diag(1, 4) - I
    torch.testing.assert_close(e_b, torch.tensor(math.sqrt(2.0), dtype=F64))  # off-diag 1, 1
    pen = orthogonality_penalty(A, B)
    torch.testing.assert_close(pen, torch.tensor(11.0, dtype=F64))
    pen.backward()
    assert torch.isfinite(A.grad).all() and B.grad.abs().sum() > 0
