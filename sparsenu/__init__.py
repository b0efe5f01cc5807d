"""sparsenu: detector-robust representations of LArTPC events.

Sparse 3D convolutions (``sparsenu.sparse``), a staged LArTPC simulator
(``sparsenu.sim``), detector/sparse HDF5 formats and datasets (``sparsenu.data``),
augmentations (``sparsenu.augment``), encoders and heads (``sparsenu.models``),
losses (``sparsenu.losses``), one trainer (``sparsenu.train``) and the
domain-shift evaluation (``sparsenu.eval``).
"""
from sparsenu.errors import SparsenuError

__version__ = "0.1.0"

__all__ = ["SparsenuError", "__version__", "load_embeddings"]


def load_embeddings(path, as_dataframe: bool = False):
    """Read an embeddings file written by ``sparsenu embed``.

    See :func:`sparsenu.eval.embeddings.load_embeddings`.
    """
    from sparsenu.eval.embeddings import load_embeddings as _load

    return _load(path, as_dataframe=as_dataframe)
