# Two images from one file:
#   docker build --target api    -t phononscreen-api .     # FastAPI + ingest, no torch
#   docker build --target worker -t phononscreen-worker .  # torch (CUDA) + the potentials
# Both run the same `phononscreen` CLI with settings from the environment (see README.md, "The service").

ARG PYTHON_VERSION=3.11

# ---- web: the pages' JavaScript libraries, at the versions app/web/package-lock.json pins ------
FROM node:20-slim AS web
WORKDIR /web
COPY app/web/package.json app/web/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error

# ---- common base: the project source and the light dependencies ------------------------------
FROM python:${PYTHON_VERSION}-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OPENBLAS_NUM_THREADS=1 PHONONSCREEN_HOME=/data PHONONSCREEN_API_HOST=0.0.0.0
RUN useradd --create-home --uid 1000 phononscreen && mkdir -p /data && chown phononscreen /data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY app ./app
COPY workers ./workers
COPY models ./models
COPY migrations ./migrations
COPY examples ./examples
# What the API process imports: the web stack, the database, the Celery client and the ingest
# half of the science core (pymatgen, ase, spglib, phonopy for the plots) — never torch. The list
# lives in pyproject.toml (the common dependencies plus the `api` extra); flower watches the queue.
RUN pip install ".[api,flower]"
# served by the installed app (app/web/routes.py looks beside itself): no page loads from a CDN
COPY --from=web /web/node_modules /tmp/node_modules
RUN mv /tmp/node_modules "$(python -c 'import app.web, os; print(os.path.dirname(app.web.__file__))')/node_modules"

# ---- api: no torch, no potentials ----------------------------------------------------------------
FROM base AS api
# it listens on 0.0.0.0: writes need an API key (`phononscreen keys create NAME`), or `phononscreen api` refuses to start
ENV PHONONSCREEN_REQUIRE_KEYS=true
# torch and the potentials live in the `worker` extra, which this image does not install
RUN python -c "import importlib.util, sys, app.main; assert 'torch' not in sys.modules; \
assert importlib.util.find_spec('torch') is None, 'torch is installed in the api image'"
USER phononscreen
EXPOSE 8000
HEALTHCHECK CMD python -c "import httpx; httpx.get('http://127.0.0.1:8000/health').raise_for_status()"
CMD ["phononscreen", "api", "--port", "8000"]

# ---- worker: torch for the GPU, SevenNet / CHGNet (weights in their wheels), MatterSim ----------
FROM base AS worker
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
# g++: torch.compile's CPU backend (PHONONSCREEN_COMPILE=auto compiles SevenNet on CPU workers)
RUN apt-get update && apt-get install -y --no-install-recommends g++ && rm -rf /var/lib/apt/lists/*
# torch first from the CUDA index, so nothing later resolves a different build
RUN pip install "torch==2.13.0" --index-url ${TORCH_INDEX}
RUN pip install ".[api,worker]" \
    # MatterSim's declared requirements drag in torchvision/torchaudio/wandb/cloud SDKs it never
    # imports for energies and forces; its real runtime imports are in pyproject.toml (the `worker` extra)
    && pip install --no-deps "mattersim==1.2.3" \
    && python -c "import sevenn, chgnet, mattersim.forcefield.potential"
# Compiled potentials (CPU workers) and the kernels torch builds for them, in one folder that a
# volume can keep across container starts: compiled once (~2 min), then loaded in seconds.
ENV PHONONSCREEN_COMPILE_CACHE=/cache/compiled TORCHINDUCTOR_CACHE_DIR=/cache/inductor
RUN mkdir -p /cache && chown phononscreen /cache
USER phononscreen
# MatterSim checkpoints: mount them at /home/phononscreen/.local/mattersim/pretrained_models
CMD ["phononscreen", "worker", "--queues", "screen,default"]
