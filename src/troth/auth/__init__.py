"""Who may do what: admin users, server-side sessions, API keys and the role table.

Pure capability: no web framework here. ``troth.web.auth_deps`` turns it into FastAPI
dependencies and ``troth.web.admin`` into the admin pages.

Secrets are never stored: passwords as argon2id hashes, session tokens and API key
secrets as SHA-256 digests (both are 256-bit random values, so a fast hash is enough).
"""
