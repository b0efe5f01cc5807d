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
# `pip download` would run the sdist's metadata step, which fails without --blas=openblas
# (numpy 2) and pip 23 cannot pass it: fetch the sdist from pip's own index instead.
"$PY" - "$VERSION" <<'PYEOF'
import re, sys, urllib.request
from pip._internal.models.index import PyPI
from pip._internal.configuration import Configuration

version = sys.argv[1]
conf = Configuration(isolated=False)
conf.load()
index = dict(conf.items()).get("global.index-url", PyPI.simple_url).rstrip("/")
page = urllib.request.urlopen(f"{index}/minkowskiengine/").read().decode()
name = f"MinkowskiEngine-{version}.tar.gz"
links = [h for h in re.findall(r'href="([^"]+)"', page) if name in h]
if not links:
    sys.exit(f"install_minkowski.sh: {name} not found on {index}")
url = urllib.request.urljoin(f"{index}/minkowskiengine/", links[0].split("#")[0])
urllib.request.urlretrieve(url, name)
PYEOF
tar xzf MinkowskiEngine-"$VERSION".tar.gz
cd MinkowskiEngine-"$VERSION"
# Python >= 3.10: Sequence & co. moved to collections.abc (0.5.4 writes
# `from collections import Sequence[, namedtuple]` in five files)
find . -name '*.py' -print0 | xargs -0 sed -i -E \
    -e 's/^from collections import (Sequence|Iterable|Mapping), namedtuple$/from collections import namedtuple\nfrom collections.abc import \1/' \
    -e 's/^from collections import (Sequence|Iterable|Mapping)$/from collections.abc import \1/'
if grep -rqE "^from collections import (Sequence|Iterable|Mapping)" --include='*.py' .; then
    echo "install_minkowski.sh: collections.abc patch did not apply" >&2; exit 1
fi
export MAX_JOBS="${MAX_JOBS:-2}"
LOG="${TMPDIR:-/tmp}/install_minkowski.log"
echo "building MinkowskiEngine $VERSION (CPU, OpenBLAS; about 10 minutes), log: $LOG"
if ! "$PY" setup.py install --cpu_only --blas=openblas >"$LOG" 2>&1; then
    tail -n 30 "$LOG" >&2
    echo "install_minkowski.sh: build failed (full log: $LOG)" >&2
    exit 1
fi
cd /
TORCH_AFTER="$("$PY" -c 'import torch; print(torch.__version__)')"
if [ "$TORCH_BEFORE" != "$TORCH_AFTER" ]; then
    echo "install_minkowski.sh: torch changed from $TORCH_BEFORE to $TORCH_AFTER" >&2; exit 1
fi
"$PY" -c "import MinkowskiEngine as ME; print('MinkowskiEngine', ME.__version__, 'OK')"
