"""certsmith: HTTPS for any self-hosted app."""

from certsmith.base.version import VERSION

__version__ = VERSION
