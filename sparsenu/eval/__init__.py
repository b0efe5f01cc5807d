"""Evaluation of frozen representations under detector shifts.

- :mod:`sparsenu.eval.embeddings`: ``compute_embeddings`` (frozen encoder, projection head
  dropped), the embeddings file (``embed_file`` = ``sparsenu embed``, ``load_embeddings``;
  ``data_specs/embeddings.md``).
- :mod:`sparsenu.models.probe`: ``LinearProbe`` (StandardScaler + logistic regression) and
  ``KNNProbe`` (cosine kNN), scikit-learn estimators on frozen embeddings (in ``models``
  because training selects checkpoints with the same kNN).
- :mod:`sparsenu.eval.sensitivity`: mean cosine distance between the embeddings of the same
  events seen by the nominal and a shifted detector.
- :mod:`sparsenu.eval.suite`: the domain-shift benchmark (``run_benchmark`` =
  ``sparsenu benchmark``; ``data_specs/suite.md``).
- :mod:`sparsenu.eval.report`, :mod:`sparsenu.eval.plots`: results tables, markdown report, plots.

Submodules are imported on demand (``from sparsenu.eval.embeddings import load_embeddings``) so that
``import sparsenu.eval`` stays light.
"""
