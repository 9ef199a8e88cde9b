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

How the model is cut: public interfaces only
--------------------------------------------
Both halves run the encoder's own public ``forward`` (``BertModel``, ``RobertaModel``, ...) and
reach the cut through a module forward hook on its ``embeddings`` submodule, so the attention
mask, position ids and token types are built by the library exactly as in unsplit training,
whatever the transformers version does inside:

* the device runs ``encoder(input_ids, attention_mask, token_type_ids)`` with a hook that takes
  the embedding output and stops the forward there (:class:`_Cut`);
* the server runs ``encoder(placeholder_ids, attention_mask)`` with a hook that *replaces* the
  embedding output by the received tensor (``register_forward_hook``: a returned value replaces
  the output). The embedding module runs in eval mode for that call, so its dropout draws no
  random numbers and the dropout masks of the encoder layers are those of the unsplit forward.

Our choice (docs/design.md, "Split on public interfaces"): transformers 5.24 changed the private
mask helper the earlier version called; hooks and the public forward have been stable since
torch 1.x / transformers 2.x. Supported: a mean-pooling classifier
(``models/heads.MeanPoolClassifier``, e.g. ``minilm-l6``) whose encoder has an ``embeddings``
submodule and takes ``input_ids`` and ``attention_mask`` (the BERT and RoBERTa families, tested).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from airtune.lora.adapters import is_peft
from airtune.training.loss import local_loss

__all__ = ["DOWNLINK_MODES", "DeviceSide", "ServerSide", "Uplink", "pack", "split_model", "unpack"]

DOWNLINK_MODES = ("tokens", "pooled")


@dataclass(frozen=True)
class Uplink:
    """What a device sends the server to start an iteration: packed embeddings and lengths."""

    embeddings: Tensor      # (T, H) real tokens only, example after example
    lengths: Tensor         # (N,) int32, real tokens per example


def pack(hidden: Tensor, lengths: Tensor) -> Tensor:
    """``(N, L, H)`` right-padded -> ``(T, H)`` real tokens, example after example."""
    mask = torch.arange(hidden.shape[1], device=hidden.device)[None, :] < lengths[:, None].to(torch.long)
    return hidden[mask]


def unpack(packed: Tensor, lengths: Tensor) -> Tensor:
    """``(T, H)`` -> ``(N, L, H)`` with zeros at the padding, :math:`L = \\max_i \\ell_i`."""
    lengths = lengths.to(torch.long)
    width = int(lengths.max())
    mask = torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]
    out = packed.new_zeros(lengths.shape[0], width, packed.shape[-1])
    out[mask] = packed
    return out


def length_mask(lengths: Tensor, width: int) -> Tensor:
    """``(N, width)`` int64 attention mask of right-padded rows (1 on real tokens)."""
    return (torch.arange(width, device=lengths.device)[None, :] < lengths.to(torch.long)[:, None]).to(torch.long)


def masked_mean(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """Masked mean over tokens, the expression of ``MeanPoolClassifier.forward``."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)                       # (N, L, 1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)                # (N, H)


def _classifier(model: nn.Module) -> nn.Module:
    inner = model.get_base_model() if is_peft(model) else model
    encoder = getattr(inner, "encoder", None)
    if not hasattr(inner, "classifier") or not isinstance(getattr(encoder, "embeddings", None), nn.Module):
        raise ValueError(f"split learning needs a mean-pooling classifier whose encoder has an 'embeddings' "
                         f"submodule (models/heads.MeanPoolClassifier, e.g. minilm-l6); got {type(inner).__name__}")
    return inner


class _Cut(Exception):
    """Raised by the device's hook to end the encoder forward at the embedding output."""

    def __init__(self, output: Tensor) -> None:
        super().__init__("split: embedding output captured")
        self.output = output


@contextmanager
def _hooked(module: nn.Module, hook):
    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def _eval_mode(module: nn.Module):
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


class DeviceSide:
    """The device's modules: the frozen embedding module and the task head (pooling + classifier)."""

    def __init__(self, model: nn.Module, downlink: str) -> None:
        if downlink not in DOWNLINK_MODES:
            raise ValueError(f"downlink={downlink!r} must be one of {DOWNLINK_MODES}")
        clf = _classifier(model)
        self.encoder = clf.encoder
        self.classifier = clf.classifier     # PEFT: a wrapper that runs the active adapter's copy
        self.downlink = downlink

    def embed(self, batch: dict[str, Tensor]) -> Uplink:
        """Embedding-module forward (no gradient: the module is frozen); the uplink message.

        The encoder's public forward runs until its ``embeddings`` submodule has produced its
        output, which a forward hook takes and ends the forward with; no encoder layer runs.
        """
        mask = batch["attention_mask"]
        lengths = mask.sum(1).to(torch.int32)
        if not torch.equal(mask.to(torch.long), length_mask(lengths, mask.shape[1])):
            raise ValueError("split learning expects right-padded batches (attention mask = 1 then 0)")

        def take(_module, _args, output):
            raise _Cut(output)

        kwargs = {"input_ids": batch["input_ids"], "attention_mask": mask}
        if batch.get("token_type_ids") is not None:
            kwargs["token_type_ids"] = batch["token_type_ids"]
        with torch.no_grad(), _hooked(self.encoder.embeddings, take):
            try:
                self.encoder(**kwargs)
            except _Cut as cut:
                emb = cut.output
            else:  # pragma: no cover - an encoder that never calls its embeddings module
                raise ValueError(f"{type(self.encoder).__name__}.forward never called its 'embeddings' module")
        return Uplink(pack(emb, lengths), lengths)

    def loss(self, features: Tensor, lengths: Tensor, labels: Tensor, log_prior: Tensor | None = None,
             tau: float = 1.0) -> tuple[Tensor, Tensor]:
        """Head forward from the received features (a leaf that collects their gradient).

        ``log_prior`` (the device's log label frequencies) selects the logit-adjusted loss
        (``training/loss.py``); None: plain cross-entropy.

        Returns ``(loss, leaf)``; after ``loss.backward()``, ``leaf.grad`` is the uplink gradient.
        """
        leaf = features.detach().requires_grad_(True)
        if self.downlink == "tokens":
            hidden = unpack(leaf, lengths)
            pooled = masked_mean(hidden, length_mask(lengths, hidden.shape[1]))
        else:
            pooled = leaf
        logits = self.classifier(pooled)
        return local_loss(logits, labels, log_prior, tau), leaf


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
        """Encoder forward on the received embeddings; the downlink features (detached copy).

        The encoder's public forward runs on placeholder token ids (the server never sees the
        real ones) with the received embeddings substituted for its embedding output, so that
        the library builds the attention mask from the lengths as in unsplit training.
        """
        emb = unpack(up.embeddings, up.lengths)                                     # (N, L, H)
        mask2d = length_mask(up.lengths, emb.shape[1])
        placeholder = torch.zeros(mask2d.shape, dtype=torch.long, device=emb.device)

        def substitute(_module, _args, _output):
            return emb

        with _eval_mode(self.bert.embeddings), _hooked(self.bert.embeddings, substitute):
            hidden = self.bert(input_ids=placeholder, attention_mask=mask2d).last_hidden_state  # (N, L, H)
        out = pack(hidden, up.lengths) if self.downlink == "tokens" else masked_mean(hidden, mask2d)
        self._out = out
        return out.detach()

    def backward(self, grad: Tensor) -> None:
        """Backpropagate the device's gradient of the downlinked features into the LoRA factors."""
        if self._out is None:
            raise RuntimeError("ServerSide.backward before forward")
        self._out.backward(grad.to(self._out.dtype))
        self._out = None


def split_model(model: nn.Module, downlink: str = "tokens") -> tuple[DeviceSide, ServerSide]:
    """The device and server halves of ``model`` for the given downlink payload."""
    return DeviceSide(model, downlink), ServerSide(model, downlink)
