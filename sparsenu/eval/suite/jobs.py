"""Training jobs of a suite: one (method, trial, seed) through :func:`sparsenu.train.train`.

A method's training mapping is its config file deep-merged with ``train_defaults``, its
``train`` block and its overrides (:func:`method_mapping`); a hyper-parameter trial is written
into that mapping (:func:`sparsenu.eval.hpsearch.apply_trial`); the suite then points the
run at its cached data and seed (:func:`data_overrides`). :func:`train_one` trains, resumes
or skips a run (completion marker with a fingerprint of everything it depends on).

Directories: trial 0 (the configured hyper-parameters) lives in ``<method>/seed<k>``, trial
``t >= 1`` in ``<method>/trial<t>/seed<k>``, under ``OUT/runs`` and ``OUT/eval``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparsenu.config import apply_overrides, deep_merge, dump_yaml, from_dict, load_yaml
from sparsenu.data.formats.base import read_json, write_json_atomic, write_text_atomic
from sparsenu.errors import SparsenuError
from sparsenu.eval.suite.config import MethodSpec, SuiteConfig
from sparsenu.eval.suite.data import SuiteData
from sparsenu.keys import config_hash
from sparsenu.train import train
from sparsenu.train.config import ExperimentConfig

__all__ = ["Job", "find_config", "method_mapping", "method_trials", "data_overrides", "train_one",
           "check_train_configs", "job_subdir"]


@dataclass(frozen=True)
class Job:
    """One training run of a suite: method, trial (hyper-parameters), seed."""

    method: str
    trial: int
    seed: int
    params: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def subdir(self) -> str:
        """``<method>/seed<k>`` (trial 0) or ``<method>/trial<t>/seed<k>``."""
        return job_subdir(self.method, self.trial, self.seed)


def job_subdir(method: str, trial: int, seed: int) -> str:
    """Relative directory of a (method, trial, seed) under ``runs/`` and ``eval/``."""
    return f"{method}/seed{seed}" if trial == 0 else f"{method}/trial{trial}/seed{seed}"


def find_config(path_text: str, suite_dir: Path, what: str) -> Path:
    """A method's training YAML, next to the suite file first, then in the working directory."""
    p = Path(path_text).expanduser()
    candidates = [p] if p.is_absolute() else [suite_dir / p, Path.cwd() / p]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    raise SparsenuError(f"{what}: config file not found: {path_text} (looked in "
                        + ", ".join(str(c.parent) for c in candidates) + ")")


def method_mapping(suite: SuiteConfig, name: str, suite_dir: Path, source: str) -> dict:
    """The merged training mapping of one method (before trials and the suite's data/seed overrides)."""
    spec = suite.methods[name]
    base: dict = {}
    if spec.config:
        base = load_yaml(find_config(spec.config, suite_dir, f"{source}: method '{name}'"))
    merged = deep_merge(deep_merge(base, suite.train_defaults), spec.train)
    merged = apply_overrides(merged, spec.overrides, source=f"{source}: method '{name}'")
    merged.setdefault("name", name)
    return merged


def method_trials(suite: SuiteConfig, mapping: dict, source: str, name: str) -> list[dict[str, Any]]:
    """The ``search.n_trials`` hyper-parameter settings of one method (trial 0 = ``{}``)."""
    from sparsenu.eval.hpsearch import sample_trials, space_for

    if suite.search.n_trials == 1:
        return [{}]
    try:
        space = space_for(mapping)
    except ValueError as exc:
        raise SparsenuError(f"{source}: method '{name}': {exc}") from None
    return sample_trials(space, suite.search.n_trials, suite.search.seed)


def trial_mapping(mapping: dict, params: dict[str, Any]) -> dict:
    """A method's mapping with a trial's hyper-parameters written in (trial 0: unchanged)."""
    from sparsenu.eval.hpsearch import apply_trial

    return apply_trial(mapping, params) if params else mapping


def _uses_target(spec: MethodSpec, mapping: dict) -> bool:
    return spec.use_target if spec.use_target is not None else mapping.get("method") == "dann"


def data_overrides(mapping: dict, spec: MethodSpec, data: SuiteData, seed: int, knn_k: int) -> list[str]:
    """Overrides pointing a training config at the suite's cached data, seed and kNN.

    Keys of :class:`sparsenu.train.config.ExperimentConfig`:
    ``data.train``/``val``/``raw_train``/``target`` files replace any
    ``data.simulate`` block; ``validation.knn_k`` makes checkpoint selection use the
    report's kNN.
    """
    ov = [
        f"seed={seed}",
        f"validation.knn_k={knn_k}",
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


def _best_checkpoint(result: Any, run_dir: Path) -> Path:
    for attr in ("best_checkpoint", "best", "checkpoint"):
        p = getattr(result, attr, None)
        if isinstance(p, (str, Path)) and Path(p).is_file():
            return Path(p)
    for name in ("best.pt", "last.pt"):
        if (run_dir / name).is_file():
            return run_dir / name
    raise SparsenuError(f"training in {run_dir} finished without a checkpoint")


def train_one(name: str, mapping: dict, spec: MethodSpec, data: SuiteData, seed: int,
              run_dir: Path, progress: bool, knn_k: int) -> tuple[Path, bool]:
    """Train (or skip, or resume) one run; return (checkpoint to evaluate, trained now).

    A finished run has ``COMPLETE.json`` (with a fingerprint of the training
    configuration and data); a run with ``last.pt`` but no marker was interrupted
    and is resumed.
    """
    overrides = data_overrides(mapping, spec, data, seed, knn_k)
    fingerprint = config_hash({"config": mapping, "overrides": overrides, "data": data.key})
    marker = run_dir / "COMPLETE.json"
    done = read_json(marker, "run marker")
    if done is not None:
        ckpt = Path(done.get("checkpoint", ""))
        if done.get("fingerprint") == fingerprint and ckpt.is_file():
            return ckpt, False
        if done.get("fingerprint") != fingerprint:
            raise SparsenuError(
                f"{run_dir} holds a finished run of a different configuration of '{name}' "
                "(training config, overrides or data changed); delete that directory or use another --out"
            )
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / "suite_train_config.yaml"
    write_text_atomic(config_path, dump_yaml(mapping))
    resume = (run_dir / "last.pt").is_file()
    t0 = time.time()
    result = train(config_path, out_dir=run_dir, overrides=overrides, resume=resume, progress=progress)
    ckpt = _best_checkpoint(result, run_dir)
    write_json_atomic(marker, {"method": name, "seed": seed, "checkpoint": str(ckpt),
                               "fingerprint": fingerprint, "train_seconds": round(time.time() - t0, 1),
                               "overrides": overrides})
    return ckpt, True


def check_train_configs(mappings: dict[str, dict], source: str) -> None:
    """Validate every method's (and trial's) training config before spending time on data."""
    for name, m in mappings.items():
        probe = apply_overrides(m, ["data.simulate=null", "data.train=train.h5", "data.val=null",
                                    "data.raw_train=train_raw.h5", "data.target=target.h5"])
        from_dict(ExperimentConfig, probe, source=f"{source}: method '{name}' (merged training config)")
