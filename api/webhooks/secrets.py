"""Webhook signing secrets: made, and kept encrypted at rest.

A secret is `whsec_` + base64 of 32 random bytes (the Standard Webhooks format). It is stored
encrypted with AES-256-GCM under a key derived (HKDF-SHA256) from WEBHOOK_ENCRYPTION_KEY, its
owner's id bound in as associated data (a ciphertext copied to another user's row does not
decrypt), so neither a dump of the database nor a row moved within it can sign.

WEBHOOK_ENCRYPTION_KEY may list several keys, comma-separated, to rotate it: the first encrypts,
each decrypts (a stored value names its key by a short fingerprint), and the API re-encrypts
under the first, as it starts, every stored secret still under another (api.webhooks.service).

`cryptography` is imported on first use: an API that serves no webhook does not load it.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "whsec_"
SECRET_BYTES = 32
FORMAT = b"\x01"
NONCE_BYTES = 12
FINGERPRINT_BYTES = 4
HKDF_INFO = b"animal-avatar webhook secrets v1"


class SecretUnreadable(Exception):
    """A stored secret that no configured key decrypts (the key was changed, not rotated)."""


def new_secret() -> str:
    """A fresh signing secret, `whsec_` + base64 of 32 random bytes."""
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


class SecretBox:
    """Encrypts and decrypts signing secrets with the configured key(s)."""

    def __init__(self, configured: str) -> None:
        self._materials = [part.strip() for part in configured.split(",") if part.strip()]
        if not self._materials:
            raise ValueError("WEBHOOK_ENCRYPTION_KEY is empty")
        # A short name for each key (hashlib: telling keys apart loads no cryptography).
        self._fingerprints = [
            hashlib.sha256(HKDF_INFO + b"\0" + material.encode()).digest()[:FINGERPRINT_BYTES]
            for material in self._materials
        ]
        self._ciphers: list[tuple[bytes, AESGCM]] | None = None

    def _keys(self) -> list[tuple[bytes, AESGCM]]:
        if self._ciphers is None:
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
            from cryptography.hazmat.primitives.kdf.hkdf import HKDF

            ciphers = []
            for fingerprint, material in zip(self._fingerprints, self._materials, strict=True):
                kdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO)
                ciphers.append((fingerprint, AESGCM(kdf.derive(material.encode()))))
            self._ciphers = ciphers
        return self._ciphers

    @property
    def rotating(self) -> bool:
        """Whether several keys are configured (stored secrets may be under a later one)."""
        return len(self._materials) > 1

    @property
    def fingerprint(self) -> bytes:
        """The first key's fingerprint, as stored values name it (bytes 2-5)."""
        return self._fingerprints[0]

    def seal(self, secret: str, owner: uuid.UUID) -> bytes:
        """The secret encrypted under the first key, bound to its owner."""
        fingerprint, cipher = self._keys()[0]
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = cipher.encrypt(nonce, secret.encode(), owner.bytes)
        return FORMAT + fingerprint + nonce + sealed

    def open(self, stored: bytes, owner: uuid.UUID) -> str:
        """The secret a stored value holds; SecretUnreadable if no configured key opens it."""
        from cryptography.exceptions import InvalidTag

        head = len(FORMAT) + FINGERPRINT_BYTES
        if stored[: len(FORMAT)] != FORMAT or len(stored) <= head + NONCE_BYTES:
            raise SecretUnreadable("not a sealed webhook secret")
        fingerprint = stored[len(FORMAT) : head]
        nonce, sealed = stored[head : head + NONCE_BYTES], stored[head + NONCE_BYTES :]
        for known, cipher in self._keys():
            if known != fingerprint:
                continue
            try:
                return cipher.decrypt(nonce, sealed, owner.bytes).decode()
            except InvalidTag:
                break
        raise SecretUnreadable("no configured WEBHOOK_ENCRYPTION_KEY opens this secret")
