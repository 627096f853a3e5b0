"""certsmith: HTTPS for any self-hosted app."""

__version__ = "0.1.0"
