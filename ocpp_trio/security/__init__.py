"""Security profiles: authentication of upgrade requests, password rotation, TLS contexts, the
stations file."""
