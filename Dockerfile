# syntax=docker/dockerfile:1
# Two services, two images; they meet only over HTTP. Each target installs only its own
# requirements:
#   api (the last stage: a plain `docker build .` gives it; infra deploys it to Cloud Run):
#       docker build --target api -t animal-avatar-api .
#       uvicorn on $PORT (8000 by default; Cloud Run sets PORT itself)
#       migrations: alembic -c api/alembic.ini upgrade head   (same image, another command)
#   function (the Cloud Function with its local face models, for compose or any other host;
#   Cloud Functions itself builds from a zip of cloud_functions/, see infra/):
#       docker build --target function -t animal-avatar-function .
#       functions-framework --target generate_animal_avatar --source main.py on $PORT (8080)
# docker-compose.yml wires them together; infra/README.md covers the cloud.

# The base image, pinned to a patch release; bump every FROM line together (the other stages
# build on builder-base and runtime-base).
# --- builder-base: an empty venv, what both builders start from --------------------------------
FROM python:3.11.14-slim-bookworm AS builder-base

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH

WORKDIR /build
RUN python -m venv /opt/venv

# --- runtime-base: what both images run on -----------------------------------------------------
FROM python:3.11.14-slim-bookworm AS runtime-base

# ENVIRONMENT=production: the settings refuse the code's placeholder secrets (dev-only-...), so
# a container started without its real secrets (MEDIA_SIGNING_KEY; the API's ADMIN_API_KEY too)
# stops instead of running on publicly known keys. `make run` (no container) stays in development.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ENVIRONMENT=production \
    PATH=/opt/venv/bin:$PATH \
    STORAGE_DIR=/data/media

# A fixed, unprivileged uid, the same in both images: a named volume mounted at /data keeps this
# ownership, and the API and the function share the media volume.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app \
    && mkdir -p /data/media \
    && chown -R app:app /data

WORKDIR /app

# --- function-builder: the function's venv and the local face models ---------------------------
FROM builder-base AS function-builder

# Requirements first, so a code change does not reinstall every package. requirements-local.txt
# is the deployed requirements.txt plus the local models' runtime (ai-edge-litert).
COPY cloud_functions/requirements.txt cloud_functions/requirements-local.txt cloud_functions/
RUN pip install --no-cache-dir -r cloud_functions/requirements-local.txt

# The four .tflite models come out of the mediapipe wheel on PyPI (sha256-pinned by the script):
# fetched here, at build time, so the running container never downloads anything. The script
# imports the `avatar` package from ../cloud_functions, hence the side-by-side layout.
COPY scripts/fetch_models.py scripts/
COPY cloud_functions/ cloud_functions/
RUN python scripts/fetch_models.py --model-dir /opt/models

# --- function: the Cloud Function served by functions-framework --------------------------------
FROM runtime-base AS function

ENV MODEL_DIR=/opt/models \
    PORT=8080

COPY --from=function-builder /opt/venv /opt/venv
COPY --from=function-builder /opt/models /opt/models

# The folder's contents at the top of /app, as Cloud Functions lays out the deployed zip:
# functions-framework puts the source's folder (/app) on sys.path, so `avatar` imports.
COPY --chown=root:root cloud_functions/ ./

USER 10001:10001
EXPOSE 8080

# A listening $PORT counts as alive: the function has no GET route to ask (it answers 405).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, socket; socket.create_connection(('127.0.0.1', int(os.environ['PORT'])), timeout=3).close()"]

CMD ["sh", "-c", "exec functions-framework --target generate_animal_avatar --source main.py --host 0.0.0.0 --port \"${PORT}\""]

# --- storage-emulator: a local Cloud Storage for the gcs store (docker compose --profile gcs) -
FROM python:3.11.14-slim-bookworm AS storage-emulator

ARG GCP_STORAGE_EMULATOR_VERSION=2026.7.19
RUN pip install --no-cache-dir "gcp-storage-emulator==${GCP_STORAGE_EMULATOR_VERSION}"
USER 65534:65534
EXPOSE 9023
CMD ["gcp-storage-emulator", "start", "--host=0.0.0.0", "--port=9023", "--in-memory"]

# --- api-builder: the API's venv, from requirements.txt only ------------------------------------
FROM builder-base AS api-builder

COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

# --- api (last, so a plain `docker build .` gives this) -----------------------------------------
FROM runtime-base AS api

# PYTHONPATH=/app: alembic and `python -c` find the `api` package too.
ENV PYTHONPATH=/app \
    PORT=8000

COPY --from=api-builder /opt/venv /opt/venv
COPY --chown=root:root api/ api/

USER 10001:10001
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['PORT'], timeout=3)"]

CMD ["sh", "-c", "exec uvicorn api.main:create_app --factory --host 0.0.0.0 --port \"${PORT}\""]
