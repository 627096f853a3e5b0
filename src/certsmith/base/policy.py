"""certsmith's one TLS policy, shared by the proxy and the nginx/Apache/lighttpd installers:
what a server offers, how long HSTS lasts, where ACME HTTP-01 answers live.

The TLS settings are Mozilla's "intermediate" profile (server side TLS 5.7), so sslyze's
``--mozilla_config=intermediate`` check passes:

- TLS 1.2 and 1.3 only.
- TLS 1.2 ciphers: the ECDHE AEAD suites. Mozilla also lists three DHE suites; they need
  DH parameters configured per server, and every client they serve speaks ECDHE.
- TLS 1.3 suites: OpenSSL's defaults (AES-GCM and ChaCha20), which are Mozilla's.
- Key exchange groups exactly X25519, P-256, P-384. OpenSSL's default list adds X448, P-521
  and (TLS 1.3) finite-field groups up to ffdhe8192, whose cost a client chooses: a cheap way
  to make the server burn CPU.
- The client's cipher order (no server preference): every suite offered is strong, and the
  client knows best whether it has AES hardware.

The names below are OpenSSL's, as nginx ``ssl_ecdh_curve``, Apache ``SSLOpenSSLConfCmd Curves``,
lighttpd ``"Groups"`` and ``SSL_CTX_set1_groups_list`` all take them.
"""

from __future__ import annotations

TLS_VERSIONS = ("TLSv1.2", "TLSv1.3")
INTERMEDIATE_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)
GROUPS = ("X25519", "prime256v1", "secp384r1")
GROUPS_LIST = ":".join(GROUPS)

# How long a TLS session may be resumed (nginx ssl_session_timeout, Apache
# SSLSessionCacheTimeout): Mozilla's one day.
SESSION_TIMEOUT = 86400

# Strict-Transport-Security max-age when --hsts gives none: Mozilla's two years (also enough
# for the HSTS preload list, which asks for at least one).
HSTS_DEFAULT = 63072000

# Where HTTP-01 answers are served (RFC 8555 section 8.3): the URL path, the same path under a
# web root or challenge directory, and a regular expression matching the URL path (as nginx,
# Apache's RewriteCond and lighttpd's conditionals write it).
ACME_CHALLENGE_PREFIX = "/.well-known/acme-challenge/"
ACME_CHALLENGE_SUBDIR = ACME_CHALLENGE_PREFIX.strip("/")
ACME_CHALLENGE_REGEX = "^" + ACME_CHALLENGE_PREFIX.replace(".", "\\.")

# Under the state directory: the one directory HTTP-01 answers are written to, for every
# answerer (nginx, Apache and lighttpd map the challenge path here; certsmith proxy serves it),
# and where TLS-ALPN-01 challenge certificates are written for the proxy.
HTTP01_DIR = "http-01"
TLS_ALPN01_DIR = "challenges/tls-alpn-01"
