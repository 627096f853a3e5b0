"""Moving in from other ACME clients (certbot today)."""
