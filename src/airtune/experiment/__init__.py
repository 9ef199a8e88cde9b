"""airtune.experiment."""
