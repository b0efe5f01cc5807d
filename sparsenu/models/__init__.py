"""sparsenu.models: the sparse encoder, its heads, and probes on frozen embeddings.

- :mod:`sparsenu.models.resnet`: ``SparseResNet`` (the encoder).
- :mod:`sparsenu.models.heads`: projection, classifier and domain heads, gradient reversal.
- :mod:`sparsenu.models.probe`: ``LinearProbe`` and ``KNNProbe`` (scikit-learn estimators);
  imported on demand so that ``import sparsenu.models`` does not import scikit-learn.
"""
from sparsenu.models.heads import ClassifierHead, DomainClassifier, GradientReversal, ProjectionHead, grad_reverse
from sparsenu.models.resnet import PRESETS, BasicBlock, SparseResNet

__all__ = ["SparseResNet", "BasicBlock", "PRESETS", "ProjectionHead", "ClassifierHead", "GradientReversal",
           "grad_reverse", "DomainClassifier"]
