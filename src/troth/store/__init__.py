"""Storage: the SQLAlchemy engine, every table troth owns, and the migrations."""
