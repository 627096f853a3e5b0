"""``certsmith proxy``: a reverse proxy that serves HTTPS itself, with automatic certificates.

- :mod:`.config`: the sites and limits (TOML file or command line), as frozen dataclasses.
- :mod:`.dnsconfig`: a DNS-01 site's ``[site.dns]`` table over the ``[dns]`` defaults.
- :mod:`.http`: pure HTTP/1.1 framing decisions (smuggling rules, limits, hop-by-hop headers,
  X-Forwarded-*), testable without sockets.
- :mod:`.fastpath`: the same decisions for the common exchange (a whole head without a body, a
  whole Content-Length response) in a few C-level calls; declines anything else.
- :mod:`.tls`: TLS for client connections on a plain transport (one SSLObject each, buffers
  shared per worker).
- :mod:`.certs`: certificates per site (local CA or ACME), SNI selection, TLS settings.
- :mod:`.upstream`: keep-alive connections to the apps, kept warm in a pool.
- :mod:`.exchange_api`: what an upstream connection calls back on the exchange it serves
  (protocols :mod:`.exchange` and :mod:`.connection` implement), so they do not import each
  other.
- :mod:`.exchange`: one request and its response; a site as a worker serves it.
- :mod:`.runtime`: the worker state its connections share (limits, clock, routing, logs).
- :mod:`.connection`: client connections: head parsing, limits, deadlines, and the HTTPS
  connection proxying to the upstream (asyncio on uvloop, httptools).
- :mod:`.redirect`: the plain-HTTP port: ACME HTTP-01 answers and redirects to HTTPS.
- :mod:`.listeners`: one worker's event loop: listeners, deadline sweep, signals, drain.
- :mod:`.server`: the names above where they used to live (re-exports).
- :mod:`.worker`: a worker process (a fresh uvloop loop running the worker).
- :mod:`.supervisor`: the parent process: sockets, certificates, workers, renewal, signals.
"""
