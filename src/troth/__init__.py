"""troth: make a privacy policy true in running software."""

__version__ = "0.1.0"
