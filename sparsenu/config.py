"""Typed configuration: YAML files loaded into validated dataclasses.

Every config in sparsenu is a (possibly nested) dataclass. :func:`from_dict`
builds one from a plain mapping and rejects, with a :class:`SparsenuError` that
names the key and the file:

- unknown or misspelled keys (with a "did you mean" hint),
- values of the wrong type (``int`` where ``float`` is expected is accepted),
- values outside a declared range (``field(metadata={"range": (lo, hi)})``) or
  not among declared choices (``metadata={"choices": (...)}``),
- anything a dataclass' own ``__post_init__`` rejects with ``ValueError``.

Command-line overrides ``key.sub=value`` are parsed with YAML scalar rules
(``lr=1e-3``, ``flag=true``, ``widths=[16,32]``) and applied before validation,
so they are checked exactly like file values.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

import yaml

from sparsenu.errors import SparsenuError

T = TypeVar("T")

__all__ = [
    "from_dict",
    "to_dict",
    "load_yaml",
    "load_config",
    "apply_overrides",
    "save_yaml",
]


def _fail(msg: str, source: str | None) -> SparsenuError:
    where = f" in {source}" if source else ""
    return SparsenuError(f"{msg}{where}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str, source: str | None) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert where lossless."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key, source)
            except SparsenuError:
                continue
        raise _fail(
            f"key '{key}': expected {' or '.join(_type_name(a) for a in args)}, got {value!r}",
            source,
        )
    if origin is typing.Literal:
        if value not in args:
            raise _fail(f"key '{key}': expected one of {list(args)}, got {value!r}", source)
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise _fail(f"key '{key}': expected a mapping, got {value!r}", source)
        return from_dict(tp, value, source=source, prefix=f"{key}.")
    if origin in (tuple, list, Sequence, typing.Sequence) or tp in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise _fail(f"key '{key}': expected a list, got {value!r}", source)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise _fail(f"key '{key}': expected {len(args)} values, got {len(value)}", source)
            items = [_convert(v, a, f"{key}[{i}]", source) for i, (v, a) in enumerate(zip(value, args))]
        else:
            item_tp = args[0] if args else Any
            items = [_convert(v, item_tp, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else list(items)
    if origin in (dict, Mapping, typing.Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise _fail(f"key '{key}': expected a mapping, got {value!r}", source)
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _convert(v, vt, f"{key}.{k}", source) for k, v in value.items()}
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads "1e-4" (no dot) as a string; accept it as a number.
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(f"key '{key}': expected a number, got {value!r}", source)
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(f"key '{key}': expected an integer, got {value!r}", source)
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise _fail(f"key '{key}': expected true or false, got {value!r}", source)
        return value
    if tp is str:
        if not isinstance(value, str):
            raise _fail(f"key '{key}': expected a string, got {value!r}", source)
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise _fail(f"key '{key}': expected a path, got {value!r}", source)
        return Path(value)
    return value


def from_dict(cls: type[T], data: Mapping[str, Any] | None, source: str | None = None, prefix: str = "") -> T:
    """Build the dataclass ``cls`` from a mapping, validating every key.

    Parameters
    ----------
    cls : type
        A dataclass type. Fields may be nested dataclasses, lists, tuples,
        dicts, ``Optional``/unions and ``Literal``. ``field(metadata=...)`` may
        declare ``range=(lo, hi)`` (inclusive, ``None`` for open) or ``choices``.
    data : mapping or None
        Values; missing keys take the field defaults.
    source : str, optional
        The file the values came from, named in every error.
    prefix : str
        Dotted key prefix for nested error messages.

    Returns
    -------
    An instance of ``cls``.

    Raises
    ------
    SparsenuError
        Unknown key, wrong type, out-of-range value, missing required key.
    """
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise _fail(f"key '{prefix.rstrip('.') or '<root>'}': expected a mapping, got {data!r}", source)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise _fail(
                f"unknown key '{prefix}{key}'{hint}; valid keys: {', '.join(sorted(fields))}", source
            )
    kwargs = {}
    for name, f in fields.items():
        full = f"{prefix}{name}"
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise _fail(f"missing required key '{full}'", source)
            continue
        value = _convert(data[name], hints[name], full, source)
        meta = f.metadata or {}
        if "choices" in meta and value not in meta["choices"]:
            raise _fail(f"key '{full}': expected one of {list(meta['choices'])}, got {value!r}", source)
        if "range" in meta and value is not None:
            lo, hi = meta["range"]
            vals = value if isinstance(value, (list, tuple)) else [value]
            for v in vals:
                if (lo is not None and v < lo) or (hi is not None and v > hi):
                    raise _fail(
                        f"key '{full}': value {value!r} out of range [{lo}, {hi}]", source
                    )
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise _fail(f"invalid '{prefix.rstrip('.') or cls.__name__}': {exc}", source) from None


def to_dict(obj: Any) -> Any:
    """Convert a dataclass (recursively) to plain YAML-safe Python values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; a missing, unreadable or non-mapping file is a SparsenuError."""
    path = Path(path)
    if not path.is_file():
        raise SparsenuError(f"config file not found: {path}")
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise SparsenuError(f"{path}: not valid YAML: {exc}".splitlines()[0]) from None
    except OSError as exc:
        raise SparsenuError(f"{path}: cannot read: {exc.strerror}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SparsenuError(f"{path}: expected a mapping at the top level")
    return data


def apply_overrides(data: dict, overrides: Sequence[str], source: str = "command line") -> dict:
    """Apply ``key.sub=value`` overrides to a nested mapping (a copy is returned).

    Values are parsed as YAML scalars/flow collections. An override may add a key
    the file left at its default; unknown keys are caught later by :func:`from_dict`.
    """
    import copy

    out = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise SparsenuError(f"override '{item}' must look like key.sub=value ({source})")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise SparsenuError(f"override '{item}' has an empty key ({source})")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise SparsenuError(f"override '{item}': '{p}' is not a section ({source})")
            node = nxt
        node[parts[-1]] = value
    return out


def load_config(cls: type[T], path: str | Path, overrides: Sequence[str] = ()) -> T:
    """Load YAML file ``path`` into dataclass ``cls`` after applying overrides.

    Errors name the offending key and the file.
    """
    data = apply_overrides(load_yaml(path), overrides)
    return from_dict(cls, data, source=str(path))


def save_yaml(obj: Any, path: str | Path) -> None:
    """Write a dataclass (or mapping) as YAML, e.g. the resolved config of a run."""
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(to_dict(obj), fh, sort_keys=False)


# ---------------------------------------------------------------------------
# Experiment configuration (``sparsenu train CONFIG``); owner: sparsenu.train.
# ---------------------------------------------------------------------------
import math as _math
from dataclasses import dataclass as _dataclass, field as _field
from typing import Optional as _Optional, Union as _Union

METHODS = ("classifier", "classifier_aug", "dann", "contrastive", "resim")
"""Training methods understood by :func:`sparsenu.train.train`."""


def _pos(name: str, value: float) -> None:
    if not (value > 0 and _math.isfinite(value)):
        raise ValueError(f"'{name}' must be a finite number > 0, got {value!r}")


@_dataclass
class SimulateSpec:
    """``data.simulate``: simulate the datasets once into a cache directory.

    ``sim`` and ``detector`` are :class:`sparsenu.sim.SimConfig` /
    :class:`sparsenu.sim.DetectorConfig` mappings (validated against those classes
    when the experiment is loaded); ``target_detector`` holds overrides applied on
    top of ``detector`` for DANN's unlabelled target domain. Train, val and target
    sets use independent seeds derived from ``seed``. ``cache_dir`` defaults to
    ``<run dir>/data``; the files live in a sub-directory named by a hash of this
    block, so a changed block never reuses stale files.
    """

    n_train: int = _field(default=200, metadata={"range": (2, None)})
    n_val: int = _field(default=50, metadata={"range": (0, None)})
    n_target: int = _field(default=0, metadata={"range": (0, None)})
    seed: int = 0
    sim: dict[str, Any] = _field(default_factory=dict)
    detector: dict[str, Any] = _field(default_factory=dict)
    target_detector: dict[str, Any] = _field(default_factory=dict)
    cache_dir: _Optional[str] = None
    workers: int = _field(default=1, metadata={"range": (1, None)})


@_dataclass
class DataConfig:
    """``data``: sparse-tensor HDF5 files, or a ``simulate`` block (not both for train).

    ``train``/``val``/``target`` are sparse-tensor files (data_specs/sparse_tensor.md);
    ``raw_train`` is the raw detector file of the training events (needed by the
    ``resim`` method when the data are not simulated here). ``feature_scale``
    multiplies the voxel features (ADC) as they are read.
    """

    train: _Optional[str] = None
    val: _Optional[str] = None
    target: _Optional[str] = None
    raw_train: _Optional[str] = None
    simulate: _Optional[SimulateSpec] = None
    feature_scale: float = 1.0
    num_workers: int = _field(default=0, metadata={"range": (0, 64)})

    def __post_init__(self) -> None:
        _pos("data.feature_scale", self.feature_scale)
        if self.simulate is None and self.train is None:
            raise ValueError("give 'data.train' (a sparse-tensor file) or a 'data.simulate' block")
        if self.simulate is not None and (self.train or self.val or self.target or self.raw_train):
            raise ValueError("'data.simulate' cannot be combined with data.train/val/target/raw_train files")

    @property
    def has_target(self) -> bool:
        """Whether an unlabelled target domain is configured."""
        return self.target is not None or (self.simulate is not None and self.simulate.n_target > 0)

    @property
    def has_val(self) -> bool:
        """Whether a (nominal, labelled) validation set is configured."""
        return self.val is not None or (self.simulate is not None and self.simulate.n_val > 0)


@_dataclass
class ModelConfig:
    """``model``: the :class:`sparsenu.models.SparseResNet` encoder.

    ``preset`` ("cpu" or "paper"), when given, replaces widths/depths/embed_dim/pool.
    """

    preset: _Optional[str] = _field(default=None, metadata={"choices": (None, "cpu", "paper")})
    widths: tuple[int, ...] = _field(default=(16, 32, 64), metadata={"range": (1, None)})
    depths: tuple[int, ...] = _field(default=(1, 1, 1), metadata={"range": (1, None)})
    embed_dim: _Optional[int] = _field(default=None, metadata={"range": (1, None)})
    pool: str = _field(default="max", metadata={"choices": ("max", "avg")})
    in_channels: int = _field(default=1, metadata={"range": (1, None)})
    n_classes: int = _field(default=5, metadata={"range": (2, None)})

    def __post_init__(self) -> None:
        if not self.widths or len(self.widths) != len(self.depths):
            raise ValueError(
                f"'model.widths' and 'model.depths' need the same non-zero length, "
                f"got {list(self.widths)} and {list(self.depths)}"
            )


@_dataclass
class LossConfig:
    """``loss``: contrastive loss; positive weight alpha*[same class] + (1-alpha)*[same event]."""

    alpha: float = _field(default=0.0, metadata={"range": (0.0, 1.0)})
    temperature: float = 0.1

    def __post_init__(self) -> None:
        _pos("loss.temperature", self.temperature)


@_dataclass
class ProjectionConfig:
    """``projection``: the contrastive projection-head MLP (in -> hidden -> out)."""

    hidden_dim: int = _field(default=128, metadata={"range": (1, None)})
    out_dim: int = _field(default=64, metadata={"range": (1, None)})


@_dataclass
class OptimConfig:
    """``optim``: optimiser, batch size, epochs and learning-rate schedule."""

    optimizer: str = _field(default="adam", metadata={"choices": ("adam", "adamw", "sgd")})
    lr: float = 1e-3
    weight_decay: float = _field(default=0.0, metadata={"range": (0.0, None)})
    momentum: float = _field(default=0.9, metadata={"range": (0.0, 1.0)})
    batch_size: int = _field(default=32, metadata={"range": (2, None)})
    epochs: int = _field(default=10, metadata={"range": (1, None)})
    scheduler: str = _field(default="none", metadata={"choices": ("none", "cosine")})
    warmup_epochs: int = _field(default=0, metadata={"range": (0, None)})
    grad_clip: _Optional[float] = None

    def __post_init__(self) -> None:
        _pos("optim.lr", self.lr)
        if self.grad_clip is not None:
            _pos("optim.grad_clip", self.grad_clip)
        if self.warmup_epochs >= self.epochs and self.warmup_epochs > 0:
            raise ValueError(f"'optim.warmup_epochs' ({self.warmup_epochs}) must be < optim.epochs ({self.epochs})")


@_dataclass
class HeadConfig:
    """``head``: the classification head.

    For classifier/classifier_aug/dann it is trained jointly with the encoder
    (only ``hidden_dim`` applies). For contrastive/resim it is fitted after the
    encoder, on the frozen encoder's representations of the (un-augmented)
    labelled training set, for ``epochs`` epochs at ``lr`` (0 epochs: no head).
    """

    hidden_dim: _Optional[int] = _field(default=None, metadata={"range": (1, None)})
    epochs: int = _field(default=20, metadata={"range": (0, None)})
    lr: float = 1e-2
    batch_size: int = _field(default=256, metadata={"range": (1, None)})

    def __post_init__(self) -> None:
        _pos("head.lr", self.lr)


@_dataclass
class DannConfig:
    """``dann``: domain head behind gradient reversal; loss = CE_label + weight * CE_domain."""

    hidden_dim: int = _field(default=64, metadata={"range": (1, None)})
    weight: float = _field(default=1.0, metadata={"range": (0.0, None)})


@_dataclass
class ResimConfig:
    """``resim``: RS3L re-simulation views.

    ``detector_ranges`` maps a real-valued :class:`sparsenu.sim.DetectorConfig`
    field to ``[lo, hi]``; each view draws the field uniformly in that range around
    the detector the training file was simulated with (``None``: the default
    ranges of :class:`sparsenu.augment.resim.ResimViews`; ``{}``: same detector,
    new detector-stage seeds only). ``resim_propagation`` also re-runs propagation
    (new seed, same primary).
    """

    detector_ranges: _Optional[dict[str, tuple[float, float]]] = None
    resim_propagation: bool = False

    def __post_init__(self) -> None:
        for k, (lo, hi) in (self.detector_ranges or {}).items():
            if not lo <= hi:
                raise ValueError(f"'resim.detector_ranges.{k}': need lo <= hi, got [{lo}, {hi}]")


@_dataclass
class LoggingConfig:
    """``logging``: TensorBoard (needs the ``tensorboard`` package) and step logging."""

    tensorboard: bool = False
    log_every: int = _field(default=10, metadata={"range": (1, None)})


@_dataclass
class CheckpointConfig:
    """``checkpoint``: ``last.pt`` every ``every`` epochs (and at the end); ``best.pt``."""

    every: int = _field(default=1, metadata={"range": (1, None)})
    save_best: bool = True


@_dataclass
class ExperimentConfig:
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
    method: str = _field(default="classifier", metadata={"choices": METHODS})
    seed: int = 0
    device: str = _field(default="auto", metadata={"choices": ("auto", "cpu", "cuda")})
    threads: _Optional[int] = _field(default=None, metadata={"range": (1, 1024)})
    data: DataConfig = _field(default_factory=lambda: DataConfig(simulate=SimulateSpec()))
    model: ModelConfig = _field(default_factory=ModelConfig)
    augment: _Optional[_Union[str, list[Any], dict[str, Any]]] = None
    loss: LossConfig = _field(default_factory=LossConfig)
    projection: ProjectionConfig = _field(default_factory=ProjectionConfig)
    optim: OptimConfig = _field(default_factory=OptimConfig)
    head: HeadConfig = _field(default_factory=HeadConfig)
    dann: DannConfig = _field(default_factory=DannConfig)
    resim: ResimConfig = _field(default_factory=ResimConfig)
    logging: LoggingConfig = _field(default_factory=LoggingConfig)
    checkpoint: CheckpointConfig = _field(default_factory=CheckpointConfig)

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name in (".", ".."):
            raise ValueError(f"'name' must be a plain run name, got {self.name!r}")
        if self.method == "classifier" and self.augment not in (None, "none", [], {}):
            raise ValueError("method 'classifier' trains without augmentation; use method 'classifier_aug'")
        if self.method == "dann" and not self.data.has_target:
            raise ValueError("method 'dann' needs an unlabelled target domain: data.target or data.simulate.n_target > 0")
        if self.method == "resim" and self.data.simulate is None and self.data.raw_train is None:
            raise ValueError("method 'resim' needs the raw detector file: data.raw_train or a data.simulate block")

    @property
    def resolved_augment(self) -> Any:
        """The augmentation spec actually used (method default when ``augment`` is None)."""
        if self.augment is not None:
            return self.augment
        return "none" if self.method in ("classifier", "resim") else "paper"


def load_experiment(path: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Load and validate an experiment YAML (``sparsenu train CONFIG``).

    Besides :func:`load_config` checks, the ``data.simulate.sim`` /
    ``detector`` / ``target_detector`` blocks are validated against
    :class:`sparsenu.sim.SimConfig` / :class:`sparsenu.sim.DetectorConfig`, the
    ``resim.detector_ranges`` keys against DetectorConfig fields and ``augment``
    by building it; every error names the key and the file.

    Raises
    ------
    SparsenuError
    """
    cfg = load_config(ExperimentConfig, path, overrides)
    validate_experiment(cfg, source=str(path))
    return cfg


def validate_experiment(cfg: ExperimentConfig, source: str | None = None) -> None:
    """Deep checks of an :class:`ExperimentConfig` that need other packages."""
    sim_mod = None
    try:
        import sparsenu.sim as sim_mod  # noqa: F811
        getattr(sim_mod, "DetectorConfig")
        getattr(sim_mod, "SimConfig")
    except (ImportError, AttributeError):  # pragma: no cover - sim not available
        sim_mod = None
    if sim_mod is not None:
        if cfg.data.simulate is not None:
            s = cfg.data.simulate
            from_dict(sim_mod.SimConfig, s.sim, source=source, prefix="data.simulate.sim.")
            from_dict(sim_mod.DetectorConfig, s.detector, source=source, prefix="data.simulate.detector.")
            from_dict(sim_mod.DetectorConfig, {**s.detector, **s.target_detector}, source=source,
                      prefix="data.simulate.target_detector.")
        det_fields = {f.name for f in dataclasses.fields(sim_mod.DetectorConfig)}
        for k in cfg.resim.detector_ranges or {}:
            if k not in det_fields:
                close = difflib.get_close_matches(k, sorted(det_fields), n=1)
                hint = f" (did you mean 'resim.detector_ranges.{close[0]}'?)" if close else ""
                raise _fail(f"unknown key 'resim.detector_ranges.{k}'{hint}: not a DetectorConfig field", source)
    try:
        from sparsenu.augment import build_augmentation
    except ImportError:  # pragma: no cover
        return
    try:
        build_augmentation(cfg.resolved_augment)
    except SparsenuError as exc:
        raise _fail(f"key 'augment': {exc}", source) from None

__all__ += [
    "METHODS", "SimulateSpec", "DataConfig", "ModelConfig", "LossConfig", "ProjectionConfig",
    "OptimConfig", "HeadConfig", "DannConfig", "ResimConfig", "LoggingConfig", "CheckpointConfig",
    "ExperimentConfig", "load_experiment", "validate_experiment",
]
