r"""Parameter counts and per-sample training FLOPs of a model, by where the modules run.

Split federated LoRA (papers.md §1.3 [S] + [R], [wang2025sfl]) runs the embedding module and the
task head on the device and the encoder on the edge server; the wireless cost model
(``experiment/round.py``) scales every device's cycles per sample by the share computed here.

FLOP rule ([R] our accounting; the same convention as ``experiment.setup.training_flops_per_sample``,
which charges :math:`4\,N_{\text{non-emb}}\,L` FLOPs per sample for a frozen base model: forward
:math:`2N` plus backward to the activations :math:`2N` per token):

* **embedding module** (frozen, forward only; its output needs no gradient because nothing below
  it trains): a table lookup, the sum of word, position and token-type vectors and a LayerNorm,
  counted as :data:`EMBED_FLOPS_PER_VALUE` = 10 FLOPs per output value, i.e. :math:`10\,H\,L`;
* **mean pooling** (when it runs on the device, i.e. the downlink carries token features):
  masked multiply and sum forward, the broadcast gradient backward, :math:`4\,H\,L`;
* **classifier** (trained, once per sample after pooling): forward :math:`2P_h`, backward
  weight and input gradients :math:`4P_h`, i.e. :math:`6P_h` for :math:`P_h` head parameters.

The device share is the device FLOPs divided by the run's total per-sample FLOPs of the same
rule (:math:`4(N_{\text{enc}} + P_h)L`), so that ``cycles_per_sample * share`` is the device's
part of what the runner charges an unsplit LoRA device.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

__all__ = ["EMBED_FLOPS_PER_VALUE", "ModelProfile", "profile_model", "split_device_flops_per_sample"]

EMBED_FLOPS_PER_VALUE = 10.0
"""FLOPs per embedding output value: two additions (position, token type) and a LayerNorm (~8)."""


@dataclass(frozen=True)
class ModelProfile:
    """Sizes of a sequence classifier, by module group.

    Attributes
    ----------
    hidden_size : int
        :math:`H`.
    num_labels : int
        Output classes :math:`C`.
    embedding_params, encoder_params, head_params : int
        Parameters of the embedding module, the transformer encoder and the task head.
    mean_tokens : float
        Mean tokens per training example :math:`L` (special tokens included).
    """

    hidden_size: int
    num_labels: int
    embedding_params: int
    encoder_params: int
    head_params: int
    mean_tokens: float

    @property
    def total_flops_per_sample(self) -> float:
        """:math:`4(N_{enc} + P_h)L`: the runner's per-sample FLOPs of a frozen base model."""
        return 4.0 * (self.encoder_params + self.head_params) * self.mean_tokens

    def device_fraction(self, pooling_on_device: bool) -> float:
        """Share of a sample's training FLOPs computed on the device under the split."""
        if self.hidden_size == 0:
            raise ValueError("the model profile found no 2-D classifier weight; split learning needs one")
        return split_device_flops_per_sample(self, pooling_on_device) / self.total_flops_per_sample


def profile_model(model: nn.Module, mean_tokens: float, head_modules: tuple[str, ...] = ("classifier",)) -> ModelProfile:
    """Count the parameters of ``model`` (a plain, un-adapted classifier) by module group.

    A parameter whose name contains ``embeddings`` belongs to the embedding module; one whose
    name starts with a head module (``classifier.``) to the head; every other one to the encoder.
    ``hidden_size`` and ``num_labels`` come from the head's 2-D weight (0 when there is none).
    """
    emb = enc = head = 0
    hidden = num_labels = 0
    for name, p in model.named_parameters():
        if "embeddings" in name:
            emb += p.numel()
        elif any(name.startswith(h + ".") or f".{h}." in name for h in head_modules):
            head += p.numel()
            if name.endswith("weight") and p.ndim == 2:
                num_labels, hidden = int(p.shape[0]), int(p.shape[1])
        else:
            enc += p.numel()
    # no 2-D head weight under head_modules: hidden_size = 0, and device_fraction refuses the profile
    return ModelProfile(hidden, num_labels, emb, enc, head, float(mean_tokens))


def split_device_flops_per_sample(profile: ModelProfile, pooling_on_device: bool) -> float:
    r"""Device FLOPs of one training sample: :math:`10HL\,[+\,4HL] + 6P_h` (module docstring)."""
    h, tokens = profile.hidden_size, profile.mean_tokens
    flops = EMBED_FLOPS_PER_VALUE * h * tokens + 6.0 * profile.head_params
    if pooling_on_device:
        flops += 4.0 * h * tokens
    return float(flops)
