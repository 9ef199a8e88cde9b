r"""Server-side optimisers on the aggregated update (Reddi et al., "Adaptive Federated
Optimization", ICLR 2021, Algorithm 2; FedAvgM: Hsu et al., arXiv 1909.06335).

The strategy's aggregate :math:`\bar x_{t+1}` is read as a pseudo-gradient step from the
previous global model :math:`x_t`: :math:`\Delta_t = \bar x_{t+1} - x_t`. The server then moves

- ``fedavgm``: :math:`m_t = \beta m_{t-1} + \Delta_t`, :math:`x_{t+1} = x_t + \eta m_t`;
- ``fedadam``: :math:`m_t = \beta_1 m_{t-1} + (1-\beta_1)\Delta_t`,
  :math:`v_t = \beta_2 v_{t-1} + (1-\beta_2)\Delta_t^2`,
  :math:`x_{t+1} = x_t + \eta\, m_t / (\sqrt{v_t} + \tau)`;
- ``fedyogi``: as ``fedadam`` with
  :math:`v_t = v_{t-1} - (1-\beta_2)\Delta_t^2\,\mathrm{sign}(v_{t-1} - \Delta_t^2)`;

element-wise, without bias correction, :math:`m_{-1} = 0`, and :math:`v_{-1} = \tau^2` as in
the paper's Algorithm 2. ``none`` keeps the aggregate (:math:`x_{t+1} = \bar x_{t+1}`; also
``fedavgm`` with :math:`\beta = 0, \eta = 1`).

Our choices: the rule acts on every tensor of the server state whose key and shape are the
same before and after aggregation (LoRA factors and head); a round in which nothing was
delivered has :math:`\Delta_t = 0` and still advances the moments, as a step with a zero
pseudo-gradient would. Strategies whose aggregate is not a parameter step (FlexLoRA's SVD
re-factorisation, FLoRA's merge-and-restart) refuse a server optimiser
(``Strategy.supports_server_optimizer``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

__all__ = ["ServerOptimizer", "server_step"]

Name = Literal["none", "fedavgm", "fedadam", "fedyogi"]


@dataclass(frozen=True)
class ServerOptimizer:
    """Settings of the server optimiser (``strategy.server_optimizer`` in the config)."""

    name: Name = "none"
    lr: float = 1.0          # eta
    momentum: float = 0.9    # beta (fedavgm)
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3        # adaptivity (fedadam, fedyogi)


def server_step(opt: ServerOptimizer, previous: dict[str, torch.Tensor], aggregate: dict[str, torch.Tensor],
                moments: dict[str, dict[str, torch.Tensor]]) -> tuple[dict[str, torch.Tensor],
                                                                      dict[str, dict[str, torch.Tensor]]]:
    """One server step: ``(new global tensors, new moments)``; pure (inputs are not modified).

    ``moments`` is ``{"m": {key: tensor}, "v": {key: tensor}}`` from the previous call (empty at
    the start). Keys of ``aggregate`` without a same-shaped ``previous`` tensor pass through.
    """
    if opt.name == "none":
        return dict(aggregate), moments
    out = dict(aggregate)
    m_prev, v_prev = moments.get("m", {}), moments.get("v", {})
    m_new: dict[str, torch.Tensor] = {}
    v_new: dict[str, torch.Tensor] = {}
    for key, agg in aggregate.items():
        old = previous.get(key)
        if old is None or old.shape != agg.shape or not agg.is_floating_point():
            continue
        delta = agg - old
        m0 = m_prev.get(key, torch.zeros_like(delta))
        if opt.name == "fedavgm":
            m = opt.momentum * m0 + delta
            out[key] = old + opt.lr * m
            m_new[key] = m
            continue
        v0 = v_prev.get(key, torch.full_like(delta, opt.tau ** 2))
        m = opt.beta1 * m0 + (1.0 - opt.beta1) * delta
        d2 = delta * delta
        if opt.name == "fedadam":
            v = opt.beta2 * v0 + (1.0 - opt.beta2) * d2
        else:  # fedyogi
            v = v0 - (1.0 - opt.beta2) * d2 * torch.sign(v0 - d2)
        out[key] = old + opt.lr * m / (torch.sqrt(v) + opt.tau)
        m_new[key], v_new[key] = m, v
    return out, ({"m": m_new, "v": v_new} if v_new else {"m": m_new})
