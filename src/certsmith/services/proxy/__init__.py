"""``certsmith proxy``: a reverse proxy that serves HTTPS itself, with automatic certificates.

- :mod:`.config`: the sites and limits (TOML file or command line), as frozen dataclasses.
- :mod:`.http`: pure HTTP/1.1 framing decisions (smuggling rules, limits, hop-by-hop headers,
  X-Forwarded-*), testable without sockets.
- :mod:`.fastpath`: the same decisions for the common exchange (a whole head without a body, a
  whole Content-Length response) in a few C-level calls; declines anything else.
- :mod:`.tls`: TLS for client connections on a plain transport (one SSLObject each, buffers
  shared per worker).
- :mod:`.certs`: certificates per site (local CA or ACME), SNI selection, TLS settings.
- :mod:`.upstream`: keep-alive connections to the apps, kept warm in a pool.
- :mod:`.exchange_api`: what an upstream connection calls back on the exchange it serves
  (protocols :mod:`.server` implements), so the two modules do not import each other.
- :mod:`.server`: one worker's listeners and client connections (asyncio on uvloop, httptools).
- :mod:`.supervisor`: the parent process: sockets, certificates, workers, renewal, signals.
"""
