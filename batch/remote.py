"""A deployed function does the work (`--function-url`): each input is POSTed with all its
animals (the function's `animals` form, the face found once), and each result is downloaded
from the signed link the function answers and written to OUTPUT. The function keeps its own
copy, as for any call: under `avatars/batch/` without `--user-id` (the results bucket's
retention deletes it), under the user's prefix with it (the history's image, erased with them).

The call is authenticated as the API's is: a Google ID token for the function's URL (the job's
service account needs roles/run.invoker on the function), cached until near its expiry.
Throttling (429), the function's 5xx and network errors are retried with backoff; a refusal of
the job's identity or a URL that is not the function stops the job (exit 1); the function's
answer about an image (no face, not an image, too large) is that input's manifest line.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

import httpx

from api.access_log import install_httpx_log_filter
from api.forwarding.id_token import REFRESH_MARGIN_S
from api.forwarding.retry import RetryPolicy, parse_retry_after
from batch.errors import BatchError
from batch.work import Auth, Result, Spec, Task, failed, output_name

# The API's policy (full-jitter backoff, or the server's Retry-After), with the patience of a
# job: 4 tries in all, each wait at most 30 s, within 5 minutes of the first.
RETRY = RetryPolicy(max_attempts=4, budget_s=300.0, base_s=1.0, cap_s=30.0)
# The function's own answers about an image: that image's manifest line, not a problem of the job.
IMAGE_STATUSES = frozenset({400, 413, 415, 422})
CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png"}  # by the stored object's extension
MAX_REQUEST_BYTES = 32 * 1024 * 1024  # Cloud Functions (2nd gen) refuses larger requests


class Unavailable(Exception):
    """The call did not get through after every attempt: (code, detail) for the manifest."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code, self.detail = code, detail


class IdToken:
    """`Bearer <Google ID token>` for one audience, fetched once and shared by every thread."""

    def __init__(self, audience: str, fetch: Callable[[str], str] | None = None) -> None:
        from api.forwarding.id_token import fetch_google_id_token

        self.audience = audience
        self.fetch = fetch or fetch_google_id_token
        self.lock = threading.Lock()
        self.token: str | None = None
        self.expires_at = 0.0

    def header(self) -> str:
        with self.lock:
            if self.token is None or time.time() > self.expires_at - REFRESH_MARGIN_S:
                self.token, self.expires_at = self._fresh()
            return f"Bearer {self.token}"

    def invalidate(self) -> None:
        with self.lock:
            self.token = None

    def _fresh(self) -> tuple[str, float]:
        import google.auth.exceptions

        from api.forwarding.id_token import token_expiry

        try:
            token = self.fetch(self.audience)
            return token, token_expiry(token)
        except (google.auth.exceptions.GoogleAuthError, ValueError, KeyError) as exc:
            msg = f"cannot get an ID token for {self.audience}: {exc}"
            raise BatchError(msg) from exc


class FunctionWorker:
    """Calls the function for each task; one worker serves every thread of the job."""

    def __init__(
        self,
        spec: Spec,
        url: str,
        *,
        auth: Auth = "auto",
        timeout_s: float = 120.0,
        transport: httpx.BaseTransport | None = None,
        token: IdToken | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.spec = spec
        self.url = url
        use_token = auth == "id_token" or (auth == "auto" and url.startswith("https://"))
        self.token = token or (IdToken(url) if use_token else None)
        timeout = httpx.Timeout(timeout_s, connect=10.0)
        self.client = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False)
        # httpx's INFO line per request names each result's signed link: not in the job's log.
        install_httpx_log_filter()
        self.sleep = sleep

    def __call__(self, task: Task) -> list[Result]:
        spec, item = self.spec, task.item
        if item.size > MAX_REQUEST_BYTES:  # not even read
            limit = f"the image is over the function's limit of {MAX_REQUEST_BYTES} bytes"
            return failed(task, spec, "image_too_large", limit)
        try:
            data = spec.input.read(item.name)
        except FileNotFoundError:
            return failed(task, spec, "not_found", f"{spec.input.join(item.name)} is gone")
        ids = [spec.generation_id(item, animal) for animal in task.animals]
        fields = {
            "animals": ",".join(task.animals),
            "user_id": spec.owner,
            "faces": "all" if spec.all_faces else "largest",
            "style": spec.style,
        }
        if spec.user_id is not None:
            fields["generation_ids"] = ",".join(str(gid) for gid in ids)
        files = {"image": (PurePosixPath(item.name).name, data, "application/octet-stream")}
        started = time.perf_counter()
        try:
            response = self._post(fields, files)
        except Unavailable as exc:
            return failed(task, spec, exc.code, exc.detail)
        answer = response.json()
        if response.status_code != 200:
            return failed(task, spec, answer["error"], str(answer.get("detail", "")))
        faces = answer.get("faces")
        call_ms = round((time.perf_counter() - started) * 1000, 1)
        by_animal = {result["animal"]: result for result in answer["results"]}
        return [
            self._result(task, animal, gid, by_animal.get(animal), faces, call_ms)
            for animal, gid in zip(task.animals, ids, strict=True)
        ]

    def close(self) -> None:
        self.client.close()

    def _result(
        self,
        task: Task,
        animal: str,
        generation_id: str | None,
        answer: dict[str, Any] | None,
        faces: list[dict[str, Any]] | None,
        call_ms: float,
    ) -> Result:
        """One animal of the answer: its image fetched and written to OUTPUT, or its error."""
        timings = {"function": call_ms}
        if answer is None:
            error = ("internal_error", f"the function's answer has no result for {animal}")
            return Result(animal, error=error, faces=faces, timings_ms=timings,
                          generation_id=generation_id)  # fmt: skip
        if answer.get("error"):
            error = (str(answer["error"]), str(answer.get("detail") or ""))
            return Result(
                animal, error=error, faces=faces, timings_ms=timings, generation_id=generation_id
            )
        object_name = str(answer["object_name"])
        extension = PurePosixPath(object_name).suffix.lstrip(".") or "jpg"
        started = time.perf_counter()
        try:
            image = self._download(str(answer["image_url"]))
        except Unavailable as exc:
            return Result(
                animal,
                error=(exc.code, exc.detail),
                faces=faces,
                timings_ms=timings,
                generation_id=generation_id,
            )
        name = output_name(task.item, animal, extension)
        self.spec.output.write(name, image, CONTENT_TYPES.get(extension, "image/jpeg"))
        timings["store"] = round((time.perf_counter() - started) * 1000, 1)
        return Result(
            animal,
            output=name,
            faces=faces,
            timings_ms=timings,
            generation_id=generation_id,
            object_name=object_name,
        )

    def _post(self, fields: dict[str, str], files: dict[str, Any]) -> httpx.Response:
        """POST to the function: an answer with a JSON error about the image, or 200."""

        def call() -> httpx.Response:
            headers = {"Authorization": self.token.header()} if self.token else {}
            return self.client.post(self.url, data=fields, files=files, headers=headers)

        refused_once = False
        while True:
            response = self._with_retries(call, "the function")
            if response.status_code in (401, 403) and self.token and not refused_once:
                self.token.invalidate()  # a token revoked or rotated: one more, fresh
                refused_once = True
                continue
            break
        status = response.status_code
        if status == 200 or (status in IMAGE_STATUSES and _is_error_body(response)):
            return response
        if status in (401, 403):
            msg = (
                f"the function at {self.url} refused the job's identity (HTTP {status}): "
                "the job's service account needs roles/run.invoker on it"
            )
            raise BatchError(msg)
        msg = f"{self.url} answered HTTP {status}: is it the avatar function's URL?"
        raise BatchError(msg)

    def _download(self, url: str) -> bytes:
        response = self._with_retries(lambda: self.client.get(url), "the result's link")
        if response.status_code != 200:
            msg = f"the result's link answered HTTP {response.status_code}"
            raise Unavailable("upstream_unavailable", msg)
        return response.content

    def _with_retries(self, call: Callable[[], httpx.Response], what: str) -> httpx.Response:
        """The response, once it is not 429 or 5xx; Unavailable when RETRY gives up."""
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            failure: Unavailable
            retry_after_s = None
            try:
                response = call()
            except httpx.TimeoutException:
                failure = Unavailable("upstream_timeout", f"{what} did not answer in time")
            except httpx.TransportError as exc:
                detail = f"{what} is unreachable: {type(exc).__name__}"
                failure = Unavailable("upstream_unavailable", detail)
            else:
                status = response.status_code
                if status != 429 and status < 500:
                    return response
                code = "upstream_timeout" if status == 504 else "upstream_unavailable"
                failure = Unavailable(code, f"{what} answered HTTP {status}")
                retry_after_s = parse_retry_after(response.headers.get("Retry-After"))
            delay_s = min(RETRY.delay_s(attempt, retry_after_s), RETRY.cap_s)
            if not RETRY.may_retry(attempt, time.monotonic() - started, delay_s):
                raise failure
            self.sleep(delay_s)


def _is_error_body(response: httpx.Response) -> bool:
    """Whether the response is the function's `{"error": code, "detail": ...}`."""
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("error"), str)
