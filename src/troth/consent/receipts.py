"""Signed consent receipts (Ed25519): what a person can keep to prove what they chose.

A receipt is a JSON object; its ``signature`` is Ed25519 over the canonical JSON (sorted
keys, no whitespace, UTF-8) of every other field, so anyone with the public key can check it.
"""

from __future__ import annotations

from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from troth.errors import ReceiptError
from troth.keyring.signing import b64, canonical, key_id, public_key_pem, unb64

__all__ = ["ReceiptSigner", "canonical", "key_id", "public_key_pem", "verify_receipt"]

RECEIPT_FIELDS = (
    "receipt_id",
    "receipt_version",
    "controller",
    "service",
    "subject",
    "policy_version",
    "language",
    "method",
    "jurisdiction",
    "gpc",
    "choices",
    "timestamp",
    "audit_index",
    "key_id",
)


class ReceiptSigner:
    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public = private.public_key()
        self.key_id = key_id(self.public)

    def sign(self, payload: dict[str, Any]) -> str:
        return b64(self._private.sign(canonical(payload)))

    def receipt(self, payload: dict[str, Any], signature: str) -> dict[str, Any]:
        return {**payload, "signature": signature}


def verify_receipt(receipt: Any, public: Ed25519PublicKey) -> dict[str, Any]:
    """The receipt's payload if the signature holds; otherwise a ReceiptError saying why."""
    if not isinstance(receipt, dict):
        raise ReceiptError("a receipt is a JSON object")
    missing = [f for f in (*RECEIPT_FIELDS, "signature") if f not in receipt]
    if missing:
        raise ReceiptError(f"receipt lacks {', '.join(missing)}")
    extra = sorted(set(receipt) - {*RECEIPT_FIELDS, "signature"})
    if extra:
        raise ReceiptError(f"receipt has unknown fields: {', '.join(extra)}")
    payload = {k: receipt[k] for k in RECEIPT_FIELDS}
    if payload["key_id"] != key_id(public):
        raise ReceiptError(
            f"receipt was signed with key {payload['key_id']}, not with {key_id(public)}"
        )
    signature = receipt["signature"]
    if not isinstance(signature, str):
        raise ReceiptError("signature must be text")
    try:
        public.verify(unb64(signature), canonical(payload))
    except (InvalidSignature, ValueError):
        raise ReceiptError("signature does not match: the receipt was altered") from None
    return payload
