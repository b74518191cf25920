"""Keys for personal data: subject pseudonyms, per-subject data keys wrapped by a
key-encryption key (KEK), rotation, and crypto-shredding."""
