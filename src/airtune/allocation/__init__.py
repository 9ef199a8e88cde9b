"""airtune.allocation."""
