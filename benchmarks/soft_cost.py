#!/usr/bin/env python
r"""Benchmark: SOFT's SVD-free rank selection against the SVD of B A (papers.md §2.5).

For each shape (d = n, r), times in one run, on the same random factors, one thread:

(a) SOFT: importance :math:`s_i = \|b_i\|\|a_i\|` (``airtune.lora.ops.rank_importance``) and the
    top-m selection (``airtune.lora.ops.top_m_components``): :math:`O(r(d+n))`;
(b) SVD oracle: the product :math:`BA` and its thin SVD, then the rank-m truncated factors
    (``airtune.lora.sparsify.svd_truncate``): :math:`O(dnr)` + :math:`O(dn\min(d,n))`;
(c) for reference, the exact spectrum of :math:`BA` from thin QR of the two factors
    (``airtune.lora.sparsify.singular_values_from_factors``): :math:`O(r^2(d+n))`, the cheapest
    exact alternative (SOFT's scores equal it only when the factors are orthogonal).

Reports the median seconds of each, the ratio SVD / SOFT, and SOFT's time divided by r(d + n)
(roughly constant if the cost is O(r(d + n)) and not dominated by call overhead) next to the
SVD's time divided by d n min(d, n).
Factors are orthogonalised first so both select the same components (checked).

Usage (repository root)::

    .venv/bin/python benchmarks/soft_cost.py [--repeats 15] [--out docs/results/soft_cost.md]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from airtune.lora.ops_soft import rank_importance, top_m_components
from airtune.lora.sparsify import singular_values_from_factors, svd_truncate

SHAPES = [(256, 8), (512, 8), (1024, 8), (2048, 8), (512, 32), (2048, 32)]


def orthogonal_factors(d: int, r: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    A = torch.linalg.qr(torch.randn(d, r, generator=gen)).Q.T.contiguous()           # (r, n) orthonormal rows
    B = torch.linalg.qr(torch.randn(d, r, generator=gen)).Q * torch.linspace(2, 1, r)  # orthogonal columns
    return A, B


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="also write the markdown table to this file")
    args = ap.parse_args()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(args.seed)
    lines = [
        f"SOFT selection vs SVD of B A, keep m = r/2, float32, 1 torch thread, median of {args.repeats} "
        f"(torch {torch.__version__}, {platform.processor() or platform.machine()}); "
        f"command: `.venv/bin/python benchmarks/soft_cost.py --repeats {args.repeats} --seed {args.seed}`",
        "",
        "| d = n | r | SOFT s | SVD of BA s | SVD / SOFT | QR spectrum s | QR / SOFT | SOFT ns per r(d+n) "
        "| SVD ns per d n min(d,n) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for d, r in SHAPES:
        A, B = orthogonal_factors(d, r, gen)
        m = r // 2
        _, _, idx = top_m_components(A, B, m)
        A_m, B_m, _ = svd_truncate(A, B, m)
        assert torch.allclose(B[:, idx] @ A[idx], B_m @ A_m, atol=1e-4), "SOFT and SVD disagree"
        t_soft = median_time(lambda: top_m_components(A, B, m) and rank_importance(A, B), args.repeats)
        t_svd = median_time(lambda: svd_truncate(A, B, m), 3 if d >= 2048 else args.repeats)
        t_qr = median_time(lambda: singular_values_from_factors(A, B), args.repeats)
        lines.append(f"| {d} | {r} | {t_soft:.2e} | {t_svd:.2e} | {t_svd / t_soft:,.0f} | {t_qr:.2e} | "
                     f"{t_qr / t_soft:,.1f} | {1e9 * t_soft / (r * 2 * d):.2f} | {1e9 * t_svd / d**3:.3f} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
