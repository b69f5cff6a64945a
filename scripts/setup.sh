#!/usr/bin/env bash
# Idempotent set-up: system packages (when root and apt-get exist), the Python 3.11 venv with the
# pinned dependencies, and the package itself (editable). Safe to run any number of times: each
# step is skipped when its result is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
VENV=.venv
STAMP="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"

# 1. Debian packages: Fashion-MNIST and the headless browser used by the book test.
need_apt=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need_apt+=(dataset-fashion-mnist)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium chromium-driver)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] apt-get install ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "[setup] warning: cannot install ${need_apt[*]} (not root or no apt-get)." >&2
    echo "[setup]   Fashion-MNIST: set SSLGEOM_FASHION_MNIST_DIR or run sslgeom.data.download_fashion_mnist()." >&2
    echo "[setup]   Without chromium the browser test of the book is skipped." >&2
  fi
fi

# 2. Virtual environment with pinned dependencies.
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "[setup] error: $PYTHON not found; install Python 3.11 or set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
if [ ! -f "$STAMP" ]; then
  echo "[setup] installing pinned dependencies into $VENV (first time: about 2 minutes)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e ".[book,test]"
  rm -f "$VENV"/.installed-*
  touch "$STAMP"
fi

# 3. Offline MathJax for the HTML book (served from the build, never from a CDN).
bash scripts/fetch_mathjax.sh
echo "[setup] ready"
