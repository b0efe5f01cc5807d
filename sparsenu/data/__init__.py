"""sparsenu.data: file formats, preprocessing, the sparse dataset and simulated-file writing.

Public names are imported lazily so that importing a format reader (e.g. in a
preprocessing worker process) does not import torch.

- :class:`SparseH5Dataset`, :func:`collate_views` (``sparsenu.data.dataset``)
- :func:`preprocess`, :class:`PreprocessSummary` (``sparsenu.data.preprocess``)
- :func:`simulate_file`, :func:`write_simulated_dataset`, :func:`resimulate_file`,
  :class:`SimulationConfig`, :class:`SimulateSummary` (``sparsenu.data.simulate``)
- :func:`read_sparse`, :func:`write_sparse`, :class:`SparseH5Writer` (``sparsenu.data.formats.sparse_h5``)
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "SparseH5Dataset": "sparsenu.data.dataset",
    "collate_views": "sparsenu.data.dataset",
    "view_generator": "sparsenu.data.dataset",
    "preprocess": "sparsenu.data.preprocess",
    "PreprocessSummary": "sparsenu.data.preprocess",
    "simulate_file": "sparsenu.data.simulate",
    "write_simulated_dataset": "sparsenu.data.simulate",
    "resimulate_file": "sparsenu.data.simulate",
    "SimulationConfig": "sparsenu.data.simulate",
    "SimulateSummary": "sparsenu.data.simulate",
    "read_sparse": "sparsenu.data.formats.sparse_h5",
    "write_sparse": "sparsenu.data.formats.sparse_h5",
    "SparseH5Writer": "sparsenu.data.formats.sparse_h5",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sparsenu.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))
