"""airtune.config."""
