"""troth's own secrets, kept as files in one private directory.

Each secret is created once, atomically (``O_EXCL``), so several workers starting together
agree on it; afterwards it is only read.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from troth.errors import StoreError

__all__ = ["Secrets"]


class Secrets:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _read_or_create(self, name: str, make: bytes) -> bytes:
        path = self.directory / name
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            data = path.read_bytes()
            if not data:
                raise StoreError(f"secret file {path} is empty") from None
            return data
        except OSError as exc:
            raise StoreError(f"cannot create secret {path}: {exc.strerror}") from None
        with os.fdopen(fd, "wb") as fh:
            fh.write(make)
            fh.flush()
            os.fsync(fh.fileno())
        return make

    def key(self, name: str, size: int = 32) -> bytes:
        """A random symmetric key, created on first use."""
        return self._read_or_create(f"{name}.key", secrets.token_bytes(size))

    def existing_signing_key(self, name: str) -> Ed25519PrivateKey | None:
        """The Ed25519 key if it exists; never creates one."""
        path = self.directory / f"{name}.ed25519.pem"
        if not path.exists():
            return None
        return self.signing_key(name)

    def signing_key(self, name: str) -> Ed25519PrivateKey:
        """An Ed25519 private key, created on first use."""
        fresh = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        pem = self._read_or_create(f"{name}.ed25519.pem", fresh)
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise StoreError(f"{name}.ed25519.pem is not an Ed25519 key")
        return key
