"""Recipients and international transfers: disclosure decisions, the disclosure log, and
requests from authorities with the legal holds they create."""
