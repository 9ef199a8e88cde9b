r"""The model split of split federated LoRA: embedding and task head on the device, the encoder
with its LoRA adapters on the edge server (papers.md §1.3 [S] + [R], [wang2025sfl]; the
U-shaped split of §4.6 [thapa2022splitfed] with the head kept on the device).

Both halves wrap the *same* shared model object (one frozen base model serves every simulated
device, ``training/engine.py``); what separates them is what each side's code may read. The
device side owns the batch (token ids, attention mask, labels); the server side is called only
with the messages below, so it never sees token ids or labels (tested with a spy).

What crosses the link per local iteration (all measured as ``numel x element bits``)
-----------------------------------------------------------------------------------------
uplink (device -> server)
    :class:`Uplink`: the embedding-module output of the batch's real tokens, packed without
    padding, ``(T, H)`` with :math:`T=\sum_i \ell_i`, and the lengths ``(N,)`` int32. The
    lengths are the attention mask (batches are right-padded), which the server needs for
    attention and, with ``pooled`` downlink, for pooling; they reveal sequence lengths.
downlink (server -> device)
    ``tokens``: the encoder's last hidden states of the real tokens, packed ``(T, H)``; the
    device pools. ``pooled``: the server pools (masked mean, the same formula as
    ``models/heads.py``) and sends ``(N, H)``.
uplink
    the gradient of the loss with respect to what the downlink carried (same shape).
clipping (``max_grad_norm`` set)
    the device sends the norms of its head gradients (one value per head tensor), the server
    returns the common clipping factor (one value): joint clipping of LoRA and head exactly as
    ``torch.nn.utils.clip_grad_norm_`` on the unsplit model.

The embedding module is frozen (papers.md §1.3 default), so no embedding gradient goes down.
The embeddings are a deterministic function of the tokens through a public table: sending them
instead of token ids is not a privacy guarantee.

Only mean-pooling classifiers (``models/heads.MeanPoolClassifier``, e.g. ``minilm-l6``) with a
BERT-style encoder (``embeddings`` + ``encoder`` submodules) are supported.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from airtune.lora.adapters import is_peft

__all__ = ["DOWNLINK_MODES", "DeviceSide", "ServerSide", "Uplink", "pack", "split_model", "unpack"]

DOWNLINK_MODES = ("tokens", "pooled")


@dataclass(frozen=True)
class Uplink:
    """What a device sends the server to start an iteration: packed embeddings and lengths."""

    embeddings: Tensor      # (T, H) real tokens only, example after example
    lengths: Tensor         # (N,) int32, real tokens per example


def pack(hidden: Tensor, lengths: Tensor) -> Tensor:
    """``(N, L, H)`` right-padded -> ``(T, H)`` real tokens, example after example."""
    mask = torch.arange(hidden.shape[1])[None, :] < lengths[:, None].to(torch.long)
    return hidden[mask]


def unpack(packed: Tensor, lengths: Tensor) -> Tensor:
    """``(T, H)`` -> ``(N, L, H)`` with zeros at the padding, :math:`L = \\max_i \\ell_i`."""
    lengths = lengths.to(torch.long)
    width = int(lengths.max())
    mask = torch.arange(width)[None, :] < lengths[:, None]
    out = packed.new_zeros(lengths.shape[0], width, packed.shape[-1])
    out[mask] = packed
    return out


def length_mask(lengths: Tensor, width: int) -> Tensor:
    """``(N, width)`` int64 attention mask of right-padded rows (1 on real tokens)."""
    return (torch.arange(width)[None, :] < lengths.to(torch.long)[:, None]).to(torch.long)


def masked_mean(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """Masked mean over tokens, the expression of ``MeanPoolClassifier.forward``."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)                       # (N, L, 1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)                # (N, H)


def _classifier(model: nn.Module) -> nn.Module:
    inner = model.get_base_model() if is_peft(model) else model
    if not all(hasattr(inner, a) for a in ("encoder", "classifier")) or not all(
            hasattr(inner.encoder, a) for a in ("embeddings", "encoder")):
        raise ValueError(f"split learning needs a mean-pooling classifier with a BERT-style encoder "
                         f"(models/heads.MeanPoolClassifier, e.g. minilm-l6); got {type(inner).__name__}")
    return inner


class DeviceSide:
    """The device's modules: the frozen embedding module and the task head (pooling + classifier)."""

    def __init__(self, model: nn.Module, downlink: str) -> None:
        if downlink not in DOWNLINK_MODES:
            raise ValueError(f"downlink={downlink!r} must be one of {DOWNLINK_MODES}")
        clf = _classifier(model)
        self.embeddings = clf.encoder.embeddings
        self.classifier = clf.classifier     # PEFT: a wrapper that runs the active adapter's copy
        self.downlink = downlink

    def embed(self, batch: dict[str, Tensor]) -> Uplink:
        """Embedding-module forward (no gradient: the module is frozen); the uplink message."""
        mask = batch["attention_mask"]
        lengths = mask.sum(1).to(torch.int32)
        if not torch.equal(mask.to(torch.long), length_mask(lengths, mask.shape[1])):
            raise ValueError("split learning expects right-padded batches (attention mask = 1 then 0)")
        with torch.no_grad():
            emb = self.embeddings(input_ids=batch["input_ids"], token_type_ids=batch.get("token_type_ids"))
        return Uplink(pack(emb, lengths), lengths)

    def loss(self, features: Tensor, lengths: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Head forward from the received features (a leaf that collects their gradient).

        Returns ``(loss, leaf)``; after ``loss.backward()``, ``leaf.grad`` is the uplink gradient.
        """
        leaf = features.detach().requires_grad_(True)
        if self.downlink == "tokens":
            hidden = unpack(leaf, lengths)
            pooled = masked_mean(hidden, length_mask(lengths, hidden.shape[1]))
        else:
            pooled = leaf
        logits = self.classifier(pooled)
        return nn.functional.cross_entropy(logits.float(), labels), leaf


class ServerSide:
    """The edge server's module: the encoder with the active LoRA adapter.

    :meth:`forward` keeps the autograd graph of the last iteration; :meth:`backward` pushes the
    device's gradient through it into the LoRA factors.
    """

    def __init__(self, model: nn.Module, downlink: str) -> None:
        if downlink not in DOWNLINK_MODES:
            raise ValueError(f"downlink={downlink!r} must be one of {DOWNLINK_MODES}")
        self.bert = _classifier(model).encoder
        self.downlink = downlink
        self._out: Tensor | None = None

    def forward(self, up: Uplink) -> Tensor:
        """Encoder forward on the received embeddings; the downlink features (detached copy)."""
        emb = unpack(up.embeddings, up.lengths)
        mask2d = length_mask(up.lengths, emb.shape[1])
        mask = self._extended_mask(mask2d, emb)
        hidden = self.bert.encoder(emb, attention_mask=mask).last_hidden_state       # (N, L, H)
        out = pack(hidden, up.lengths) if self.downlink == "tokens" else masked_mean(hidden, mask2d)
        self._out = out
        return out.detach()

    def backward(self, grad: Tensor) -> None:
        """Backpropagate the device's gradient of the downlinked features into the LoRA factors."""
        if self._out is None:
            raise RuntimeError("ServerSide.backward before forward")
        self._out.backward(grad.to(self._out.dtype))
        self._out = None

    def _extended_mask(self, mask2d: Tensor, emb: Tensor):
        """The attention mask in the form the encoder layers take, built as ``BertModel.forward`` does."""
        bert = self.bert
        if hasattr(bert, "_create_attention_masks"):    # transformers >= 5
            return bert._create_attention_masks(attention_mask=mask2d, encoder_attention_mask=None,
                                                embedding_output=emb, encoder_hidden_states=None,
                                                past_key_values=None)[0]
        return bert.get_extended_attention_mask(mask2d, mask2d.shape)  # pragma: no cover - older versions


def split_model(model: nn.Module, downlink: str = "tokens") -> tuple[DeviceSide, ServerSide]:
    """The device and server halves of ``model`` for the given downlink payload."""
    return DeviceSide(model, downlink), ServerSide(model, downlink)
