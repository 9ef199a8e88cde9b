"""Paper-checks item 6 (paper 1, scale): where split federated LoRA's uplink equals FedIT's.

Per device and round, with the repo's own payload functions: the split sends
``SplitFedLoRA.planned_bits``' activations (``strategies.split_fed.prior_bits_per_sample``:
embeddings + feature gradient + lengths per sample, times the samples of the round); FedIT sends
the LoRA factors (``wireless.cost.lora_payload_bits`` on W_q, W_v of every layer). Both send the
same head, so it cancels. Prints the mean sentence length L* (tokens) below which the split
uploads fewer bits, for a few encoders, ranks and samples per round.

Usage: python scripts/split_balance.py
"""

from __future__ import annotations

from airtune.strategies.split_fed import prior_bits_per_sample
from airtune.wireless.cost import lora_payload_bits

MODELS = {"MiniLM-L6 (H 384, 6 layers)": (384, 6), "RoBERTa-base (H 768, 12 layers)": (768, 12),
          "RoBERTa-large (H 1024, 24 layers)": (1024, 24)}


def break_even_tokens(hidden: int, layers: int, rank: int, samples: int, downlink: str) -> float:
    """L* with samples x prior_bits_per_sample(L*)[0] = lora_payload_bits (uplink is affine in L)."""
    lora = float(lora_payload_bits(rank, [(hidden, hidden)] * (2 * layers)))
    at0, at1 = (samples * prior_bits_per_sample(hidden, x, downlink)[0] for x in (0.0, 1.0))
    return (lora - at0) / (at1 - at0)


def main() -> None:
    print("| model | rank | samples/round | L* tokens (token downlink) | L* tokens (pooled downlink) |")
    print("|---|---|---|---|---|")
    for name, (h, layers) in MODELS.items():
        for rank in (8, 64):
            for samples in (16, 80):
                row = [break_even_tokens(h, layers, rank, samples, d) for d in ("tokens", "pooled")]
                print(f"| {name} | {rank} | {samples} | {row[0]:.2f} | {row[1]:.2f} |")


if __name__ == "__main__":
    main()
