"""airtune.data."""
