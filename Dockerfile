# syntax=docker/dockerfile:1
# Document Vault image: `vault serve` on port 8000 as a non-root user.
#
#   docker build -t document-vault .            (one platform)
#   ops/build.sh                                (tests, then linux/amd64 + linux/arm64 to ECR)
#
# Two stages from the same base: "build" installs the project (a wheel built
# from pyproject.toml) into /opt/venv; "runtime" copies only that venv.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# What the wheel is built from: metadata, the readme it names, the three packages.
COPY pyproject.toml README.md ./
COPY vault ./vault
COPY actors ./actors
COPY http ./http
RUN pip install --upgrade pip \
 && pip install . \
 && vault --help >/dev/null

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="document-vault" \
      org.opencontainers.image.description="Integrity-checked document store"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    VAULT_DATA_DIR=/var/lib/vault
RUN groupadd --system --gid 10001 vault \
 && useradd --system --uid 10001 --gid vault --home-dir /var/lib/vault \
        --no-create-home --shell /usr/sbin/nologin vault \
 && install -d -o vault -g vault -m 0700 /var/lib/vault
# The venv stays owned by root: the service can read it, not change it.
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
WORKDIR /var/lib/vault
EXPOSE 8000
STOPSIGNAL SIGTERM
# A slim image has no curl: ask /healthz with the standard library (non-2xx raises).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]
ENTRYPOINT ["vault"]
CMD ["serve"]
