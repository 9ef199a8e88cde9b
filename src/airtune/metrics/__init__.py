"""airtune.metrics."""
