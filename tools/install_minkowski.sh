#!/usr/bin/env bash
# Build and install MinkowskiEngine 0.5.4 (CPU only) against the installed torch.
#
#   bash tools/install_minkowski.sh          # ~10 minutes on 2 cores; PYTHON=... to override
#
# What is known (see issue 2):
# * 0.5.4 is source-only; its metadata step fails on numpy 2 unless --blas=openblas is given;
#   the CPU build needs libopenblas-dev (apt) and compiles against torch 2.13.
# * on Python >= 3.10 import fails until collections.Sequence -> collections.abc.Sequence in
#   its Python files (patched below before building).
# * its setup.py runs `pip uninstall` and `rm -rf build` as side effects, so it is built in a
#   throw-away copy under a temporary directory, with --no-deps and --no-build-isolation so
#   pip never replaces torch or numpy.
set -euo pipefail
PY="${PYTHON:-python3}"
VERSION="${MINKOWSKI_VERSION:-0.5.4}"
TORCH_BEFORE="$("$PY" -c 'import torch; print(torch.__version__)')"

if ! dpkg -s libopenblas-dev >/dev/null 2>&1; then
    if command -v apt-get >/dev/null; then
        SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
        $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libopenblas-dev
    else
        echo "install_minkowski.sh: libopenblas-dev is required" >&2; exit 1
    fi
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
"$PY" -m pip download --no-deps --no-binary :all: "MinkowskiEngine==$VERSION" -d . >/dev/null
tar xzf MinkowskiEngine-"$VERSION".tar.gz
cd MinkowskiEngine-"$VERSION"
# Python >= 3.10: collections.Sequence & co. moved to collections.abc
grep -rlE "collections\.(Sequence|Iterable|Mapping)" --include='*.py' . | while read -r f; do
    sed -i -E 's/collections\.(Sequence|Iterable|Mapping)/collections.abc.\1/g' "$f"
done
export MAX_JOBS="${MAX_JOBS:-2}"
"$PY" setup.py install --force_cuda=false --cpu_only --blas=openblas 2>&1 | tail -n 20 \
  || "$PY" -m pip install --no-deps --no-build-isolation . \
       --global-option="--cpu_only" --global-option="--blas=openblas"

cd /
TORCH_AFTER="$("$PY" -c 'import torch; print(torch.__version__)')"
if [ "$TORCH_BEFORE" != "$TORCH_AFTER" ]; then
    echo "install_minkowski.sh: torch changed from $TORCH_BEFORE to $TORCH_AFTER" >&2; exit 1
fi
"$PY" -c "import MinkowskiEngine as ME; print('MinkowskiEngine', ME.__version__, 'OK')"
