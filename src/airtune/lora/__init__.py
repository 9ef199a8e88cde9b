"""airtune.lora."""
