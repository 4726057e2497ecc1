# syntax=docker/dockerfile:1
# One image for both services, chosen by the command:
#   API (default):  uvicorn on $PORT (8000 here, the port Cloud Run passes when it runs the API)
#   function:       functions-framework --target generate_animal_avatar --source cloud_functions/main.py
#   migrations:     alembic -c api/alembic.ini upgrade head
# docker-compose.yml wires them together; infra/README.md covers the cloud.

# The base image, pinned to a patch release; bump all three FROM lines together.
# --- builder: the virtual environment and the local face models -------------------------------
FROM python:3.11.14-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH

WORKDIR /build
RUN python -m venv /opt/venv

# Requirements first, so a code change does not reinstall every package.
COPY requirements.txt ./
COPY cloud_functions/requirements.txt cloud_functions/
RUN pip install --no-cache-dir -r requirements.txt

# The four .tflite models come out of the mediapipe wheel on PyPI (sha256-pinned by the script):
# fetched here, at build time, so the running container never downloads anything.
COPY scripts/fetch_models.py scripts/
COPY cloud_functions/ cloud_functions/
RUN python scripts/fetch_models.py --model-dir /opt/models

# --- storage-emulator: a local Cloud Storage for the gcs store (docker compose --profile gcs) -
FROM python:3.11.14-slim-bookworm AS storage-emulator

ARG GCP_STORAGE_EMULATOR_VERSION=2026.7.19
RUN pip install --no-cache-dir "gcp-storage-emulator==${GCP_STORAGE_EMULATOR_VERSION}"
USER 65534:65534
EXPOSE 9023
CMD ["gcp-storage-emulator", "start", "--host=0.0.0.0", "--port=9023", "--in-memory"]

# --- runtime (last, so a plain `docker build .` gives this) ----------------------------------------------------------------------------------
FROM python:3.11.14-slim-bookworm AS runtime

# ENVIRONMENT=production: the settings refuse the code's placeholder secrets (dev-only-...), so
# a container started without real ADMIN_API_KEY / MEDIA_SIGNING_KEY stops instead of running on
# publicly known keys. `make run` (no container) stays in development.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ENVIRONMENT=production \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app:/app/cloud_functions \
    MODEL_DIR=/opt/models \
    STORAGE_DIR=/data/media \
    PORT=8000

# A fixed, unprivileged uid: a named volume mounted at /data keeps this ownership.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app \
    && mkdir -p /data/media \
    && chown -R app:app /data

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/models /opt/models

WORKDIR /app
COPY --chown=root:root api/ api/
COPY --chown=root:root cloud_functions/ cloud_functions/

USER 10001:10001
EXPOSE 8000 8080

# A listening $PORT counts as alive: the function has no GET route to ask (it answers 405), so
# this works for both commands; docker-compose.yml checks the API's /healthz on top.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, socket; socket.create_connection(('127.0.0.1', int(os.environ['PORT'])), timeout=3).close()"]

CMD ["sh", "-c", "exec uvicorn api.main:create_app --factory --host 0.0.0.0 --port \"${PORT}\""]
