"""The `gcp` adapters: Cloud Vision (detect), a Gemini image model on Vertex AI (compose) and
Cloud Storage (store).

Nothing here imports a Google client library at module import time: each adapter imports its
client on first use, so selecting the `local` backends never pays for them.
"""
