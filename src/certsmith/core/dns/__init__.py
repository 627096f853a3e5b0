"""DNS for DNS-01: writing and removing ``_acme-challenge`` TXT records, and knowing when every
authoritative server shows them.

``provider.DnsProvider`` is the write seam; ``providers.from_spec`` builds one from a
``DnsSpec``: ``rfc2136`` (TSIG-signed dynamic updates), ``lexicon`` (dns-lexicon's provider
APIs) and ``hook`` (a command of the user's). ``tsig`` reads BIND key files; ``address`` parses
HOST[:PORT]. ``propagation.Lookup`` finds where a challenge record goes (CNAME, alias, zone,
authoritative servers, through the resolvers the user named) and waits until every
authoritative server shows the values (``locate``, ``query``, ``progress``, ``target``).
"""
