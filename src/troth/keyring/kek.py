"""Key-encryption keys. troth ships a local one (a file or an environment variable); a KMS
implements the same three members."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from troth.errors import KeyringError

__all__ = ["KeyEncryptionKey", "LocalKEK", "load_kek"]


class KeyEncryptionKey(Protocol):
    """Wraps and unwraps data keys; ``id`` names the key so rotation can find old wraps."""

    id: str

    def wrap(self, dek: bytes, aad: bytes) -> bytes: ...

    def unwrap(self, blob: bytes, aad: bytes) -> bytes: ...


class LocalKEK:
    """AES-256-GCM with a 32-byte key held by this process."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise KeyringError(f"a key-encryption key is 32 bytes, not {len(key)}")
        self._aead = AESGCM(key)
        self.id = hashlib.sha256(b"troth-kek" + key).hexdigest()[:16]

    def wrap(self, dek: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, dek, aad)

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        try:
            return self._aead.decrypt(blob[:12], blob[12:], aad)
        except InvalidTag:
            raise KeyringError(
                f"a data key does not open with key-encryption key {self.id}: wrong KEK, "
                "or the wrapped key was altered"
            ) from None


def load_kek(path: Path | None, env_value: str | None, create_at: Path | None = None) -> LocalKEK:
    """The KEK from ``TROTH_KEK`` (base64), else from a file; created only where asked."""
    if env_value:
        try:
            return LocalKEK(base64.b64decode(env_value, validate=True))
        except (binascii.Error, ValueError):
            raise KeyringError("TROTH_KEK is not base64 of 32 bytes") from None
    if path is not None:
        if path.exists():
            return LocalKEK(_read(path))
        raise KeyringError(f"key-encryption key file {path} does not exist")
    if create_at is None:
        raise KeyringError("no key-encryption key: set TROTH_KEK or TROTH_KEK_FILE")
    if not create_at.exists():
        create_at.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(create_at, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return LocalKEK(_read(create_at))
        with os.fdopen(fd, "wb") as fh:
            fh.write(os.urandom(32))
            fh.flush()
            os.fsync(fh.fileno())
    return LocalKEK(_read(create_at))


def _read(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyringError(f"cannot read key-encryption key {path}: {exc.strerror}") from None
    if len(data) != 32:
        raise KeyringError(
            f"key-encryption key file {path} must hold 32 bytes, it holds {len(data)}"
        )
    return data
