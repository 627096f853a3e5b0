"""DNS for DNS-01: where a challenge record lives and when every authoritative server shows it."""
