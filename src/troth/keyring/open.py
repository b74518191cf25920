"""Opening the keyring the way every troth process does, from the settings."""

from __future__ import annotations

from troth.config import Settings
from troth.keyring.kek import LocalKEK, load_kek
from troth.keyring.keys import Keyring

__all__ = ["open_keyring"]


def open_keyring(settings: Settings) -> Keyring:
    """The current KEK plus any previous ones (``kek-*.key``) still needed for rotation."""
    kek = load_kek(settings.kek_file, settings.kek, create_at=settings.keys_dir / "kek.key")
    previous: dict[str, LocalKEK] = {}
    for path in sorted(settings.keys_dir.glob("kek-*.key")):
        old = load_kek(path, None)
        previous[old.id] = old
    return Keyring(kek, previous)
