"""airtune.strategies."""
