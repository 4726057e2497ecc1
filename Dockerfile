# syntax=docker/dockerfile:1
# Two services, two images; they meet only over HTTP. Each target installs only its own
# requirements (the batch job's image, a third target, is both services' code run as one CLI):
#   api (the last stage: a plain `docker build .` gives it; infra deploys it to Cloud Run):
#       docker build --target api -t animal-avatar-api .
#       uvicorn on $PORT (8000 by default; Cloud Run sets PORT itself)
#       migrations: alembic -c api/alembic.ini upgrade head   (same image, another command)
#   function (the Cloud Function with its local face models, for compose or any other host;
#   Cloud Functions itself builds from a zip of cloud_functions/, see infra/):
#       docker build --target function -t animal-avatar-function .
#       functions-framework --target generate_animal_avatar --source main.py on $PORT (8080)
#   batch (the batch job: the function's pipeline in-process over a folder or a gs:// prefix;
#   `docker compose run --rm batch ...`, or a Cloud Run job with infra's deploy_batch):
#       docker build --target batch -t animal-avatar-batch .
#       python -m batch --input ... --output ... --animal ...   (the entrypoint; args appended)
# docker-compose.yml wires them together; infra/README.md covers the cloud.

# The base image, pinned to a patch release; bump every FROM line together (the other stages
# build on builder-base and runtime-base).
# --- builder-base: an empty venv, what every builder starts from --------------------------------
FROM python:3.11.14-slim-bookworm AS builder-base

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH

WORKDIR /build
RUN python -m venv /opt/venv

# --- runtime-base: what every image runs on -----------------------------------------------------
FROM python:3.11.14-slim-bookworm AS runtime-base

# ENVIRONMENT=production: the settings refuse the code's placeholder secrets (dev-only-...), so
# a container started without its real secrets (MEDIA_SIGNING_KEY; the API's ADMIN_API_KEY and
# WEBHOOK_ENCRYPTION_KEY too) stops instead of running on publicly known keys. `make run` (no
# container) stays in development.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ENVIRONMENT=production \
    PATH=/opt/venv/bin:$PATH \
    STORAGE_DIR=/data/media

# A fixed, unprivileged uid, the same in every image: a named volume mounted at /data keeps this
# ownership, and the API, the function and the batch job share the media volume.
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

# --- batch-builder: the batch job's venv, from batch/requirements.txt ---------------------------
FROM builder-base AS batch-builder

# Requirements first. batch/requirements.txt pulls in ../cloud_functions/requirements-local.txt
# (which pulls in its requirements.txt) and ../requirements.txt by relative path: the four files
# keep the repository's layout under /build. The batch job runs the function's pipeline and
# writes the API's records (--user-id), so it is the one image with both services' packages.
COPY batch/requirements.txt batch/
COPY cloud_functions/requirements.txt cloud_functions/requirements-local.txt cloud_functions/
COPY requirements.txt ./
RUN pip install --no-cache-dir -r batch/requirements.txt

# --- batch: `python -m batch`, the function's pipeline run in-process over many images ----------
FROM runtime-base AS batch

# Both services' code under /app: `api` and `batch` from /app, the function's `avatar` package
# from /app/cloud_functions (its deployed layout). The face models are the function image's own,
# fetched by function-builder: only /opt/models is taken from it, not its venv (building this
# target builds that stage too; a compose build shares it with the function image).
ENV PYTHONPATH=/app:/app/cloud_functions \
    MODEL_DIR=/opt/models

COPY --from=batch-builder /opt/venv /opt/venv
COPY --from=function-builder /opt/models /opt/models
COPY --chown=root:root api/ api/
COPY --chown=root:root cloud_functions/ cloud_functions/
COPY --chown=root:root batch/ batch/

USER 10001:10001

# A job, not a server: no port, nothing to probe; it exits when the inputs are done.
HEALTHCHECK NONE

# The arguments follow: `docker run IMAGE --input ... --output ... --animal ...`, a Cloud Run
# job's args, `docker compose run --rm batch ...`. Without any, the usage.
ENTRYPOINT ["python", "-m", "batch"]
CMD ["--help"]

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

# --log-config (a path under WORKDIR /app, copied with api/): every line on stdout, uvicorn's
# too, is one Cloud Logging JSON object (LOG_FORMAT=text: a line for a person). One process:
# with --workers N, PROMETHEUS_MULTIPROC_DIR must name an empty folder (infra/README.md).
CMD ["sh", "-c", "exec uvicorn api.main:create_app --factory --host 0.0.0.0 --port \"${PORT}\" --log-config api/observability/logging.json"]
