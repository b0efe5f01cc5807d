#!/usr/bin/env bash
# Install the optional spconv backend (CPU wheel) without touching the installed torch.
#
#   bash tools/install_spconv.sh            # CPU wheel; python3 (PYTHON=/path/to/python to override)
#   bash tools/install_spconv.sh --cuda     # the CUDA 12 wheel (spconv-cu120), for a GPU machine
#
# spconv 2.3.8 ships a manylinux CPU wheel for CPython 3.11 ("spconv") and CUDA wheels
# ("spconv-cu120" for CUDA 12.x, matching cumm-cu120).
# Neither spconv nor cumm depends on torch, but both are installed with --no-deps and their
# pure-Python dependencies pinned explicitly, so pip can never pull another torch (an
# unpinned torch is several GB of CUDA packages). Known spconv-on-CPU problems are handled
# in sparsenu/sparse/_spconv.py (torch.cuda.current_stream() in backward; non-contiguous
# index tensors give silently wrong results).
set -euo pipefail
PY="${PYTHON:-python3}"
TORCH_BEFORE="$("$PY" -c 'import torch; print(torch.__version__)')"

if [ "${1:-}" = "--cuda" ]; then
    "$PY" -m pip install --no-deps "spconv-cu120==2.3.8" "cumm-cu120==0.7.11"
else
    "$PY" -m pip install --no-deps "spconv==2.3.8" "cumm==0.7.11"
fi
"$PY" -m pip install "pccm>=0.4.16" "ccimport>=0.4.4" "pybind11>=2.6.0" "fire" "sympy" "numpy"

TORCH_AFTER="$("$PY" -c 'import torch; print(torch.__version__)')"
if [ "$TORCH_BEFORE" != "$TORCH_AFTER" ]; then
    echo "install_spconv.sh: torch changed from $TORCH_BEFORE to $TORCH_AFTER" >&2
    exit 1
fi
# smoke test: import and one submanifold convolution through the sparsenu adapter
"$PY" - <<'PY'
import torch
import spconv.pytorch  # noqa: F401
from sparsenu.sparse import set_backend, sparse_collate
import sparsenu.sparse.functional as SF
set_backend("spconv")
x = sparse_collate([(torch.tensor([[0, 0, 0], [0, 0, 1], [5, 5, 5]]), torch.ones(3, 2))])
y = SF.conv3d(x, torch.ones(27, 2, 4))
assert y.feats.shape == (3, 4) and float(y.feats[0, 0]) == 4.0, y.feats
print("spconv backend OK:", spconv.__version__ if hasattr(spconv, "__version__") else "")
PY
