"""The audit log: append-only, tamper-evident (RFC 6962 Merkle tree, signed tree heads)."""
