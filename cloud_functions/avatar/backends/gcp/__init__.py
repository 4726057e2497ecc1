"""The `gcp` adapters: Cloud Vision (detect), a Gemini image model on Vertex AI (compose) and
Cloud Storage (store), all through the Google client libraries over REST.

- Nothing here imports a Google client library at module import time: each adapter imports its
  client on first use and builds it once per instance, so the `local` path never pays for them.
- Endpoints: VISION_API_ENDPOINT / VERTEX_API_ENDPOINT override the defaults (Vertex: the
  regional `{location}-aiplatform.googleapis.com`); STORAGE_EMULATOR_HOST is read by
  google-cloud-storage itself. A plain `http://` endpoint is a local fake and gets anonymous
  credentials; otherwise the clients use Application Default Credentials.
- Deadlines: GCP_DEADLINE_S is the request's whole budget for Google calls; detect, compose
  and store each get a share (retry.DEADLINE_SHARES) and retry only 429/503/504 and broken
  connections, with jittered backoff, inside it. The libraries' own retries are switched off.
  An upload is also cut to the caller's deadline (X-Request-Deadline) plus a short grace.
- Errors are translated to avatar.errors in errors.py and nowhere else: quota (429) becomes
  503 upstream_unavailable with the server's Retry-After, deadlines 504 upstream_timeout, other
  failures (5xx, unreadable answers, auth) 503 upstream_unavailable. A result name taken by
  other bytes (412 on a create-only upload) is 409 conflict (storage.py).
- Moderation: SafeSearch LIKELY/VERY_LIKELY (adult, violence, racy) and the model's own safety
  blocks are 422 content_blocked; the local compositor stands in only for answers without an
  image (see vertex.py).
"""
