"""airtune.models."""
