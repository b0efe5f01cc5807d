"""sparsenu.models: the sparse encoder and (in heads.py) the projection/classifier heads."""
from sparsenu.models.resnet import PRESETS, BasicBlock, SparseResNet

__all__ = ["SparseResNet", "BasicBlock", "PRESETS"]
from sparsenu.models.heads import ClassifierHead, DomainClassifier, GradientReversal, ProjectionHead, grad_reverse  # noqa: E402,F401  (heads: helper "train")
__all__ += ["ProjectionHead", "ClassifierHead", "GradientReversal", "grad_reverse", "DomainClassifier"]
