# Hearth in a container: the same pyproject install as the README, in two stages.
#
#   docker build -t hearth .
#   docker run -p 8080:8080 -v "$PWD/models:/models" hearth
#   docker run --network private-net --entrypoint hearth hearth \
#     worker --host 0.0.0.0 --allow-public-bind   # an RPC worker: private networks only
#
# GPU builds pass llama.cpp's CMake flags and a CUDA base image, for example:
#   docker build --build-arg CMAKE_ARGS=-DGGML_CUDA=on \
#     --build-arg BUILD_IMAGE=nvidia/cuda:12.6.3-devel-ubuntu24.04 \
#     --build-arg RUNTIME_IMAGE=nvidia/cuda:12.6.3-runtime-ubuntu24.04 -t hearth:cuda .
# (the CUDA images need python3-venv installed; the default images are Debian's Python.)

ARG BUILD_IMAGE=python:3.11-slim-bookworm
ARG RUNTIME_IMAGE=python:3.11-slim-bookworm

FROM ${BUILD_IMAGE} AS build
ARG CMAKE_ARGS=""
# llama.cpp's RPC backend is always built (hearth worker, --rpc); no pip cache, so no wheel
# built without it can come back.
ENV CMAKE_ARGS="-DGGML_RPC=on ${CMAKE_ARGS}" PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hearth ./hearth
COPY engine ./engine
COPY runtime ./runtime
COPY server ./server
COPY prompts ./prompts
COPY convert ./convert
# llama-cpp-python compiles llama.cpp here, with CMAKE_ARGS.
RUN python3 -m venv /opt/hearth && /opt/hearth/bin/pip install .

FROM ${RUNTIME_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 hearth \
    && mkdir /models && chown hearth /models
COPY --from=build /opt/hearth /opt/hearth
# Inside the container the server must listen on all interfaces to be reachable through
# the published port; outside, Hearth's default stays 127.0.0.1.
ENV PATH=/opt/hearth/bin:$PATH \
    HEARTH_HOST=0.0.0.0 \
    HEARTH_PORT=8080 \
    HEARTH_MODELS_DIR=/models
USER 10001
WORKDIR /home/hearth
VOLUME ["/models"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4)"]
ENTRYPOINT ["hearth", "serve"]
