"""The policy model: loading, validating and resolving a troth policy."""
