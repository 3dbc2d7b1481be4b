#!/usr/bin/env bash
# Build (or refresh) .venv from the project's own files. Order matters: torch first, pinned to
# the CPU wheel, so no later resolver step can pull a CUDA build; mattersim last with --no-deps
# (see pyproject.toml for why), its real runtime imports being declared in pyproject.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.phononscreen-setup
HASH=$(cat pyproject.toml scripts/setup.sh app/web/package-lock.json | sha256sum | cut -d' ' -f1)
WEB_LIBS=app/web/node_modules
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ] && [ -d "$WEB_LIBS" ] && command -v chromium >/dev/null; then
  exit 0
fi

# The browser tests drive Debian's chromium through its chromedriver; the web pages' JavaScript
# libraries come from npm. Both from the system's package manager when missing (root or sudo).
apt_install() {
  if [ "$(id -u)" = 0 ]; then APT=(apt-get); elif command -v sudo >/dev/null; then APT=(sudo apt-get); else
    echo "setup: cannot install $* (not root, no sudo): install them with your package manager" >&2; return 0
  fi
  DEBIAN_FRONTEND=noninteractive "${APT[@]}" install -y -q "$@" >/dev/null || {
    DEBIAN_FRONTEND=noninteractive "${APT[@]}" update -q >/dev/null &&
      DEBIAN_FRONTEND=noninteractive "${APT[@]}" install -y -q "$@" >/dev/null
  }
}
command -v chromium >/dev/null && command -v chromedriver >/dev/null || apt_install chromium chromium-driver
command -v npm >/dev/null || apt_install nodejs npm
# exact versions from package-lock.json, served by the app itself (app/web/routes.py): no CDN
npm ci --prefix app/web --no-audit --no-fund --loglevel=error
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
EXTRA=()
[ -d /opt/wheels ] && EXTRA+=(--find-links /opt/wheels)
"${PIP[@]}" install -q --upgrade pip wheel setuptools
"${PIP[@]}" install -q "${EXTRA[@]}" "torch==2.13.0"
"${PIP[@]}" install -q "${EXTRA[@]}" -e ".[api,worker,dev]"
"${PIP[@]}" install -q "${EXTRA[@]}" --no-deps "mattersim==1.2.3"
# fail here, not in the first test, if the install is not what we think it is
"$VENV/bin/python" - <<'PY'
import importlib, sys
import torch
assert "+cpu" in torch.__version__ or not torch.version.cuda, f"a CUDA torch was installed: {torch.__version__}"
# the science core, the api and worker extras, and the linters of the dev extra (`make lint`)
for mod in ("phonopy", "pymatgen.core", "ase", "fastapi", "uvicorn", "sevenn", "chgnet",
            "mattersim.forcefield.potential", "mypy", "importlinter", "ruff"):
    importlib.import_module(mod)
for banned in ("torchvision", "torchaudio", "wandb"):
    if importlib.util.find_spec(banned) is not None:
        sys.exit(f"{banned} is installed but must not be")
PY
echo "$HASH" > "$STAMP"
