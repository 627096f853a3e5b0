"""certsmith's version, at the bottom so that every layer may name it (the ACME User-Agent,
backup manifests, ``--version``); ``certsmith.__version__`` is this."""

VERSION = "0.1.0"
