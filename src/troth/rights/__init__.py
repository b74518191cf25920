"""Data subject rights: access, portability, erasure, rectification, restriction and
objection, carried out across the service's own databases (F5).

The engine side (:mod:`troth.rights.engine`, :mod:`troth.rights.connectors`,
:mod:`troth.rights.package`) finds, exports, erases and corrects a person's data as the
dataset annotations (:mod:`troth.policy.datasets`) declare; the request lifecycle
(:mod:`troth.rights.requests` and its jobs, codes, delivery and mailer) drives it."""
