"""The exceptions certsmith raises on purpose; each carries a message a person can act on.

The CLI prints ``str(exc)`` as one line and exits with ``exc.exit_code``.
"""

from __future__ import annotations


class CertsmithError(Exception):
    """Base class: an expected failure with a one-line, actionable message."""

    exit_code = 1


class UsageError(CertsmithError):
    """The command line or a config file asks for something invalid."""

    exit_code = 2


class IdentifierError(UsageError):
    """A name or IP address that cannot go into a certificate."""


class StoreError(CertsmithError):
    """The state directory cannot be read or written."""


class DamagedError(StoreError):
    """A file in the state directory exists but cannot be used (truncated, not parseable,
    inconsistent); the message names the file."""


class LockedError(StoreError):
    """Another certsmith process holds the lock."""


class StaleLeaseError(StoreError):
    """A write carried a lease that is no longer the newest for its name (fencing)."""


class NotFoundError(CertsmithError):
    """A named certificate, account or file does not exist."""


class CAError(CertsmithError):
    """The certificate authority refused, failed or could not be reached."""

    def __init__(
        self, message: str, retry_after: float | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.code = code  # the ACME error type's last part, e.g. "rateLimited"


class ChallengeError(CertsmithError):
    """A challenge could not be prepared or was not validated."""


class DnsError(ChallengeError):
    """DNS-01: a DNS server or provider refused, could not be reached, or did not show the
    record in time."""


class DeployError(CertsmithError):
    """A deploy target (file or command) failed."""
