"""The vault: how application code holds personal data, for declared purposes only."""
