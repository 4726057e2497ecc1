"""V4 URL signing without a private key: the IAM Credentials API's signBlob.

On Cloud Functions the default credentials are a metadata-server token with no key. The
service account can still sign through IAM (`roles/iam.serviceAccountTokenCreator` on itself);
this wraps that call in google-auth's `Signing` interface so google-cloud-storage's
`generate_signed_url(credentials=...)` can use it. The endpoint is a parameter, so tests point
it at a local fake (google-cloud-storage's own signBlob path hardcodes https://iamcredentials.).
"""

from __future__ import annotations

import base64
from typing import Any

import google.auth.credentials
import google.auth.crypt
from google.auth.transport.requests import AuthorizedSession, Request


class SignBlobError(Exception):
    """signBlob answered with an HTTP error; `code` is its status, `response` the answer."""

    def __init__(self, response: Any) -> None:
        super().__init__(f"IAM signBlob answered HTTP {response.status_code}")
        self.code = response.status_code
        self.response = response


class IamSigner(google.auth.crypt.Signer):
    """Signs bytes as `email` through IAM signBlob, authorised by `credentials`' token."""

    def __init__(
        self, credentials: Any, email: str, endpoint: str, timeout_s: float = 10.0
    ) -> None:
        self._session = AuthorizedSession(credentials)  # type: ignore[no-untyped-call]
        self._url = f"{endpoint}/v1/projects/-/serviceAccounts/{email}:signBlob"
        self._timeout_s = timeout_s

    @property
    def key_id(self) -> str | None:
        return None

    def sign(self, message: bytes | str) -> bytes:
        """The RSA-SHA256 signature IAM makes for `message` with the service account's key."""
        payload = message.encode() if isinstance(message, str) else message
        body = {"payload": base64.b64encode(payload).decode()}
        response = self._session.post(self._url, json=body, timeout=self._timeout_s)
        if response.status_code != 200:
            raise SignBlobError(response)
        return base64.b64decode(response.json()["signedBlob"])


class IamSigningCredentials(google.auth.credentials.Signing):
    """Just enough of google-auth's Signing interface for generate_signed_url(version="v4")."""

    def __init__(self, signer: IamSigner, email: str) -> None:
        self._signer = signer
        self._email = email

    def sign_bytes(self, message: bytes) -> bytes:
        return self._signer.sign(message)

    @property
    def signer_email(self) -> str:
        return self._email

    @property
    def signer(self) -> IamSigner:
        return self._signer


def signing_credentials(credentials: Any, iam_endpoint: str, timeout_s: float) -> Any:
    """`credentials` themselves if they hold a key, else an IAM signBlob stand-in for them."""
    if isinstance(credentials, google.auth.credentials.Signing):
        return credentials
    email = _service_account_email(credentials)
    signer = IamSigner(credentials, email, iam_endpoint, timeout_s)
    return IamSigningCredentials(signer, email)


def _service_account_email(credentials: Any) -> str:
    """The service account behind token-only credentials (metadata-server ones learn it on
    their first refresh: until then they call themselves "default")."""
    email = getattr(credentials, "service_account_email", None)
    if not email or email == "default":
        credentials.refresh(Request())
        email = getattr(credentials, "service_account_email", None)
    if not email or email == "default":
        msg = "these credentials hold no private key and name no service account to sign as"
        raise ValueError(msg)
    return str(email)
