# syntax=docker/dockerfile:1
#
# Hanlin's images, from one file:
#   --target operator   the kopf operator and the CLI; the base install, no torch
#   --target runtime    the workloads (train / eval / serve / agent); torch for CPU
#                       by default, CUDA with --build-arg TORCH_INDEX_URL=<a CUDA wheel index>
#                       (or https://pypi.org/simple, whose Linux torch is the CUDA build)
#
# Both run as an unprivileged user and work with a read-only root filesystem:
# everything written at run time goes to /tmp and /cache, which the Helm chart and
# the operator mount as emptyDirs (with podman/docker: --read-only --tmpfs /tmp
# --tmpfs /cache). Bytecode is compiled at build time, so Python never writes
# next to its modules.
#
# BASE_IMAGE must provide `python3` (3.11 or newer) with the venv module; an official
# Python slim image does, and so does a Debian rootfs with python3-venv installed
# (scripts/build-image.sh builds one when no registry is reachable).

ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm

# ---------------------------------------------------------------------------
# base: the user, the writable paths and the environment both images share.
FROM ${BASE_IMAGE} AS base
ENV PATH=/opt/hanlin/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp/home \
    TMPDIR=/tmp \
    XDG_CACHE_HOME=/cache \
    HANLIN_CACHE=/cache/hanlin \
    HF_HOME=/cache/huggingface \
    TORCHINDUCTOR_CACHE_DIR=/cache/torchinductor \
    TRITON_CACHE_DIR=/cache/triton \
    MPLCONFIGDIR=/cache/matplotlib
# A fixed numeric uid, so Kubernetes can verify runAsNonRoot without a passwd lookup.
RUN groupadd --system --gid 10001 hanlin \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp/home --no-create-home \
      --shell /usr/sbin/nologin hanlin \
 && mkdir -p /cache \
 && chown 10001:10001 /cache \
 && chmod 1777 /cache

# ---------------------------------------------------------------------------
# build-deps: a virtual environment with the base install's dependencies (no torch).
FROM base AS build-deps
# Constraints for the resolver, one requirement per word. botocore (boto3) needs
# python-dateutil<3 while the newest kubernetes client wants >=3: stated up front, pip
# picks a kubernetes release that fits instead of backtracking through every botocore.
# scripts/build-image.sh passes the versions the test suite ran with.
ARG PIP_CONSTRAINTS="python-dateutil<3"
# pip's cache is a build cache mount, never a layer (a builder may give the host's
# cache as a volume at /var/cache/pip). Where responses are not cacheable (a proxy
# that strips caching headers), the layer order below is what saves downloads: the
# dependencies' layers depend on pyproject.toml alone.
ENV PIP_CACHE_DIR=/var/cache/pip \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CONSTRAINT=/tmp/constraints.txt
WORKDIR /src
# Dependencies first, from pyproject.toml alone, so a source change reuses this layer
# (a current pip: the one a base image ships can backtrack for a long time here).
COPY pyproject.toml README.md ./
RUN --mount=type=cache,id=hanlin-pip,target=/var/cache/pip,sharing=locked \
    printf '%s\n' ${PIP_CONSTRAINTS} > /tmp/constraints.txt \
 && python3 -m venv /opt/hanlin \
 && /opt/hanlin/bin/pip install --upgrade pip \
 && python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > /tmp/requirements.txt \
 && /opt/hanlin/bin/pip install --compile -r /tmp/requirements.txt

# ---------------------------------------------------------------------------
# build-operator: Hanlin itself, on the base install. Hanlin goes to its own directory
# (/opt/hanlin-app, on PYTHONPATH) so that the final images copy the dependencies and
# Hanlin as separate layers: a source change rebuilds and ships megabytes, not the
# dependencies' gigabytes.
FROM build-deps AS build-operator
ENV PATH=/opt/hanlin-app/bin:${PATH} \
    PYTHONPATH=/opt/hanlin-app
COPY operator ./operator
COPY services ./services
RUN --mount=type=cache,id=hanlin-pip,target=/var/cache/pip,sharing=locked \
    /opt/hanlin/bin/pip install --compile --no-deps --target /opt/hanlin-app . \
 && hanlin --help >/dev/null

# ---------------------------------------------------------------------------
# build-runtime-deps: torch first, from the chosen wheel index, then the rest of the
# `runtime` extra, from pyproject.toml alone (a source change reuses this large layer).
# The default is PyTorch's CPU index: PyPI's Linux wheel is the CUDA build (several GB
# of nvidia-* libraries); a CUDA index (https://download.pytorch.org/whl/cu128) or
# PyPI itself (https://pypi.org/simple) give a GPU-capable image.
FROM build-deps AS build-runtime-deps
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# g++ builds the serving engine's fused CPU kernels below; it stays in the build stages.
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ \
 && rm -rf /var/lib/apt/lists/*
RUN --mount=type=cache,id=hanlin-pip,target=/var/cache/pip,sharing=locked \
    /opt/hanlin/bin/pip install --compile --index-url "${TORCH_INDEX_URL}" torch \
 && python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["runtime"]))' > /tmp/runtime-requirements.txt \
 && /opt/hanlin/bin/pip install --compile -r /tmp/runtime-requirements.txt \
 && /opt/hanlin/bin/python -c "import torch, transformers, peft"

# ---------------------------------------------------------------------------
# build-runtime: Hanlin itself, on the workloads' dependencies (as in build-operator).
FROM build-runtime-deps AS build-runtime
ENV PATH=/opt/hanlin-app/bin:${PATH} \
    PYTHONPATH=/opt/hanlin-app
COPY operator ./operator
COPY services ./services
RUN --mount=type=cache,id=hanlin-pip,target=/var/cache/pip,sharing=locked \
    /opt/hanlin/bin/pip install --compile --no-deps --target /opt/hanlin-app . \
 && /opt/hanlin/bin/pip check \
 && hanlin train --help >/dev/null \
 && /opt/hanlin/bin/python -m hanlin.serve.kernels --prebuild /opt/hanlin-app/hanlin-kernels

# ---------------------------------------------------------------------------
# operator: the image the Helm chart runs. The final images come after every build
# stage: buildah keys a cached ARG step on the build arguments declared before it, and
# CREATED (new every build) must not reach the dependency stages.
FROM base AS operator
ENV PATH=/opt/hanlin-app/bin:${PATH} \
    PYTHONPATH=/opt/hanlin-app
COPY --from=build-deps /opt/hanlin /opt/hanlin
COPY --from=build-operator /opt/hanlin-app /opt/hanlin-app
# Labels after the copies: CREATED changes every build and would invalidate them.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="hanlin-operator" \
      org.opencontainers.image.description="Hanlin: the Kubernetes operator for training, evaluating, serving and running agents on LLMs" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.vendor="Hanlin"
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
ENTRYPOINT ["hanlin"]
CMD ["operator", "run"]

# ---------------------------------------------------------------------------
# runtime: the image the operator's workload pods run.
FROM base AS runtime
# The fused CPU kernels, built for any AVX-512 CPU in build-runtime (no compiler here).
ENV PATH=/opt/hanlin-app/bin:${PATH} \
    PYTHONPATH=/opt/hanlin-app \
    HANLIN_KERNELS_PREBUILT=/opt/hanlin-app/hanlin-kernels
COPY --from=build-runtime-deps /opt/hanlin /opt/hanlin
COPY --from=build-runtime /opt/hanlin-app /opt/hanlin-app
# Labels after the copies: CREATED changes every build and would invalidate them.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="hanlin-runtime" \
      org.opencontainers.image.description="Hanlin workloads: training, evaluation, serving and agents" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.vendor="Hanlin"
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000 8001 9090
ENTRYPOINT ["hanlin"]
CMD ["--help"]
