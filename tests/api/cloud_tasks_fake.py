"""Google Cloud Tasks and Google's OIDC token issuer, faked at the HTTP level on loopback.

The real `google-cloud-tasks` client (REST transport, `api_endpoint` pointed here) creates
tasks; the fake records each CreateTask request, keeps the tasks by name (a second create of a
name is 409 ALREADY_EXISTS, as Cloud Tasks answers), and can be scripted to refuse the next
calls (503, 429). It also serves `/certs` in the format of Google's v1 certificates endpoint,
for a throwaway RSA key it signs ID tokens with, so a test can play Cloud Tasks: take a
recorded task and post it to the API with the token Cloud Tasks would send.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

from tests.fake_http import FakeServer, Recorded, Reply, google_error

QUEUE = "projects/test-project/locations/europe-west1/queues/work"
TASKS_ACCOUNT = "tasks@test-project.iam.gserviceaccount.com"
GOOGLE_ISSUER = "https://accounts.google.com"


class SigningKey:
    """A throwaway RSA key and the self-signed certificate Google would publish for it."""

    def __init__(self, key_id: str | None = None) -> None:
        self.key_id = key_id or uuid.uuid4().hex
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-issuer")])
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=1))
            .sign(key, hashes.SHA256())
        )
        self.certificate_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
        # Loaded once: loading (and checking) the key costs some 70 ms of CPU.
        self._signer = crypt.RSASigner.from_string(self.private_pem, key_id=self.key_id)

    def sign(self, claims: dict[str, Any]) -> str:
        token: bytes = jwt.encode(self._signer, claims)
        return token.decode()


class FakeGoogle:
    """CreateTask under /v2/ and the token issuer's certificates under /certs."""

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []  # every CreateTask body received, in order
        self.tasks: dict[str, dict[str, Any]] = {}  # the tasks it accepted, by name
        self.cert_fetches = 0
        self.key = SigningKey()
        self.published = [self.key]  # the keys /certs lists
        self._refusals: list[int] = []
        self._lock = threading.Lock()
        self._server = FakeServer(self._answer)

    # --- control --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def certs_url(self) -> str:
        return f"{self.url}/certs"

    def start(self) -> FakeGoogle:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def refuse_next(self, *statuses: int) -> None:
        """Answer the next CreateTask calls with these statuses (503, 429, ...), in order."""
        with self._lock:
            self._refusals = list(statuses)

    def task_names(self) -> list[str]:
        return [body["task"]["name"] for body in self.created]

    # --- tokens -----------------------------------------------------------------------------

    def token(
        self,
        audience: str,
        email: str = TASKS_ACCOUNT,
        *,
        key: SigningKey | None = None,
        issuer: str = GOOGLE_ISSUER,
        expires_in_s: int = 3600,
        email_verified: bool = True,
    ) -> str:
        """An ID token as Google signs them for a service account (Cloud Tasks' OIDC token)."""
        now = int(time.time())
        claims = {
            "iss": issuer,
            "aud": audience,
            "azp": "1234567890",
            "sub": "1234567890",
            "email": email,
            "email_verified": email_verified,
            "iat": min(now, now + expires_in_s - 60),
            "exp": now + expires_in_s,
        }
        return (key or self.key).sign(claims)

    async def deliver(
        self,
        client: httpx.AsyncClient,
        task: dict[str, Any],
        *,
        retry_count: int = 0,
        token: str | None = None,
    ) -> httpx.Response:
        """Do what Cloud Tasks does with a task: post to its URL with its OIDC token."""
        http = task["httpRequest"]
        oidc = http["oidcToken"]
        assert http["httpMethod"] in (1, "POST")
        token = token or self.token(oidc["audience"], oidc["serviceAccountEmail"])
        headers = {
            "Authorization": f"Bearer {token}",
            "X-CloudTasks-QueueName": task["name"].split("/")[5],
            "X-CloudTasks-TaskName": task["name"].rsplit("/", 1)[1],
            "X-CloudTasks-TaskRetryCount": str(retry_count),
            "X-CloudTasks-TaskExecutionCount": str(retry_count),
            "User-Agent": "Google-Cloud-Tasks",
        }
        return await client.post(http["url"], headers=headers)

    # --- HTTP -------------------------------------------------------------------------------

    def _answer(self, request: Recorded) -> Reply:
        if request.method == "GET" and request.path == "/certs":
            return Reply(self._certs(), headers={"Cache-Control": "public, max-age=3600"})
        if request.method == "POST" and re.fullmatch(r"/v2/.+/tasks", request.path):
            return self._create_task(request.path, request.json())
        return Reply(google_error(404, "NOT_FOUND"), 404)

    def _create_task(self, path: str, body: dict[str, Any]) -> Reply:
        with self._lock:
            self.created.append(body)
            if self._refusals:
                status = self._refusals.pop(0)
                return Reply(google_error(status, STATUS_NAMES[status], "scripted refusal"), status)
            task = dict(body["task"])
            parent = path.removeprefix("/v2/").removesuffix("/tasks")
            task.setdefault("name", f"{parent}/tasks/{uuid.uuid4().hex}")
            if not task["name"].startswith(parent + "/tasks/"):
                error = google_error(400, "INVALID_ARGUMENT", "the task's name is not in the queue")
                return Reply(error, 400)
            if task["name"] in self.tasks:
                return Reply(
                    google_error(409, "ALREADY_EXISTS", "Requested entity already exists"), 409
                )
            task["createTime"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            self.tasks[task["name"]] = task
            return Reply(task)

    def _certs(self) -> dict[str, str]:
        with self._lock:
            self.cert_fetches += 1
            return {key.key_id: key.certificate_pem for key in self.published}


# The status Google's JSON errors name for the refusals a test scripts.
STATUS_NAMES = {
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    409: "ALREADY_EXISTS",
}
