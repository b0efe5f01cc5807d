"""Training methods: small objects the one :class:`~sparsenu.train.trainer.Trainer` drives.

A method owns what differs between the published baselines and contrastive
variants (arXiv:2502.07724, RS3L arXiv:2403.07066) -- and nothing else:

- ``build_heads(embed_dim)``: its heads (``joint_heads`` train with the encoder,
  the others are fitted in ``finalize``);
- ``make_train_dataset(trainer, files)``: views per event and how they are made;
- ``training_step(batch, trainer) -> {"loss": Tensor, "n": int, ...sums}``;
- ``validate(trainer, loader) -> {metric: value}`` on the nominal validation set
  (never target labels); ``selection`` names the metric ``best.pt`` follows;
- ``finalize(trainer, encoder)``: post-training work (the contrastive
  classification head on the frozen encoder).

Every forward pass goes through ``trainer.forward(x)`` (the possibly DDP-wrapped
:class:`Net`), which returns the representation and every joint head's output.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from sparsenu.augment import build_augmentation
from sparsenu.augment.resim import ResimViews
from sparsenu.data import SparseH5Dataset
from sparsenu.data.formats.raw import read_detector
from sparsenu.data.resim_dataset import ResimDataset
from sparsenu.errors import SparsenuError
from sparsenu.losses import contrastive_loss, dann_lambda
from sparsenu.models import SparseResNet
from sparsenu.models.heads import ClassifierHead, DomainClassifier, ProjectionHead
from sparsenu.models.probe import KNNProbe
from sparsenu.sparse import SparseTensor
from sparsenu.train.distributed import gather_nograd, gather_with_grad

__all__ = ["Method", "ClassifierMethod", "ClassifierAugMethod", "DannMethod", "ContrastiveMethod",
           "ResimMethod", "METHOD_CLASSES", "get_method", "build_encoder", "Net", "cat_sparse"]


def build_encoder(cfg) -> SparseResNet:
    """The :class:`sparsenu.models.SparseResNet` described by ``cfg.model``."""
    m = cfg.model
    if m.preset is not None:
        return SparseResNet.from_preset(m.preset, in_channels=m.in_channels)
    return SparseResNet(in_channels=m.in_channels, widths=tuple(m.widths), depths=tuple(m.depths),
                        embed_dim=m.embed_dim, pool=m.pool)


def cat_sparse(xs: list) -> Any:
    """Concatenate SparseTensor batches into one (batch indices shifted; stride 1).

    ``xs[k]`` holds ``B_k`` events; in the result they are events
    ``sum(B_<k) .. sum(B_<=k) - 1``.
    """
    if len(xs) == 1:
        return xs[0]
    coords, feats, off = [], [], 0
    for x in xs:
        c = x.coords.clone()
        c[:, 0] += off
        coords.append(c)
        feats.append(x.feats)
        off += int(x.batch_size)
    return SparseTensor(torch.cat(coords, 0), torch.cat(feats, 0), stride=1, batch_size=off)


class Net(nn.Module):
    """Encoder + the heads trained jointly with it (the module DDP wraps).

    ``forward(x, head_kwargs) -> (h [B, D], {head name: head(h, **head_kwargs[name])})``.
    """

    def __init__(self, encoder: nn.Module, heads: dict[str, nn.Module]) -> None:
        super().__init__()
        self.encoder = encoder
        self.heads = nn.ModuleDict(heads)

    def forward(self, x, head_kwargs: dict[str, dict[str, Any]] | None = None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        h = self.encoder(x)
        kw = head_kwargs or {}
        return h, {name: head(h, **kw.get(name, {})) for name, head in self.heads.items()}


class Method:
    """Base class: single-view supervised classification (``classifier``)."""

    name: ClassVar[str] = "classifier"
    n_views: ClassVar[int] = 1
    joint_heads: ClassVar[tuple[str, ...]] = ("classifier",)
    selection: ClassVar[tuple[str, str]] = ("val_acc", "max")
    needs_train_labels: ClassVar[bool] = True

    def __init__(self, cfg) -> None:
        self.cfg = cfg

    # -- construction ------------------------------------------------------------------
    def build_heads(self, embed_dim: int) -> dict[str, nn.Module]:
        """All heads of the method (joint and finalize-only), freshly initialised."""
        return {"classifier": ClassifierHead(embed_dim, self.cfg.model.n_classes, self.cfg.head.hidden_dim)}

    def transform(self):
        """The view transform (the config's augmentation spec)."""
        spec = self.cfg.resolved_augment
        return None if spec in ("none", None, [], {}) else build_augmentation(spec)

    def make_train_dataset(self, trainer, files) -> torch.utils.data.Dataset:
        """Training dataset of ``n_views`` views per event."""

        return SparseH5Dataset(files.train, transform=self.transform(), n_views=self.n_views,
                               seed=trainer.seed_for("augment"), feature_scale=self.cfg.data.feature_scale)

    def setup(self, trainer) -> None:
        """Extra data or state before training (e.g. DANN's target loader)."""

    def on_epoch_start(self, trainer, epoch: int) -> None:
        """Called at the start of every epoch, after the RNGs are seeded."""

    # -- steps -------------------------------------------------------------------------
    def check_labels(self, labels: torch.Tensor) -> None:
        if (labels < 0).any():
            raise SparsenuError(
                f"method '{self.name}' needs labelled training events, but the training file has "
                "events with label -1 (unknown)"
            )

    def training_step(self, batch: dict, trainer) -> dict[str, Any]:
        """Cross-entropy on the (single) view; returns loss and accuracy sums."""
        labels = batch["labels"].to(trainer.device)
        self.check_labels(labels)
        x = trainer.to_device(batch["views"][0])
        _, out = trainer.forward(x)
        logits = out["classifier"]
        loss = F.cross_entropy(logits, labels)
        correct = int((logits.argmax(1) == labels).sum())
        return {"loss": loss, "n": int(labels.shape[0]), "correct": correct}

    @torch.no_grad()
    def validate(self, trainer, loader) -> dict[str, float]:
        """Accuracy and cross-entropy of the classifier head on the nominal validation set."""
        encoder, head = trainer.encoder, trainer.heads["classifier"]
        n, correct, loss_sum = 0, 0, 0.0
        for batch in loader:
            labels = batch["labels"].to(trainer.device)
            keep = labels >= 0
            if not keep.any():
                continue
            logits = head(encoder(trainer.to_device(batch["views"][0])))
            loss_sum += float(F.cross_entropy(logits[keep], labels[keep], reduction="sum"))
            correct += int((logits.argmax(1)[keep] == labels[keep]).sum())
            n += int(keep.sum())
        if n == 0:
            return {}
        return {"val_acc": correct / n, "val_loss": loss_sum / n}

    def finalize(self, trainer, encoder: nn.Module) -> tuple[dict[str, nn.Module], dict[str, float]] | None:
        """Post-training work on the (frozen) ``encoder``: returns (new heads, metrics) or None."""
        return None


class ClassifierMethod(Method):
    """``classifier``: supervised baseline without augmentation."""


class ClassifierAugMethod(Method):
    """``classifier_aug``: supervised baseline on one augmented view per event."""

    name = "classifier_aug"


class DannMethod(Method):
    """``dann``: domain-adversarial training (Ganin et al. 2016, arXiv:1505.07818).

    Each step encodes a labelled source batch and an unlabelled target batch in
    one pass; loss = CE(label head, source) + ``dann.weight`` * CE(domain head,
    source=0 / target=1), the domain head sitting behind gradient reversal with
    lambda(p) = 2 / (1 + exp(-10 p)) - 1 at training progress p in [0, 1].
    Target labels are never read.
    """

    name = "dann"
    joint_heads = ("classifier", "domain")

    def build_heads(self, embed_dim: int) -> dict[str, nn.Module]:
        heads = super().build_heads(embed_dim)
        heads["domain"] = DomainClassifier(embed_dim, self.cfg.dann.hidden_dim)
        return heads

    def setup(self, trainer) -> None:

        ds = SparseH5Dataset(trainer.files.target, transform=self.transform(), n_views=1,
                             seed=trainer.seed_for("target-augment"),
                             feature_scale=self.cfg.data.feature_scale)
        self.target_loader = trainer.make_loader(ds, shuffle=True, stream="target")
        self._target_iter: Iterator[dict] | None = None
        self._target_cycle = 0

    def on_epoch_start(self, trainer, epoch: int) -> None:
        self._epoch = epoch
        self._target_cycle = 0
        self._target_iter = self._new_target_iter()

    def _new_target_iter(self):
        # deterministic in (seed, epoch, cycle): the target set may be shorter than the source set
        self.target_loader.sampler.set_epoch(self._epoch * 1000 + self._target_cycle)
        self.target_loader.dataset.set_epoch(self._epoch * 1000 + self._target_cycle)
        self._target_cycle += 1
        return iter(self.target_loader)

    def _next_target(self) -> dict:
        assert self._target_iter is not None, "on_epoch_start sets the target iterator"
        try:
            return next(self._target_iter)
        except StopIteration:
            self._target_iter = self._new_target_iter()
            return next(self._target_iter)

    def training_step(self, batch: dict, trainer) -> dict[str, Any]:
        labels = batch["labels"].to(trainer.device)
        self.check_labels(labels)
        tgt = self._next_target()
        xs = trainer.to_device(batch["views"][0])
        xt = trainer.to_device(tgt["views"][0])
        b_s, b_t = int(labels.shape[0]), int(tgt["labels"].shape[0])
        lambd = float(dann_lambda(trainer.progress))
        _, out = trainer.forward(cat_sparse([xs, xt]), head_kwargs={"domain": {"lambd": lambd}})
        logits = out["classifier"][:b_s]
        dom = out["domain"]
        dom_labels = torch.cat([torch.zeros(b_s, dtype=torch.long), torch.ones(b_t, dtype=torch.long)]).to(dom.device)
        label_loss = F.cross_entropy(logits, labels)
        domain_loss = F.cross_entropy(dom, dom_labels)
        loss = label_loss + self.cfg.dann.weight * domain_loss
        correct = int((logits.argmax(1) == labels).sum())
        dom_correct = int((dom.argmax(1) == dom_labels).sum())
        return {"loss": loss, "n": b_s, "correct": correct,
                "sums": {"label_loss": label_loss.item() * b_s, "domain_loss": domain_loss.item() * b_s,
                         "domain_acc": dom_correct / (b_s + b_t) * b_s},
                "last": {"dann_lambda": lambd}}


class ContrastiveMethod(Method):
    """``contrastive``: two augmented views, NT-Xent with class/event positives (alpha).

    ``loss.alpha = 0`` is SimCLR (Chen et al. 2020), ``1`` SupCon (Khosla et al.
    2020); see :func:`sparsenu.losses.contrastive_loss`. The loss is computed on
    the projection-head outputs of the embeddings gathered from all ranks. After
    training, ``finalize`` fits a classification head on the frozen encoder.
    """

    name = "contrastive"
    n_views = 2
    joint_heads = ("projection",)
    selection = ("val_knn_acc", "max")

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.needs_train_labels = cfg.loss.alpha > 0  # type: ignore[misc]  # per instance: alpha decides

    def build_heads(self, embed_dim: int) -> dict[str, nn.Module]:
        p = self.cfg.projection
        heads: dict[str, nn.Module] = {"projection": ProjectionHead(embed_dim, p.hidden_dim, p.out_dim)}
        if self.cfg.head.epochs > 0:
            heads["classifier"] = ClassifierHead(embed_dim, self.cfg.model.n_classes, self.cfg.head.hidden_dim)
        return heads

    def training_step(self, batch: dict, trainer) -> dict[str, Any]:
        alpha, temp = self.cfg.loss.alpha, self.cfg.loss.temperature
        labels = batch["labels"].to(trainer.device)
        if alpha > 0:
            self.check_labels(labels)
        v1, v2 = (trainer.to_device(v) for v in batch["views"][:2])
        b = int(labels.shape[0])
        _, out = trainer.forward(cat_sparse([v1, v2]))
        z = out["projection"]
        z1 = gather_with_grad(z[:b])
        z2 = gather_with_grad(z[b:])
        all_labels = gather_nograd(labels) if alpha > 0 else None
        loss = contrastive_loss(z1, z2, labels=all_labels, alpha=alpha, temperature=temp)
        return {"loss": loss, "n": b}

    @torch.no_grad()
    def validate(self, trainer, loader) -> dict[str, float]:
        """The report's kNN on the nominal validation set.

        :class:`sparsenu.models.probe.KNNProbe` (cosine, ``validation.knn_k`` neighbours)
        fitted on the representations of the un-augmented labelled training set and scored
        on the validation events: the same probe the benchmark reports, so the checkpoint is
        selected by the quantity it is judged on (on nominal data only).
        """
        t_emb, t_lab = trainer.embed_loader(trainer.encoder, trainer.plain_train_loader())
        v_emb, v_lab = trainer.embed_loader(trainer.encoder, loader)
        kt, kv = t_lab >= 0, v_lab >= 0
        if int(kt.sum()) < 2 or not bool(kv.any()):
            return {}
        probe = KNNProbe(k=self.cfg.validation.knn_k).fit(t_emb[kt].numpy(), t_lab[kt].numpy())
        return {"val_knn_acc": float(probe.score(v_emb[kv].numpy(), v_lab[kv].numpy()))}

    def finalize(self, trainer, encoder: nn.Module):
        """Fit the classification head on the frozen encoder's training-set representations.

        Representations of the un-augmented labelled training set are computed
        once (encoder in eval mode), then the head is trained with Adam for
        ``head.epochs`` epochs (batch ``head.batch_size``, lr ``head.lr``),
        shuffled by a generator seeded from the run seed.
        """
        if self.cfg.head.epochs == 0:
            return None
        emb, labels = trainer.embed_loader(encoder, trainer.plain_train_loader())
        keep = labels >= 0
        if int(keep.sum()) < 2:
            trainer.log("no labelled training events: the classification head is not fitted")
            return None
        emb, labels = emb[keep], labels[keep]
        hc = self.cfg.head
        torch.manual_seed(trainer.seed_for("head-init"))
        head = ClassifierHead(emb.shape[1], self.cfg.model.n_classes, hc.hidden_dim).to(trainer.device)
        opt = torch.optim.Adam(head.parameters(), lr=hc.lr)
        g = torch.Generator().manual_seed(trainer.seed_for("head-shuffle"))
        emb, labels = emb.to(trainer.device), labels.to(trainer.device)
        n = emb.shape[0]
        head.train()
        for _ in range(hc.epochs):
            perm = torch.randperm(n, generator=g).to(trainer.device)
            for s in range(0, n, hc.batch_size):
                idx = perm[s: s + hc.batch_size]
                loss = F.cross_entropy(head(emb[idx]), labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        head.eval()
        with torch.no_grad():
            train_acc = float((head(emb).argmax(1) == labels).double().mean())
        metrics = {"head_train_acc": train_acc}
        if trainer.val_loader is not None:
            v_emb, v_lab = trainer.embed_loader(encoder, trainer.val_loader)
            keep = v_lab >= 0
            if keep.any():
                with torch.no_grad():
                    pred = head(v_emb[keep].to(trainer.device)).argmax(1).cpu()
                metrics["val_acc"] = float((pred == v_lab[keep]).double().mean())
        return {"classifier": head}, metrics


class ResimMethod(ContrastiveMethod):
    """``resim``: contrastive learning with re-simulation positives (RS3L, arXiv:2403.07066).

    The two views of an event re-run the detector stage (and, with
    ``resim.resim_propagation``, propagation) of its stored simulation with new
    seeds and detector parameters drawn from ``resim.detector_ranges``; the
    ``augment`` spec (default none) is applied on top.
    """

    name = "resim"

    def make_train_dataset(self, trainer, files) -> torch.utils.data.Dataset:
        if files.raw_train is None:
            raise SparsenuError("method 'resim' needs the raw detector file of the training events (data.raw_train)")
        base = read_detector(files.raw_train)
        r = self.cfg.resim
        ranges = None if r.detector_ranges is None else {k: tuple(v) for k, v in r.detector_ranges.items()}
        views = ResimViews(detector_ranges=ranges, resim_propagation=r.resim_propagation, base_detector=base)
        return ResimDataset(files.raw_train, n_views=2, resim=views, transform=self.transform(),
                            seed=trainer.seed_for("augment"), feature_scale=self.cfg.data.feature_scale)


METHOD_CLASSES: dict[str, type[Method]] = {
    "classifier": ClassifierMethod,
    "classifier_aug": ClassifierAugMethod,
    "dann": DannMethod,
    "contrastive": ContrastiveMethod,
    "resim": ResimMethod,
}


def get_method(name: str) -> type[Method]:
    """The method class registered under ``name``."""
    try:
        return METHOD_CLASSES[name]
    except KeyError:
        raise SparsenuError(f"unknown method {name!r}; expected one of {sorted(METHOD_CLASSES)}") from None
