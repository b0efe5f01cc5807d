"""The domain-shift benchmark: ``sparsenu benchmark SUITE.yaml --out DIR``.

A suite YAML (:class:`SuiteConfig`) names the data sizes, the seeds, the
methods (each a training config plus overrides) and the detector shifts. The
benchmark

1. simulates the nominal train / validation / test sets and, for every shift,
   re-runs *only the detector stage* of the same nominal test events with the
   shifted detector (so every difference between two test sets is the
   detector's). Data are cached under a key that hashes the data configuration,
   so a second run (or another suite with the same data block) reuses them;
2. trains every method for every seed (``sparsenu.train.train``); a run with a
   completion marker is skipped, a run interrupted after its first checkpoint is
   resumed;
3. evaluates the checkpoint chosen on *nominal* validation (the trainer's
   ``best.pt``): a linear probe and a cosine kNN fitted on frozen embeddings of
   the nominal training set without augmentation, the model's own classifier head
   where it has one, and the sensitivity (mean cosine distance between nominal and
   shifted embeddings of the same events). Evaluations are cached per
   (method, seed, test set);
4. writes ``results.csv``, ``results.json``, ``report.md`` and ``plots/``.

Output layout::

    OUT/suite.yaml                       the resolved suite
    OUT/runs/<method>/seed<k>/           training runs (best.pt, last.pt, COMPLETE.json)
    OUT/eval/<method>/seed<k>/           embeddings (*.h5, data_specs/embeddings.md) + rows.json
    OUT/results.csv, results.json, report.md, plots/*.png
    <cache_dir>/<data key>/              simulated data (default cache_dir: OUT/data)
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sparsenu.config import from_dict, load_config, load_yaml, apply_overrides, save_yaml, to_dict
from sparsenu.errors import SparsenuError

__all__ = [
    "SuiteConfig",
    "SuiteDataConfig",
    "MethodSpec",
    "ShiftSpec",
    "TargetSpec",
    "SuiteEvalConfig",
    "BenchmarkResult",
    "load_suite",
    "resolve_shifts",
    "run_benchmark",
    "evaluate_checkpoint",
]

#: Bumped when the cached data layout or the evaluation changes meaning.
_DATA_CACHE_VERSION = 1
_EVAL_VERSION = 1


# ============================================================================ config


@dataclass
class SuiteDataConfig:
    """Data block of a suite.

    Attributes
    ----------
    n_train, n_val, n_test : int
        Events of the nominal training, validation and test sets (classes are
        balanced: label = event id mod number of classes).
    seed : int
        Master seed; the three sets use independent seeds derived from it.
    sim : dict
        :class:`sparsenu.sim.SimConfig` overrides.
    detector : dict
        :class:`sparsenu.sim.DetectorConfig` overrides defining the *nominal* detector.
    cache_dir : str or None
        Where simulated data are cached (default ``OUT/data``). Relative paths
        are relative to the working directory.
    workers : int
        Simulation processes.
    """

    n_train: int = field(default=2000, metadata={"range": (1, None)})
    n_val: int = field(default=500, metadata={"range": (1, None)})
    n_test: int = field(default=1000, metadata={"range": (1, None)})
    seed: int = 12345
    sim: dict[str, Any] = field(default_factory=dict)
    detector: dict[str, Any] = field(default_factory=dict)
    cache_dir: str | None = None
    workers: int = field(default=1, metadata={"range": (1, None)})


@dataclass
class TargetSpec:
    """Unlabelled shifted ("target") training data for domain adaptation (DANN).

    A separate set of events (its own seed, disjoint from the test events),
    simulated with the nominal detector and then re-simulated with the target
    detector; its labels are never used. Methods that take target data receive it
    through the training-config key ``target_key`` (see :class:`MethodSpec`).

    Attributes
    ----------
    n_events : int
        Number of target events (0: no target set).
    detector : dict
        Absolute DetectorConfig overrides of the target detector.
    scale : dict
        Multiplicative DetectorConfig overrides (relative to nominal).
    """

    n_events: int = field(default=0, metadata={"range": (0, None)})
    detector: dict[str, Any] = field(default_factory=dict)
    scale: dict[str, float] = field(default_factory=dict)


@dataclass
class MethodSpec:
    """One method of a suite: a training configuration (``sparsenu.config.ExperimentConfig``).

    The training YAML given to ``sparsenu.train.train`` is built by deep-merging, in
    order: the file ``config`` (if any), the suite's ``train_defaults``, this
    method's ``train`` mapping, then ``overrides``; the suite finally points
    ``data`` at its cached files and sets ``seed``.

    Attributes
    ----------
    config : str or None
        Training config YAML (``cfg/*.yaml``); relative paths are looked up next
        to the suite file first, then in the working directory.
    train : dict
        Inline ExperimentConfig keys, e.g. ``{method: contrastive, loss: {alpha: 1.0}}``.
    overrides : list of str
        ``key.sub=value`` overrides (e.g. ``optim.epochs=5``).
    use_target : bool or None
        Give the trainer the suite's unlabelled target set (``data.target``);
        default (None): only for ``method: dann``.
    """

    config: str | None = None
    train: dict[str, Any] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    use_target: bool | None = None


@dataclass
class ShiftSpec:
    """One shifted detector, as overrides of the nominal :class:`DetectorConfig`.

    Attributes
    ----------
    detector : dict
        Absolute overrides, e.g. ``{lifetime_us: 500}``.
    scale : dict
        Multiplicative overrides relative to the nominal value, e.g.
        ``{noise: 2.0}`` (noise x2) or ``{gain: 0.9}`` (gain -10%).
    parameter : str or None
        The parameter on the x axis of the accuracy plots (default: the first
        key of ``detector`` or ``scale``). Shifts sharing a parameter form one curve.
    label : str or None
        Human description for the report (default: generated).
    """

    detector: dict[str, Any] = field(default_factory=dict)
    scale: dict[str, float] = field(default_factory=dict)
    parameter: str | None = None
    label: str | None = None

    def __post_init__(self) -> None:
        if not self.detector and not self.scale:
            raise ValueError("a shift needs at least one 'detector' or 'scale' override")
        both = set(self.detector) & set(self.scale)
        if both:
            raise ValueError(f"parameter(s) {sorted(both)} given in both 'detector' and 'scale'")


@dataclass
class SuiteEvalConfig:
    """Evaluation settings.

    Attributes
    ----------
    knn_k : int
        Neighbours of the cosine kNN probe.
    batch_size : int
        Events per forward pass when embedding.
    device : str
        ``cpu``, ``cuda``, ``cuda:1`` or ``auto`` (CUDA when available).
    probe_c : float
        Inverse regularisation of the linear probe's logistic regression.
    probe_max_iter : int
        Solver iterations of the linear probe.
    projection_shift : str or None
        Shift shown next to nominal in the 2D projection plots (default: the
        first shift).
    """

    knn_k: int = field(default=20, metadata={"range": (1, None)})
    batch_size: int = field(default=64, metadata={"range": (1, None)})
    device: str = "cpu"
    probe_c: float = field(default=1.0, metadata={"range": (1e-12, None)})
    probe_max_iter: int = field(default=2000, metadata={"range": (1, None)})
    projection_shift: str | None = None


@dataclass
class SuiteConfig:
    """A domain-shift benchmark suite (see ``cfg/quickstart.yaml``).

    Attributes
    ----------
    name : str
    seeds : list of int
        Training seeds; every method is trained once per seed.
    data : SuiteDataConfig
    target : TargetSpec
    train_defaults : dict
        ExperimentConfig keys shared by every method (see :class:`MethodSpec`).
    methods : dict name -> MethodSpec
    shifts : dict name -> ShiftSpec
    eval : SuiteEvalConfig
    """

    name: str = "benchmark"
    seeds: list[int] = field(default_factory=lambda: [0])
    data: SuiteDataConfig = field(default_factory=SuiteDataConfig)
    target: TargetSpec = field(default_factory=TargetSpec)
    train_defaults: dict[str, Any] = field(default_factory=dict)
    methods: dict[str, MethodSpec] = field(default_factory=dict)
    shifts: dict[str, ShiftSpec] = field(default_factory=dict)
    eval: SuiteEvalConfig = field(default_factory=SuiteEvalConfig)

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("'seeds' must list at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"'seeds' has duplicates: {self.seeds}")
        if not self.methods:
            raise ValueError("'methods' must name at least one method")
        for name in list(self.methods) + list(self.shifts):
            if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
                raise ValueError(f"name {name!r} may only contain letters, digits, '-', '_' and '.'")
        if "nominal" in self.shifts:
            raise ValueError("'nominal' is reserved for the unshifted test set; rename that shift")
        ps = self.eval.projection_shift
        if ps is not None and ps not in self.shifts:
            raise ValueError(f"eval.projection_shift {ps!r} is not a shift; shifts: {sorted(self.shifts)}")
        for n, m in self.methods.items():
            if m.use_target and self.target.n_events == 0:
                raise ValueError(f"method '{n}' has use_target: true but target.n_events is 0")


def load_suite(path: str | Path, overrides: Sequence[str] = ()) -> SuiteConfig:
    """Load and validate a suite YAML (``key.sub=value`` overrides applied first)."""
    return load_config(SuiteConfig, path, overrides)


# ============================================================================ helpers


def _hash(obj: Any, n: int = 12) -> str:
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def _derived_seed(seed: int, tag: str) -> int:
    words = [int(seed) & 0xFFFFFFFF, *hashlib.sha256(tag.encode()).digest()[:8]]
    return int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint32)[0] & 0x7FFFFFFF)


def _atomic_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _file_key(path: Path) -> dict:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _detector_fields() -> set[str]:
    from sparsenu.sim import DetectorConfig

    return {f.name for f in dataclasses.fields(DetectorConfig)}


def _apply_detector(nominal: Any, detector: dict, scale: dict, where: str) -> Any:
    """Nominal DetectorConfig with absolute and multiplicative overrides."""
    names = _detector_fields()
    bad = sorted((set(detector) | set(scale)) - names)
    if bad:
        import difflib

        hints = [difflib.get_close_matches(b, sorted(names), n=1) for b in bad]
        hint = "".join(f" (did you mean '{h[0]}'?)" for h in hints if h)
        raise SparsenuError(f"{where}: unknown DetectorConfig field(s) {bad}{hint}")
    kw = dict(detector)
    for k, factor in scale.items():
        base = getattr(nominal, k)
        if not isinstance(base, (int, float)) or isinstance(base, bool):
            raise SparsenuError(f"{where}: cannot scale non-numeric DetectorConfig field '{k}'")
        kw[k] = float(base) * float(factor)
    try:
        return nominal.replace(**kw)
    except (ValueError, TypeError) as exc:
        raise SparsenuError(f"{where}: invalid detector: {exc}") from None


@dataclass(frozen=True)
class ResolvedShift:
    """A shift with its concrete detector."""

    name: str
    detector: Any
    parameter: str
    value: float
    description: str


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def resolve_shifts(suite: SuiteConfig, nominal: Any, source: str = "suite") -> list[ResolvedShift]:
    """Concrete shifted :class:`DetectorConfig` of every shift of ``suite``."""
    out = []
    for name, spec in suite.shifts.items():
        det = _apply_detector(nominal, spec.detector, spec.scale, f"{source}: shift '{name}'")
        param = spec.parameter or next(iter(list(spec.detector) + list(spec.scale)))
        if param not in _detector_fields():
            raise SparsenuError(f"{source}: shift '{name}': parameter '{param}' is not a DetectorConfig field")
        value = getattr(det, param)
        changed = [k for k in list(spec.detector) + list(spec.scale)]
        desc = spec.label or ", ".join(
            f"{k} = {_fmt(getattr(det, k))}"
            + (f" (x{spec.scale[k]:g})" if k in spec.scale else "")
            + f" (nominal {_fmt(getattr(nominal, k))})"
            for k in changed
        )
        if "field_kv_cm" in changed and "drift_velocity_mm_us" not in changed and nominal.drift_velocity_mm_us is None:
            desc += f"; drift velocity {det.vdrift_mm_us:.3f} mm/us (nominal {nominal.vdrift_mm_us:.3f})"
        out.append(ResolvedShift(name, det, param, float(value) if value is not None else float("nan"), desc))
    return out


def _find_config(path_text: str, suite_dir: Path, what: str) -> Path:
    p = Path(path_text).expanduser()
    candidates = [p] if p.is_absolute() else [suite_dir / p, Path.cwd() / p]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    raise SparsenuError(f"{what}: config file not found: {path_text} (looked in "
                        + ", ".join(str(c.parent) for c in candidates) + ")")


def _auto_device(device: str) -> str:
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


# ============================================================================ data


@dataclass
class SuiteData:
    """Paths of the simulated (cached) data of a suite."""

    key: str
    root: Path
    train: Path
    train_raw: Path
    val: Path
    test: Path
    test_raw: Path
    shifts: dict[str, Path]
    target: Path | None


def _prepare_data(suite: SuiteConfig, out_dir: Path, nominal: Any, sim: Any,
                  shifts: list[ResolvedShift], progress: bool) -> SuiteData:
    from sparsenu.data.simulate import resimulate_file, write_simulated_dataset

    d = suite.data
    key = _hash({
        "v": _DATA_CACHE_VERSION, "n_train": d.n_train, "n_val": d.n_val, "n_test": d.n_test,
        "seed": d.seed, "sim": to_dict(sim), "detector": to_dict(nominal),
    })
    cache = Path(d.cache_dir).expanduser() if d.cache_dir else out_dir / "data"
    root = cache / key
    root.mkdir(parents=True, exist_ok=True)
    _atomic_json(root / "data_config.json", {
        "n_train": d.n_train, "n_val": d.n_val, "n_test": d.n_test, "seed": d.seed,
        "sim": to_dict(sim), "detector": to_dict(nominal)})

    def simulate(name: str, n: int, raw: bool) -> tuple[Path, Path]:
        out, raw_out = root / f"{name}.h5", root / f"{name}_raw.h5"
        if out.is_file() and (not raw or raw_out.is_file()):
            return out, raw_out
        seed = _derived_seed(d.seed, name)
        # overwrite: a file left alone by an interrupted run (its partner missing) is redone
        write_simulated_dataset(out, n, seed, sim, nominal, raw_output=raw_out if raw else None,
                                workers=d.workers, progress=progress, overwrite=True)
        return out, raw_out

    train, train_raw = simulate("train", d.n_train, True)
    val, _ = simulate("val", d.n_val, False)
    test, test_raw = simulate("test", d.n_test, True)
    shift_paths = {}
    for s in shifts:
        p = root / f"test_shift_{_hash(to_dict(s.detector))}.h5"
        if not p.is_file():
            resimulate_file(test_raw, p, s.detector, workers=d.workers, progress=progress, overwrite=True)
        shift_paths[s.name] = p
    target = None
    if suite.target.n_events > 0:
        tdet = _apply_detector(nominal, suite.target.detector, suite.target.scale, "suite: target")
        n_t = suite.target.n_events
        _, traw = simulate(f"target{n_t}_nominal", n_t, True)
        target = root / f"target{n_t}_{_hash(to_dict(tdet))}.h5"
        if not target.is_file():
            resimulate_file(traw, target, tdet, workers=d.workers, progress=progress, overwrite=True)
    return SuiteData(key, root, train, train_raw, val, test, test_raw, shift_paths, target)


# ============================================================================ training


def _deep_merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for k, v in top.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _method_mapping(suite: SuiteConfig, name: str, suite_dir: Path, source: str) -> dict:
    """The merged training mapping of one method (before the suite's data/seed overrides)."""
    spec = suite.methods[name]
    base: dict = {}
    if spec.config:
        base = load_yaml(_find_config(spec.config, suite_dir, f"{source}: method '{name}'"))
    merged = _deep_merge(_deep_merge(base, suite.train_defaults), spec.train)
    merged = apply_overrides(merged, spec.overrides, source=f"{source}: method '{name}'")
    merged.setdefault("name", name)
    return merged


def _uses_target(spec: MethodSpec, mapping: dict) -> bool:
    return spec.use_target if spec.use_target is not None else mapping.get("method") == "dann"


def _data_overrides(mapping: dict, spec: MethodSpec, data: SuiteData, seed: int) -> list[str]:
    """Overrides pointing a training config at the suite's cached data and seed.

    Keys of :class:`sparsenu.config.ExperimentConfig` (owned by ``sparsenu.train``):
    ``data.train``/``val``/``raw_train``/``target`` files replace any
    ``data.simulate`` block.
    """
    ov = [
        f"seed={seed}",
        "data.simulate=null",
        f"data.train={data.train}",
        f"data.val={data.val}",
        f"data.raw_train={data.train_raw}",
    ]
    if _uses_target(spec, mapping):
        if data.target is None:
            raise SparsenuError(f"method '{mapping.get('name')}' needs unlabelled target data: "
                                "set target.n_events > 0 in the suite")
        ov.append(f"data.target={data.target}")
    else:
        ov.append("data.target=null")
    return ov


def _train_one(name: str, mapping: dict, spec: MethodSpec, data: SuiteData, seed: int,
               run_dir: Path, progress: bool) -> Path:
    """Train (or skip, or resume) one (method, seed); return the checkpoint to evaluate.

    A finished run has ``COMPLETE.json`` (with a fingerprint of the training
    configuration and data); a run with ``last.pt`` but no marker was interrupted
    and is resumed.
    """
    from sparsenu.train import train

    overrides = _data_overrides(mapping, spec, data, seed)
    fingerprint = _hash({"config": mapping, "overrides": overrides, "data": data.key})
    marker = run_dir / "COMPLETE.json"
    done = _read_json(marker) if marker.is_file() else None
    if done is not None:
        ckpt = Path(done.get("checkpoint", ""))
        if done.get("fingerprint") == fingerprint and ckpt.is_file():
            return ckpt
        if done.get("fingerprint") != fingerprint:
            raise SparsenuError(
                f"{run_dir} holds a finished run of a different configuration of '{name}' "
                "(training config, overrides or data changed); delete that directory or use another --out"
            )
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / "suite_train_config.yaml"
    save_yaml(mapping, config_path)
    resume = (run_dir / "last.pt").is_file()
    t0 = time.time()
    result = train(config_path, out_dir=run_dir, overrides=overrides, resume=resume, progress=progress)
    ckpt = _best_checkpoint(result, run_dir)
    _atomic_json(marker, {"method": name, "seed": seed, "checkpoint": str(ckpt),
                          "fingerprint": fingerprint, "train_seconds": round(time.time() - t0, 1),
                          "overrides": overrides})
    return ckpt


def _check_train_configs(mappings: dict[str, dict], source: str) -> None:
    """Validate every method's training config before spending time on data."""
    from sparsenu.config import ExperimentConfig, validate_experiment

    for name, m in mappings.items():
        probe = apply_overrides(m, ["data.simulate=null", "data.train=train.h5", "data.val=null",
                                    "data.raw_train=train_raw.h5", "data.target=target.h5"])
        where = f"{source}: method '{name}' (merged training config)"
        validate_experiment(from_dict(ExperimentConfig, probe, source=where), source=where)


def _best_checkpoint(result: Any, run_dir: Path) -> Path:
    for attr in ("best_checkpoint", "best", "checkpoint"):
        p = getattr(result, attr, None)
        if isinstance(p, (str, Path)) and Path(p).is_file():
            return Path(p)
    for name in ("best.pt", "last.pt"):
        if (run_dir / name).is_file():
            return run_dir / name
    raise SparsenuError(f"training in {run_dir} finished without a checkpoint")


# ============================================================================ evaluation


def _embed_cached(model: Any, ckpt_sha: str, dataset_path: Path, out: Path, batch_size: int,
                  device: str, progress: bool, desc: str, need_logits: bool = False):
    """Embeddings (and head logits) of a file, cached as an embeddings file."""
    from sparsenu.eval.embeddings import compute_embeddings, load_embeddings, open_eval_dataset, write_embeddings

    key = _hash({"ckpt": ckpt_sha, "data": _file_key(dataset_path), "v": _EVAL_VERSION})
    if out.is_file() and not need_logits:
        try:
            e = load_embeddings(out)
            if e["attrs"].get("cache_key") == key:
                return e["embeddings"], e["labels"], e["event_id"], None
        except SparsenuError:
            pass
    ds = open_eval_dataset(dataset_path, model.config)
    head = model.heads.get("classifier") if need_logits else None
    encoder = _EncoderWithLogits(model.encoder, head) if head is not None else model.encoder
    emb, labels, ids = compute_embeddings(encoder, ds, batch_size=batch_size, device=device,
                                          progress=progress, desc=desc)
    logits = encoder.pop_logits() if head is not None else None
    write_embeddings(out, emb, ids, labels, {"cache_key": key, "input": str(dataset_path),
                                             "checkpoint_sha256": ckpt_sha, "method": model.method},
                     overwrite=True)
    return emb, labels, ids, logits


class _EncoderWithLogits:
    """Wraps an encoder so one forward pass gives embeddings and keeps head logits."""

    def __init__(self, encoder: Any, head: Any) -> None:
        self.encoder, self.head, self._logits = encoder, head, []
        self.embed_dim = getattr(encoder, "embed_dim", 0)

    @property
    def training(self) -> bool:
        return self.encoder.training

    def eval(self):
        self.encoder.eval()
        self.head.eval()
        return self

    def train(self, mode: bool = True):
        self.encoder.train(mode)
        return self

    def to(self, device):
        self.encoder.to(device)
        self.head.to(device)
        return self

    def __call__(self, x):
        z = self.encoder(x)
        self._logits.append(self.head(z).float().cpu().numpy())
        return z

    def pop_logits(self) -> np.ndarray:
        out = np.concatenate(self._logits) if self._logits else np.zeros((0, 0), np.float32)
        self._logits = []
        return out


def evaluate_checkpoint(
    checkpoint: str | Path,
    train_path: Path,
    test_sets: dict[str, Path],
    eval_dir: Path,
    *,
    knn_k: int = 20,
    batch_size: int = 64,
    device: str = "cpu",
    probe_c: float = 1.0,
    probe_max_iter: int = 2000,
    nominal: str = "nominal",
    progress: bool = True,
) -> dict[str, dict]:
    """Evaluate one checkpoint on several test sets (cached per test set).

    Parameters
    ----------
    checkpoint : path
        Trained model; its encoder is frozen (projection head dropped).
    train_path : path
        Nominal labelled training set (sparse-tensor file): the probes are fitted
        on its embeddings, without augmentation.
    test_sets : dict name -> path
        Must contain ``nominal``; the sensitivity of every other set is measured
        against it, matching events by event id.
    eval_dir : path
        Cache directory (embeddings files and ``rows.json``).

    Returns
    -------
    dict test-set name -> metrics (accuracy, balanced_accuracy, knn_accuracy,
    head_accuracy, head_balanced_accuracy, sensitivity, n_events).
    """
    from sparsenu.eval.embeddings import file_sha256
    from sparsenu.train import load_checkpoint
    from sparsenu.models.probe import KNNProbe, LinearProbe, accuracy, balanced_accuracy
    from sparsenu.eval.sensitivity import sensitivity

    checkpoint = Path(checkpoint)
    eval_dir.mkdir(parents=True, exist_ok=True)
    ckpt_sha = file_sha256(checkpoint)
    eval_cfg = {"knn_k": knn_k, "probe_c": probe_c, "probe_max_iter": probe_max_iter,
                "train": _file_key(train_path), "ckpt": ckpt_sha, "v": _EVAL_VERSION}
    nominal_key = _file_key(test_sets[nominal])
    keys = {name: _hash({**eval_cfg, "test": _file_key(p), "nominal": nominal_key})
            for name, p in test_sets.items()}
    rows_path = eval_dir / "rows.json"
    cached = _read_json(rows_path) or {}
    results = {n: cached[n]["metrics"] for n in test_sets
               if isinstance(cached.get(n), dict) and cached[n].get("key") == keys[n]}
    todo = [n for n in test_sets if n not in results]
    if not todo:
        return results

    model = load_checkpoint(checkpoint, map_location="cpu")
    has_head = "classifier" in model.heads
    emb_tr, lab_tr, _, _ = _embed_cached(model, ckpt_sha, train_path, eval_dir / "train.h5",
                                         batch_size, device, progress, "embed train")
    known = lab_tr >= 0
    linear = LinearProbe(C=probe_c, max_iter=probe_max_iter).fit(emb_tr[known], lab_tr[known])
    knn = KNNProbe(k=knn_k).fit(emb_tr[known], lab_tr[known])

    nom_path = eval_dir / f"test_{nominal}.h5"
    order = [nominal] + [n for n in todo if n != nominal] if nominal in todo else todo
    nom_emb = nom_ids = None
    for name in order:
        emb, lab, ids, logits = _embed_cached(model, ckpt_sha, test_sets[name], eval_dir / f"test_{name}.h5",
                                              batch_size, device, progress, f"embed {name}",
                                              need_logits=has_head)
        if name == nominal:
            nom_emb, nom_ids = emb, ids
        elif nom_emb is None:  # nominal row cached: its embeddings are too
            nom_emb, _, nom_ids, _ = _embed_cached(model, ckpt_sha, test_sets[nominal], nom_path,
                                                   batch_size, device, progress, f"embed {nominal}")
        m = lab >= 0
        metrics: dict[str, Any] = {"n_events": int(m.sum())}
        if m.any():
            pred = linear.predict(emb[m])
            metrics["accuracy"] = accuracy(lab[m], pred)
            metrics["balanced_accuracy"] = balanced_accuracy(lab[m], pred)
            metrics["knn_accuracy"] = accuracy(lab[m], knn.predict(emb[m]))
            if logits is not None and len(logits) == len(lab):
                hp = logits[m].argmax(1)
                metrics["head_accuracy"] = accuracy(lab[m], hp)
                metrics["head_balanced_accuracy"] = balanced_accuracy(lab[m], hp)
        if name == nominal:
            metrics["sensitivity"] = 0.0
        else:
            metrics["sensitivity"] = sensitivity(nom_emb, nom_ids, emb, ids).mean
        results[name] = metrics
        cached[name] = {"key": keys[name], "metrics": metrics}
        _atomic_json(rows_path, cached)
    return results


# ============================================================================ benchmark


@dataclass
class BenchmarkResult:
    """What ``sparsenu benchmark`` produced; ``str()`` is the final table.

    Attributes
    ----------
    out_dir : Path
    results : pandas.DataFrame
        One row per (method, seed, test set), columns ``report.RESULT_COLUMNS``.
    table : str
        Linear-probe accuracy table (mean ± std over seeds, change from nominal).
    files : list of Path
        results.csv, results.json, report.md and the plots.
    seconds : float
        Wall time of this call.
    trained, evaluated : int
        (method, seed) runs trained and evaluations computed in this call
        (0 and 0 when everything was cached).
    """

    out_dir: Path
    results: Any
    table: str
    files: list[Path]
    seconds: float
    trained: int = 0
    evaluated: int = 0

    def __str__(self) -> str:
        lines = [self.table, ""]
        lines.append(f"wrote {self.out_dir / 'report.md'}, results.csv/json and "
                     f"{sum(1 for f in self.files if f.suffix == '.png')} plots in {self.out_dir / 'plots'}")
        lines.append(f"trained {self.trained} run(s), evaluated {self.evaluated} in this call; "
                     f"{self.seconds:.0f} s")
        return "\n".join(lines)


def _rel(p: Path, base: Path) -> str:
    try:
        return str(p.relative_to(base))
    except ValueError:
        return str(p)


def run_benchmark(
    suite_path: str | Path,
    out_dir: str | Path,
    overrides: Sequence[str] = (),
    progress: bool = True,
) -> BenchmarkResult:
    """Run a domain-shift suite end to end (``sparsenu benchmark SUITE --out DIR``).

    Parameters
    ----------
    suite_path : path
        Suite YAML (:class:`SuiteConfig`).
    out_dir : path
        Output directory (created). Re-running with the same directory skips
        finished training runs and cached evaluations and resumes interrupted runs.
    overrides : sequence of str
        ``key.sub=value`` overrides of the suite (e.g. ``seeds=[0,1]``,
        ``data.n_train=500``).
    progress : bool
        Progress bars.

    Returns
    -------
    BenchmarkResult
    """
    from tqdm.auto import tqdm

    from sparsenu.eval import plots as P
    from sparsenu.eval import report as R
    from sparsenu.sim import CLASS_NAMES, DetectorConfig, SimConfig

    t0 = time.time()
    suite_path = Path(suite_path)
    suite = load_suite(suite_path, overrides)
    source = str(suite_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    nominal = from_dict(DetectorConfig, suite.data.detector, source=source, prefix="data.detector.")
    sim = from_dict(SimConfig, suite.data.sim, source=source, prefix="data.sim.")
    shifts = resolve_shifts(suite, nominal, source)
    mappings = {n: _method_mapping(suite, n, suite_path.parent, source) for n in suite.methods}
    _check_train_configs(mappings, source)
    device = _auto_device(suite.eval.device)
    save_yaml(suite, out_dir / "suite.yaml")

    data = _prepare_data(suite, out_dir, nominal, sim, shifts, progress)
    test_sets = {R.NOMINAL: data.test, **data.shifts}

    jobs = [(m, s) for m in suite.methods for s in suite.seeds]
    trained = evaluated = 0
    rows = []
    bar = tqdm(jobs, desc=f"benchmark {suite.name}", disable=not progress, unit="run")
    for method, seed in bar:
        bar.set_postfix_str(f"{method} seed {seed}")
        run_dir = out_dir / "runs" / method / f"seed{seed}"
        marker_before = (run_dir / "COMPLETE.json").is_file()
        ckpt = _train_one(method, mappings[method], suite.methods[method], data, seed, run_dir,
                          progress)
        trained += 0 if marker_before else 1
        eval_dir = out_dir / "eval" / method / f"seed{seed}"
        before = _read_json(eval_dir / "rows.json") or {}
        metrics = evaluate_checkpoint(
            ckpt, data.train, test_sets, eval_dir, knn_k=suite.eval.knn_k,
            batch_size=suite.eval.batch_size, device=device, probe_c=suite.eval.probe_c,
            probe_max_iter=suite.eval.probe_max_iter, progress=progress)
        after = _read_json(eval_dir / "rows.json") or {}
        evaluated += int(after != before)
        shift_info = {s.name: s for s in shifts}
        for name in test_sets:
            s = shift_info.get(name)
            rows.append({"method": method, "seed": seed, "shift": name,
                         "parameter": s.parameter if s else None,
                         "value": s.value if s else None, **metrics[name]})
    bar.close()

    df = R.results_frame(rows)
    files = list(R.write_results(df, out_dir))
    plot_dir = out_dir / "plots"
    nominal_values = {s.parameter: getattr(nominal, s.parameter) for s in shifts}
    n_classes = len(sim.classes)
    plot_files = P.plot_accuracy_vs_shift(df, plot_dir, nominal_values, list(suite.methods),
                                          chance=1.0 / n_classes)
    if shifts:
        pshift = suite.eval.projection_shift or shifts[0].name
        pdesc = next(s.description for s in shifts if s.name == pshift)
        seed0 = suite.seeds[0]
        for method in suite.methods:
            from sparsenu.eval.embeddings import load_embeddings

            ed = out_dir / "eval" / method / f"seed{seed0}"
            try:
                a = load_embeddings(ed / f"test_{R.NOMINAL}.h5")
                b = load_embeddings(ed / f"test_{pshift}.h5")
            except SparsenuError:
                continue
            plot_files.append(P.plot_projection(
                a["embeddings"], a["labels"], b["embeddings"], b["labels"],
                plot_dir / f"projection_{method}.png", class_names=CLASS_NAMES,
                title=f"{method} (seed {seed0}): PCA of frozen test embeddings",
                shifted_label=f"{pshift}: {pdesc}"))
    files += plot_files
    descriptions = {R.NOMINAL: "nominal detector", **{s.name: s.description for s in shifts}}
    notes = [
        f"Data: {suite.data.n_train} training, {suite.data.n_val} validation and "
        f"{suite.data.n_test} test events per test set (data key `{data.key}`, cached in "
        f"`{data.root}`). kNN: k = {suite.eval.knn_k}, cosine distance.",
    ]
    report = R.render_report(df, title=f"sparsenu benchmark: {suite.name}", methods=list(suite.methods),
                             shifts=list(test_sets), shift_descriptions=descriptions,
                             plots=[_rel(p, out_dir) for p in plot_files], notes=notes)
    (out_dir / "report.md").write_text(report, encoding="utf-8")
    files.append(out_dir / "report.md")
    table = R.summary_table(df, list(suite.methods), list(test_sets))
    return BenchmarkResult(out_dir, df, table, files, time.time() - t0, trained, evaluated)
