"""airtune.wireless."""
