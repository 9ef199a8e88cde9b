"""SOFT's scale-invariant orthogonality penalty (lora/ops_soft.py): by hand, invariance, zero B."""

from __future__ import annotations

import pytest
import torch

from airtune.lora.ops_soft import normalised_orthogonality_penalty, orthogonality_penalty

D = torch.float64


def test_normalised_penalty_by_hand():
    A = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=D)       # rows at 45 degrees: cos^2 = 1/2
    B = torch.tensor([[2.0, 0.0], [0.0, 3.0], [0.0, 0.0]], dtype=D)  # orthogonal columns
    # sum over i != j: 2 * 1/2 for A, 0 for B
    assert float(normalised_orthogonality_penalty(A, B)) == pytest.approx(1.0, rel=1e-12)
    B2 = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]], dtype=D)
    assert float(normalised_orthogonality_penalty(torch.eye(2, dtype=D), B2)) == pytest.approx(1.0, rel=1e-12)


def test_normalised_penalty_is_scale_invariant_where_the_gram_form_is_not():
    g = torch.Generator().manual_seed(0)
    A, B = torch.randn(4, 9, generator=g, dtype=D), torch.randn(7, 4, generator=g, dtype=D)
    scale_rows = torch.tensor([3.0, 0.1, 10.0, 1.0], dtype=D)
    base = normalised_orthogonality_penalty(A, B)
    scaled = normalised_orthogonality_penalty(scale_rows[:, None] * A, 1e-3 * B * scale_rows)
    assert torch.allclose(base, scaled, rtol=1e-12)
    # the Gram form's B term shrinks as |B|^4: at 1e-3 scale it is 1e12 times smaller
    gram_b = orthogonality_penalty(torch.linalg.qr(A.T).Q.T, B) - orthogonality_penalty(torch.linalg.qr(A.T).Q.T, 0 * B)
    gram_small = (orthogonality_penalty(torch.linalg.qr(A.T).Q.T, 1e-3 * B)
                  - orthogonality_penalty(torch.linalg.qr(A.T).Q.T, 0 * B))
    assert float(gram_small) < 1e-11 * float(gram_b)


def test_normalised_penalty_is_finite_at_zero_b_and_gives_gradients_to_small_b():
    g = torch.Generator().manual_seed(1)
    A = torch.randn(3, 6, generator=g, dtype=D).requires_grad_(True)
    B = torch.zeros(5, 3, dtype=D, requires_grad=True)
    loss = normalised_orthogonality_penalty(A, B)
    loss.backward()
    assert torch.isfinite(loss) and torch.all(B.grad == 0) and torch.isfinite(A.grad).all()
    B_small = (1e-6 * torch.randn(5, 3, generator=g, dtype=D)).requires_grad_(True)
    normalised_orthogonality_penalty(A.detach(), B_small).backward()
    B_big = (B_small.detach() * 1e6).requires_grad_(True)
    normalised_orthogonality_penalty(A.detach(), B_big).backward()
    # gradient scales as 1/|B|: the penalty acts on small B as strongly (relative to B) as on large B
    assert torch.allclose(B_small.grad * 1e-6, B_big.grad, rtol=1e-6)
