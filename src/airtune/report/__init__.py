"""airtune.report."""
