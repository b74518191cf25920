"""Data subject rights: access, portability, erasure, rectification, restriction and
objection, carried out across the service's own databases (F5)."""
