"""Consent: the ledger of choices, effective consent, signed receipts, and the banner's config."""
