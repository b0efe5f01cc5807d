"""Configuration of one training run (``sparsenu train CONFIG``): :class:`ExperimentConfig`.

Every section is a :class:`sparsenu.config.ConfigModel`, validated on load, on every
``key=value`` override and on every copy; the augmentation spec is validated by building
it, the re-simulation ranges against the detector's numeric fields.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from sparsenu.config import ConfigModel, load_config
from sparsenu.errors import SparsenuError
from sparsenu.sim.config import DetectorBase
from sparsenu.sim.detectors import SimulationConfig, check_override_names

__all__ = [
    "METHODS", "SimulateSpec", "DataConfig", "ModelConfig", "LossConfig", "ProjectionConfig",
    "OptimConfig", "HeadConfig", "DannConfig", "ResimConfig", "ValidationConfig", "LoggingConfig", "CheckpointConfig",
    "ExperimentConfig", "load_experiment",
]

METHODS = ("classifier", "classifier_aug", "dann", "contrastive", "resim")
"""Training methods understood by :func:`sparsenu.train.train`."""

PositiveFloat = Annotated[float, Field(gt=0.0)]
PositiveInt = Annotated[int, Field(ge=1)]


class SimulateSpec(SimulationConfig):
    """``data.simulate``: simulate the run's data sets once into a cache directory.

    ``seed``, ``sim`` and ``detector`` as in :class:`sparsenu.sim.SimulationConfig`;
    ``target_detector`` holds :class:`~sparsenu.sim.DetectorConfig` overrides of
    ``detector`` for DANN's unlabelled target domain (its own events, simulated with the
    nominal detector, then the detector stage re-run with the target detector). Train,
    validation and target sets use independent seeds derived from ``seed``. ``cache_dir``
    defaults to ``<run dir>/data``; files live in a sub-directory named by a hash of the
    block, so a changed block never reuses stale files.
    """

    n_train: int = Field(200, ge=2)
    n_val: int = Field(50, ge=0)
    n_target: int = Field(0, ge=0)
    target_detector: dict[str, Any] = Field(default_factory=dict)
    cache_dir: str | None = None
    workers: PositiveInt = 1

    @field_validator("target_detector")
    @classmethod
    def _check_target_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_override_names(value)
        return value

    @model_validator(mode="after")
    def _check_target(self) -> SimulateSpec:
        self.target_detector_config  # noqa: B018 - validates the values
        return self

    @property
    def target_detector_config(self) -> DetectorBase:
        """The target detector: ``detector`` with ``target_detector`` applied."""
        try:
            return self.detector.shifted(self.target_detector)
        except ValueError as exc:
            raise ValueError(f"target_detector: {exc}") from None


class DataConfig(ConfigModel):
    """``data``: sparse-tensor HDF5 files, or a ``simulate`` block (not both).

    ``train``/``val``/``target`` are sparse-tensor files (data_specs/sparse_tensor.md);
    ``raw_train`` is the raw detector file of the training events (needed by the
    ``resim`` method when the data are not simulated here). ``feature_scale``
    multiplies the voxel features (ADC) as they are read.
    """

    train: str | None = None
    val: str | None = None
    target: str | None = None
    raw_train: str | None = None
    simulate: SimulateSpec | None = None
    feature_scale: PositiveFloat = 1.0
    num_workers: int = Field(0, ge=0, le=64)

    @model_validator(mode="after")
    def _check_sources(self) -> DataConfig:
        if self.simulate is None and self.train is None:
            raise ValueError("give 'data.train' (a sparse-tensor file) or a 'data.simulate' block")
        if self.simulate is not None and (self.train or self.val or self.target or self.raw_train):
            raise ValueError("'data.simulate' cannot be combined with data.train/val/target/raw_train files")
        return self

    @property
    def has_target(self) -> bool:
        """Whether an unlabelled target domain is configured."""
        return self.target is not None or (self.simulate is not None and self.simulate.n_target > 0)

    @property
    def has_val(self) -> bool:
        """Whether a (nominal, labelled) validation set is configured."""
        return self.val is not None or (self.simulate is not None and self.simulate.n_val > 0)


class ModelConfig(ConfigModel):
    """``model``: the :class:`sparsenu.models.SparseResNet` encoder.

    ``preset`` ("cpu" or "paper"), when given, replaces widths/depths/embed_dim/pool.
    """

    preset: Literal["cpu", "paper"] | None = None
    widths: tuple[PositiveInt, ...] = (16, 32, 64)
    depths: tuple[PositiveInt, ...] = (1, 1, 1)
    embed_dim: PositiveInt | None = None
    pool: Literal["max", "avg"] = "max"
    in_channels: PositiveInt = 1
    n_classes: int = Field(5, ge=2)

    @model_validator(mode="after")
    def _check_stages(self) -> ModelConfig:
        if not self.widths or len(self.widths) != len(self.depths):
            raise ValueError(f"'model.widths' and 'model.depths' need the same non-zero length, "
                             f"got {list(self.widths)} and {list(self.depths)}")
        return self


class LossConfig(ConfigModel):
    """``loss``: contrastive loss; positive weight alpha*[same class] + (1-alpha)*[same event]."""

    alpha: float = Field(0.0, ge=0.0, le=1.0)
    temperature: PositiveFloat = 0.1


class ProjectionConfig(ConfigModel):
    """``projection``: the contrastive projection-head MLP (in -> hidden -> out)."""

    hidden_dim: PositiveInt = 128
    out_dim: PositiveInt = 64


class OptimConfig(ConfigModel):
    """``optim``: optimiser, batch size, epochs and learning-rate schedule."""

    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: PositiveFloat = 1e-3
    weight_decay: float = Field(0.0, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, le=1.0)
    batch_size: int = Field(32, ge=2)
    epochs: PositiveInt = 10
    scheduler: Literal["none", "cosine"] = "none"
    warmup_epochs: int = Field(0, ge=0)
    grad_clip: PositiveFloat | None = None

    @model_validator(mode="after")
    def _check_warmup(self) -> OptimConfig:
        if self.warmup_epochs >= self.epochs and self.warmup_epochs > 0:
            raise ValueError(f"'optim.warmup_epochs' ({self.warmup_epochs}) must be < optim.epochs ({self.epochs})")
        return self


class HeadConfig(ConfigModel):
    """``head``: the classification head.

    For classifier/classifier_aug/dann it is trained jointly with the encoder
    (only ``hidden_dim`` applies). For contrastive/resim it is fitted after the
    encoder, on the frozen encoder's representations of the (un-augmented)
    labelled training set, for ``epochs`` epochs at ``lr`` (0 epochs: no head).
    """

    hidden_dim: PositiveInt | None = None
    epochs: int = Field(20, ge=0)
    lr: PositiveFloat = 1e-2
    batch_size: PositiveInt = 256


class DannConfig(ConfigModel):
    """``dann``: domain head behind gradient reversal; loss = CE_label + weight * CE_domain."""

    hidden_dim: PositiveInt = 64
    weight: float = Field(1.0, ge=0.0)


class ResimConfig(ConfigModel):
    """``resim``: RS3L re-simulation views.

    ``detector_ranges`` maps a real-valued :class:`sparsenu.sim.DetectorConfig`
    field to ``[lo, hi]``; each view draws the field uniformly in that range around
    the detector the training file was simulated with (``None``: the default
    ranges of :class:`sparsenu.augment.resim.ResimViews`; ``{}``: same detector,
    new detector-stage seeds only). ``resim_propagation`` also re-runs propagation
    (new seed, same primary).
    """

    detector_ranges: dict[str, tuple[float, float]] | None = None
    resim_propagation: bool = False

    @field_validator("detector_ranges")
    @classmethod
    def _check_ranges(cls, value: dict[str, tuple[float, float]] | None) -> dict[str, tuple[float, float]] | None:
        check_override_names(value or {}, numeric=True)
        for k, (lo, hi) in (value or {}).items():
            if not lo <= hi:
                raise ValueError(f"'{k}': need lo <= hi, got [{lo}, {hi}]")
        return value


class ValidationConfig(ConfigModel):
    """``validation``: how checkpoints are selected on the nominal validation set.

    Contrastive runs select on the kNN accuracy of a cosine kNN with ``knn_k`` neighbours
    fitted on the training set (the benchmark passes its own ``eval.knn_k`` here, so the
    selection metric is the reported kNN); classifier runs on their head's accuracy.
    """

    knn_k: PositiveInt = 20


class LoggingConfig(ConfigModel):
    """``logging``: TensorBoard (needs the ``tensorboard`` package) and step logging."""

    tensorboard: bool = False
    log_every: PositiveInt = 10


class CheckpointConfig(ConfigModel):
    """``checkpoint``: ``last.pt`` every ``every`` epochs (and at the end); ``best.pt``."""

    every: PositiveInt = 1
    save_best: bool = True


AugmentSpec = str | list[Any] | dict[str, Any] | None


class ExperimentConfig(ConfigModel):
    """One training experiment (``cfg/*.yaml``), see :func:`sparsenu.train.train`.

    ``augment`` is a :func:`sparsenu.augment.build_augmentation` spec ("none",
    "paper", a name, or a list of ``{name: ..., **kwargs}``); ``None`` takes the
    method's default ("none" for classifier, "paper" otherwise; resim views come
    from re-simulation, and ``augment`` is applied on top of them).
    ``threads`` sets torch's intra-op CPU threads for the run (``None``: torch's
    default). Small sparse models are many small matrix products, for which one
    thread per process is often fastest, and far faster on a busy machine.
    """

    name: str = "run"
    method: Literal["classifier", "classifier_aug", "dann", "contrastive", "resim"] = "classifier"
    seed: int = Field(0, ge=0, lt=2**63)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(None, ge=1, le=1024)
    data: DataConfig = Field(default_factory=lambda: DataConfig(simulate=SimulateSpec()))
    model: ModelConfig = Field(default_factory=ModelConfig)
    augment: AugmentSpec = None
    loss: LossConfig = Field(default_factory=LossConfig)
    projection: ProjectionConfig = Field(default_factory=ProjectionConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    head: HeadConfig = Field(default_factory=HeadConfig)
    dann: DannConfig = Field(default_factory=DannConfig)
    resim: ResimConfig = Field(default_factory=ResimConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)

    @field_validator("augment")
    @classmethod
    def _check_augment(cls, value: AugmentSpec) -> AugmentSpec:
        from sparsenu.augment import build_augmentation

        try:
            build_augmentation(value)
        except SparsenuError as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _check_method(self) -> ExperimentConfig:
        if not self.name or "/" in self.name or self.name in (".", ".."):
            raise ValueError(f"'name' must be a plain run name, got {self.name!r}")
        if self.method == "classifier" and self.augment not in (None, "none", [], {}):
            raise ValueError("method 'classifier' trains without augmentation; use method 'classifier_aug'")
        if self.method == "dann" and not self.data.has_target:
            raise ValueError("method 'dann' needs an unlabelled target domain: data.target or "
                             "data.simulate.n_target > 0")
        if self.method == "resim" and self.data.simulate is None and self.data.raw_train is None:
            raise ValueError("method 'resim' needs the raw detector file: data.raw_train or a data.simulate block")
        return self

    @property
    def resolved_augment(self) -> Any:
        """The augmentation spec actually used (method default when ``augment`` is None)."""
        if self.augment is not None:
            return self.augment
        return "none" if self.method in ("classifier", "resim") else "paper"


def load_experiment(path: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Load and validate an experiment YAML (``sparsenu train CONFIG``); errors name key and file."""
    return load_config(ExperimentConfig, path, overrides)
