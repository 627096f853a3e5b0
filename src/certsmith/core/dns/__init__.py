"""DNS-01 providers: the ways certsmith writes and removes ``_acme-challenge`` TXT records.

``provider.DnsProvider`` is the seam; ``providers.from_spec`` builds one from a ``DnsSpec``:
``rfc2136`` (TSIG-signed dynamic updates), ``lexicon`` (dns-lexicon's provider APIs) and
``hook`` (a command of the user's). ``tsig`` reads BIND key files; ``address`` parses
HOST[:PORT].
"""
