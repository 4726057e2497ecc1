"""API keys and signed media links: generation, hashing, constant-time comparison.

The media-link signature is a contract with the function, which signs the `image_url` it
returns the same way (tests/contract checks that each side verifies the other's links).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

API_KEY_PREFIX = "aa_"
# token_urlsafe(32) draws 32 random bytes: 256 bits of entropy.
API_KEY_BYTES = 32
KEY_PREFIX_CHARS = 10


def generate_api_key() -> str:
    """A new random API key; it is shown once and stored only as its hash."""
    return API_KEY_PREFIX + secrets.token_urlsafe(API_KEY_BYTES)


def hash_api_key(key: str) -> str:
    """Hex SHA-256 of a key: keys are high-entropy, so a fast unsalted hash is safe to index."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_prefix(key: str) -> str:
    """The first characters of a key, to tell keys apart without revealing them."""
    return key[:KEY_PREFIX_CHARS]


def secrets_equal(given: str, expected: str) -> bool:
    """Compare two secrets in constant time."""
    return hmac.compare_digest(given.encode(), expected.encode())


def media_signature(signing_key: str, object_name: str, expires: int) -> str:
    """HMAC-SHA256 hex of `object_name\\nexpires` with the media signing key."""
    message = f"{object_name}\n{expires}".encode()
    return hmac.new(signing_key.encode(), message, hashlib.sha256).hexdigest()


def media_signature_valid(
    signing_key: str, object_name: str, expires: int, signature: str, *, now: float
) -> bool:
    """True if the signature matches and has not expired."""
    if expires < now:
        return False
    return secrets_equal(signature, media_signature(signing_key, object_name, expires))
