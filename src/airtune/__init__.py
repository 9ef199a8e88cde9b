"""airtune: federated LoRA fine-tuning of foundation models over wireless networks."""

__version__ = "0.1.0"
