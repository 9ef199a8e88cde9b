"""airtune.training."""
