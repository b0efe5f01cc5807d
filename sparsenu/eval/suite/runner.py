"""Running a suite: train every (method, trial, seed), evaluate it, adapt at test time, report.

``run_benchmark`` (= ``sparsenu benchmark SUITE --out DIR``) is resumable: a finished run
has a completion marker and is skipped, a run interrupted after its first checkpoint is
resumed, and evaluations are cached per (method, trial, seed, test set). The report is made
from the caches alone (:func:`sparsenu.eval.suite.report_step.make_report`), so a re-run on a
finished directory only re-makes the report, and ``report_only=True`` (or
``python -m sparsenu.eval.suite report DIR``) does that without loading the suite.

Output layout::

    OUT/suite.yaml                          the resolved suite
    OUT/manifest.json                       what the report reads: test sets, evaluations
    OUT/runs/<method>[/trial<t>]/seed<k>/   training runs (best.pt, last.pt, COMPLETE.json)
    OUT/eval/<method>[/trial<t>]/seed<k>/   probe.h5, pred_<set>.h5, head_<set>.h5, embeddings, rows.json
    OUT/eval/<base>+<tta>/seed<k>/          test-time adaptation (pred_<set>.h5, rows.json)
    OUT/results.csv/json, trials.csv/json, report.md, plots/*.png
    OUT/timings.json                        seconds of training and evaluation per job (not in the report)
    <cache_dir>/<data key>/                 simulated data (default cache_dir: OUT/data)
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from sparsenu.config import dump_yaml
from sparsenu.data.formats.base import read_json, write_json_atomic, write_text_atomic
from sparsenu.eval.evaluate import VALIDATION, evaluate_checkpoint
from sparsenu.eval.report import NOMINAL
from sparsenu.eval.suite.config import SuiteConfig, load_suite, resolve_shifts
from sparsenu.eval.suite.data import prepare_suite_data
from sparsenu.eval.suite.jobs import (
    Job,
    check_train_configs,
    data_overrides,
    method_mapping,
    method_trials,
    train_one,
    trial_mapping,
)
from sparsenu.eval.suite.report_step import make_report
from sparsenu.sim import CLASS_NAMES

__all__ = ["BenchmarkResult", "run_benchmark", "default_baseline"]

# Earlier names of the training helpers (now in sparsenu.eval.suite.jobs), kept for callers.
_data_overrides = data_overrides
_method_mapping = method_mapping
_check_train_configs = check_train_configs


@dataclass
class BenchmarkResult:
    """What ``sparsenu benchmark`` produced; ``str()`` is the final table.

    Attributes
    ----------
    out_dir : Path
    results : pandas.DataFrame
        One row per (method, seed, test set), columns ``report.RESULT_COLUMNS`` (the trial
        chosen on nominal validation, and the test-time adaptation rows).
    table : str
        Linear-probe accuracy table (mean ± SE, change from nominal), the summary figures and
        the conclusion.
    files : list of Path
        results.csv, results.json, report.md and the plots.
    seconds : float
        Wall time of this call.
    trained, evaluated : int
        Runs trained and evaluations computed in this call (0 and 0 when everything was cached).
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


def _auto_device(device: str) -> str:
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def default_baseline(suite: SuiteConfig) -> str:
    """``report.baseline``, else ``classifier_aug`` when the suite has it, else the first method."""
    if suite.report.baseline:
        return suite.report.baseline
    return "classifier_aug" if "classifier_aug" in suite.methods else next(iter(suite.methods))


def _selected_trials(entries: list[dict], n_trials: int) -> dict[tuple[str, int], int]:
    """Honest selection: per (method, seed), the trial with the best nominal validation accuracy."""
    import pandas as pd

    from sparsenu.eval.hpsearch import select_nominal

    if n_trials == 1:
        return {(e["method"], e["seed"]): 0 for e in entries}
    frame = pd.DataFrame([{"method": e["method"], "seed": e["seed"], "trial": e["trial"],
                           "val_metric": e["val_accuracy"]} for e in entries])
    sel = select_nominal(frame)
    return {(str(r.method), int(r.seed)): int(r.trial) for r in sel.itertuples()}


def _record_time(timings: dict, key: str, run_dir: Path | None, eval_seconds: float | None) -> None:
    """Keep the training seconds (from the run's marker) and the last measured evaluation seconds."""
    t = timings.setdefault(key, {})
    if run_dir is not None:
        marker = read_json(run_dir / "COMPLETE.json", "run marker") or {}
        if "train_seconds" in marker:
            t["train_seconds"] = marker["train_seconds"]
    if eval_seconds is not None:
        t["eval_seconds"] = round(eval_seconds, 1)


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
    report_only: bool = False,
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
    report_only : bool
        Only re-make the report of a finished ``out_dir`` from its caches (the suite file
        and overrides are not read).

    Returns
    -------
    BenchmarkResult
    """
    t0 = time.time()
    out_dir = Path(out_dir)
    if report_only:
        rep = make_report(out_dir)
        return BenchmarkResult(out_dir, rep.results, rep.table, rep.files, time.time() - t0)
    suite_path = Path(suite_path)
    suite = load_suite(suite_path, overrides)
    source = str(suite_path)
    nominal, sim = suite.data.detector, suite.data.sim
    shifts = resolve_shifts(suite, nominal, source)
    mappings = {n: method_mapping(suite, n, suite_path.parent, source) for n in suite.methods}
    trials = {n: method_trials(suite, mappings[n], source, n) for n in suite.methods}
    trial_maps = {(n, t): trial_mapping(mappings[n], p) for n in suite.methods for t, p in enumerate(trials[n])}
    check_train_configs({(f"{n} (trial {t})" if t else n): m for (n, t), m in trial_maps.items()}, source)
    device = _auto_device(suite.eval.device)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "suite.yaml", dump_yaml(suite))

    data = prepare_suite_data(suite, out_dir, shifts, progress)
    test_sets = {NOMINAL: data.test, **data.shifts}
    projection = suite.eval.projection_shift or (shifts[0].name if shifts else None)
    drop = () if suite.eval.keep_embeddings else {s.name for s in shifts} - {projection}

    jobs = [Job(m, t, s, trials[m][t]) for m in suite.methods for t in range(len(trials[m])) for s in suite.seeds]
    trained = evaluated = 0
    timings = read_json(out_dir / "timings.json", "timings") or {}  # seconds of work actually done, per job
    entries: list[dict[str, Any]] = []
    bar = tqdm(jobs, desc=f"benchmark {suite.name}", disable=not progress, unit="run")
    for job in bar:
        bar.set_postfix_str(f"{job.method} trial {job.trial} seed {job.seed}")
        ckpt, did_train = train_one(job.method, trial_maps[(job.method, job.trial)], suite.methods[job.method],
                                    data, job.seed, out_dir / "runs" / job.subdir, progress, suite.eval.knn_k)
        trained += int(did_train)
        eval_dir = out_dir / "eval" / job.subdir
        before = read_json(eval_dir / "rows.json", "evaluation cache") or {}
        t_eval = time.time()
        metrics = evaluate_checkpoint(
            ckpt, data.train, test_sets, eval_dir, val_path=data.val, knn_k=suite.eval.knn_k,
            batch_size=suite.eval.batch_size, device=device, probe_c=suite.eval.probe_c,
            probe_max_iter=suite.eval.probe_max_iter, ece_bins=suite.report.ece_bins,
            drop_embeddings=drop, progress=progress)
        changed = (read_json(eval_dir / "rows.json", "evaluation cache") or {}) != before
        evaluated += int(changed)
        _record_time(timings, job.subdir, out_dir / "runs" / job.subdir, time.time() - t_eval if changed else None)
        entries.append({"method": job.method, "seed": job.seed, "trial": job.trial, "kind": "train",
                        "dir": _rel(eval_dir, out_dir), "checkpoint": str(ckpt),
                        "val_accuracy": metrics[VALIDATION]["accuracy"]})
    bar.close()

    if suite.tta.methods:
        from sparsenu.eval.suite.tta_eval import evaluate_tta

        chosen = _selected_trials(entries, suite.search.n_trials)
        by_key = {(e["method"], e["seed"], e["trial"]): e for e in entries}
        tta_jobs = [(b, s, k) for b in suite.tta.base for k in dict.fromkeys(suite.tta.methods) for s in suite.seeds]
        for base, seed, kind in tqdm(tta_jobs, desc="test-time adaptation", disable=not progress, unit="run"):
            e = by_key[(base, seed, chosen[(base, seed)])]
            tdir = out_dir / "eval" / f"{base}+{kind}" / f"seed{seed}"
            before = read_json(tdir / "rows.json", "evaluation cache") or {}
            t_eval = time.time()
            evaluate_tta(Path(e["checkpoint"]), out_dir / e["dir"] / "probe.h5", test_sets, tdir, kind,
                         batch_size=suite.tta.batch_size, eval_batch_size=suite.eval.batch_size,
                         lr=suite.tta.tent_lr, epochs=suite.tta.tent_epochs, steps=suite.tta.tent_steps,
                         max_events=suite.tta.max_events, ece_bins=suite.report.ece_bins, device=device,
                         progress=progress)
            changed = (read_json(tdir / "rows.json", "evaluation cache") or {}) != before
            evaluated += int(changed)
            _record_time(timings, f"{base}+{kind}/seed{seed}", None, time.time() - t_eval if changed else None)
            entries.append({"method": f"{base}+{kind}", "seed": seed, "trial": e["trial"], "kind": "tta",
                            "base": base, "dir": _rel(tdir, out_dir), "checkpoint": e["checkpoint"]})

    methods = list(suite.methods) + [f"{b}+{k}" for b in suite.tta.base for k in dict.fromkeys(suite.tta.methods)]
    manifest = {
        "title": f"sparsenu benchmark: {suite.name}",
        "methods": methods,
        "seeds": list(suite.seeds),
        "n_trials": suite.search.n_trials,
        "trials": {n: trials[n] for n in suite.methods},
        "baseline": default_baseline(suite),
        "report": suite.report.to_dict(),
        "sets": [{"name": NOMINAL, "kind": "nominal", "severity": None, "parameter": None, "value": None,
                  "description": "nominal detector"}]
        + [{"name": s.name, "kind": s.kind, "severity": s.severity, "parameter": s.parameter,
            "value": s.value if isinstance(s.value, str) or s.value == s.value else None,
            "description": s.description} for s in shifts],
        "nominal_values": {s.parameter: getattr(nominal, s.parameter) for s in shifts if s.parameter},
        "class_names": list(CLASS_NAMES),
        "chance": 1.0 / len(sim.classes),
        "projection_shift": projection,
        "tta": suite.tta.to_dict(),
        "notes": [
            f"Data: {suite.data.n_train} training, {suite.data.n_val} validation and {suite.data.n_test} test "
            f"events per test set (data key `{data.key}`). kNN: k = {suite.eval.knn_k}, cosine distance. "
            f"Bootstrap: {suite.report.n_boot} replicates, seed {suite.report.seed}.",
        ],
        "evals": entries,
    }
    write_json_atomic(out_dir / "manifest.json", manifest)
    write_json_atomic(out_dir / "timings.json", timings)
    rep = make_report(out_dir)
    return BenchmarkResult(out_dir, rep.results, rep.table, rep.files, time.time() - t0, trained, evaluated)
