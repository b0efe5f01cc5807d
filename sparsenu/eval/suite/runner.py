"""Running a suite: train every (method, seed), evaluate it on every test set, report.

``run_benchmark`` (= ``sparsenu benchmark SUITE --out DIR``) is resumable: a finished run
has a completion marker and is skipped, a run interrupted after its first checkpoint is
resumed, and evaluations are cached per (method, seed, test set).

Output layout::

    OUT/suite.yaml                       the resolved suite
    OUT/runs/<method>/seed<k>/           training runs (best.pt, last.pt, COMPLETE.json)
    OUT/eval/<method>/seed<k>/           embeddings (*.h5, data_specs/embeddings.md) + rows.json
    OUT/results.csv, results.json, report.md, plots/*.png
    <cache_dir>/<data key>/              simulated data (default cache_dir: OUT/data)
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from sparsenu.config import apply_overrides, deep_merge, from_dict, load_yaml, save_yaml
from sparsenu.data.formats.base import read_json, write_json_atomic
from sparsenu.errors import SparsenuError
from sparsenu.eval import plots as P
from sparsenu.eval import report as R
from sparsenu.eval.embeddings import load_embeddings
from sparsenu.eval.evaluate import evaluate_checkpoint
from sparsenu.eval.suite.config import MethodSpec, SuiteConfig, load_suite, resolve_shifts
from sparsenu.eval.suite.data import SuiteData, prepare_suite_data
from sparsenu.keys import config_hash
from sparsenu.sim import CLASS_NAMES
from sparsenu.train import train
from sparsenu.train.config import ExperimentConfig

__all__ = ["BenchmarkResult", "run_benchmark"]


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


def _method_mapping(suite: SuiteConfig, name: str, suite_dir: Path, source: str) -> dict:
    """The merged training mapping of one method (before the suite's data/seed overrides)."""
    spec = suite.methods[name]
    base: dict = {}
    if spec.config:
        base = load_yaml(_find_config(spec.config, suite_dir, f"{source}: method '{name}'"))
    merged = deep_merge(deep_merge(base, suite.train_defaults), spec.train)
    merged = apply_overrides(merged, spec.overrides, source=f"{source}: method '{name}'")
    merged.setdefault("name", name)
    return merged


def _uses_target(spec: MethodSpec, mapping: dict) -> bool:
    return spec.use_target if spec.use_target is not None else mapping.get("method") == "dann"


def _data_overrides(mapping: dict, spec: MethodSpec, data: SuiteData, seed: int, knn_k: int) -> list[str]:
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


def _train_one(name: str, mapping: dict, spec: MethodSpec, data: SuiteData, seed: int,
               run_dir: Path, progress: bool, knn_k: int) -> Path:
    """Train (or skip, or resume) one (method, seed); return the checkpoint to evaluate.

    A finished run has ``COMPLETE.json`` (with a fingerprint of the training
    configuration and data); a run with ``last.pt`` but no marker was interrupted
    and is resumed.
    """
    overrides = _data_overrides(mapping, spec, data, seed, knn_k)
    fingerprint = config_hash({"config": mapping, "overrides": overrides, "data": data.key})
    marker = run_dir / "COMPLETE.json"
    done = read_json(marker, "run marker")
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
    write_json_atomic(marker, {"method": name, "seed": seed, "checkpoint": str(ckpt),
                          "fingerprint": fingerprint, "train_seconds": round(time.time() - t0, 1),
                          "overrides": overrides})
    return ckpt


def _check_train_configs(mappings: dict[str, dict], source: str) -> None:
    """Validate every method's training config before spending time on data."""
    for name, m in mappings.items():
        probe = apply_overrides(m, ["data.simulate=null", "data.train=train.h5", "data.val=null",
                                    "data.raw_train=train_raw.h5", "data.target=target.h5"])
        from_dict(ExperimentConfig, probe, source=f"{source}: method '{name}' (merged training config)")


def _best_checkpoint(result: Any, run_dir: Path) -> Path:
    for attr in ("best_checkpoint", "best", "checkpoint"):
        p = getattr(result, attr, None)
        if isinstance(p, (str, Path)) and Path(p).is_file():
            return Path(p)
    for name in ("best.pt", "last.pt"):
        if (run_dir / name).is_file():
            return run_dir / name
    raise SparsenuError(f"training in {run_dir} finished without a checkpoint")


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
    t0 = time.time()
    suite_path = Path(suite_path)
    suite = load_suite(suite_path, overrides)
    source = str(suite_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    nominal, sim = suite.data.detector, suite.data.sim
    shifts = resolve_shifts(suite, nominal, source)
    mappings = {n: _method_mapping(suite, n, suite_path.parent, source) for n in suite.methods}
    _check_train_configs(mappings, source)
    device = _auto_device(suite.eval.device)
    save_yaml(suite, out_dir / "suite.yaml")

    data = prepare_suite_data(suite, out_dir, shifts, progress)
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
                          progress, suite.eval.knn_k)
        trained += 0 if marker_before else 1
        eval_dir = out_dir / "eval" / method / f"seed{seed}"
        before = read_json(eval_dir / "rows.json", "evaluation cache") or {}
        metrics = evaluate_checkpoint(
            ckpt, data.train, test_sets, eval_dir, knn_k=suite.eval.knn_k,
            batch_size=suite.eval.batch_size, device=device, probe_c=suite.eval.probe_c,
            probe_max_iter=suite.eval.probe_max_iter, progress=progress)
        after = read_json(eval_dir / "rows.json", "evaluation cache") or {}
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
