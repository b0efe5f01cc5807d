"""Training: one trainer for every method, checkpoints and distributed set-up.

>>> from sparsenu.train import train, load_checkpoint
>>> result = train("cfg/tiny_simclr.yaml", out_dir="runs/t")      # doctest: +SKIP
>>> model = load_checkpoint("runs/t/best.pt")                      # doctest: +SKIP
>>> logits = model.classify(x)                                     # doctest: +SKIP

Methods (``method:`` in the config): classifier, classifier_aug, dann,
contrastive, resim -- see :mod:`sparsenu.train.methods`.
"""
from sparsenu.train.checkpoint import LoadedModel, load_checkpoint, read_checkpoint, save_checkpoint
from sparsenu.train.methods import METHOD_CLASSES, Method, get_method
from sparsenu.train.trainer import Trainer, TrainResult, train

__all__ = ["train", "TrainResult", "Trainer", "load_checkpoint", "LoadedModel", "read_checkpoint",
           "save_checkpoint", "Method", "METHOD_CLASSES", "get_method"]
