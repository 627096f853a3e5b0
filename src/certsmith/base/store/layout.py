"""The state directory's layout version: the ``format`` file (see ``migrate``)."""

FORMAT = 2
FORMAT_KEY = "format"
