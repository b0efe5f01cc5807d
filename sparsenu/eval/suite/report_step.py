"""The report step of a suite: results files, report.md and plots from the caches alone.

:func:`make_report` reads ``OUT/manifest.json`` (written by
:func:`sparsenu.eval.suite.runner.run_benchmark`: the test sets, the methods and every
evaluation directory), each evaluation's ``rows.json`` and its per-event predictions files. It
trains, embeds and simulates nothing, and it is deterministic (seeded bootstrap, fixed orders,
no timings in the report), so re-running it on a finished directory reproduces
``report.md``, ``results.csv`` and ``results.json`` byte for byte.

Model selection: with a hyper-parameter search, the rows reported are, per (method, seed), the
trial with the best linear-probe accuracy on the nominal validation set
(:func:`sparsenu.eval.hpsearch.select_nominal`, which reads only method, seed, trial and that
accuracy); every trial is kept in ``trials.csv`` and the oracle rule is shown next to it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sparsenu.data.formats.base import read_json, write_text_atomic
from sparsenu.errors import SparsenuError
from sparsenu.eval import plots as P
from sparsenu.eval import report as R
from sparsenu.eval import report_sections as S
from sparsenu.eval.evaluate import VALIDATION

__all__ = ["ReportOutput", "make_report", "load_manifest", "all_rows", "honest_selection"]


@dataclass
class ReportOutput:
    """What :func:`make_report` wrote: the reported rows, the printed table, the files."""

    results: pd.DataFrame
    table: str
    files: list[Path]


def load_manifest(out_dir: Path) -> dict[str, Any]:
    """``OUT/manifest.json``; a directory without one is not a finished benchmark."""
    m = read_json(Path(out_dir) / "manifest.json", "benchmark manifest")
    if m is None:
        raise SparsenuError(f"{out_dir}: no manifest.json; run 'sparsenu benchmark SUITE --out {out_dir}' first")
    return m


def all_rows(out_dir: Path, manifest: dict[str, Any]) -> pd.DataFrame:
    """Every evaluation's metrics per test set (all trials and adaptations), from ``rows.json``."""
    rows = []
    for e in manifest["evals"]:
        d = Path(out_dir) / e["dir"]
        cache = read_json(d / "rows.json", "evaluation cache") or {}
        val = (cache.get(VALIDATION) or {}).get("metrics", {}).get("accuracy")
        for s in manifest["sets"]:
            entry = cache.get(s["name"])
            if not isinstance(entry, dict):
                raise SparsenuError(f"{d}: no cached result for test set '{s['name']}'; re-run the benchmark")
            rows.append({"method": e["method"], "seed": e["seed"], "trial": e["trial"], "shift": s["name"],
                         "kind": s["kind"], "severity": s["severity"], "parameter": s["parameter"],
                         "value": s["value"], **entry["metrics"],
                         "val_accuracy": val if e["kind"] == "train" else None})
    return R.results_frame(rows)


def honest_selection(trials: pd.DataFrame) -> pd.DataFrame:
    """Per (method, seed) the trial with the best nominal validation accuracy (method, seed, trial)."""
    from sparsenu.eval.hpsearch import select_nominal

    sel = select_nominal(trials.rename(columns={"val_accuracy": "val_metric"}))
    return sel[["method", "seed", "trial"]]


def _selection_note(manifest: dict[str, Any]) -> str:
    text = ("**Model selection.** Every checkpoint is the trainer's `best.pt`, chosen on the *nominal* "
            "validation set; the linear probe (StandardScaler + logistic regression) and the kNN probe are "
            "fitted on embeddings of labelled nominal training events without augmentation, with the encoder "
            "frozen and the projection head dropped.")
    if manifest["n_trials"] > 1:
        text += (f" Each method had {manifest['n_trials']} hyper-parameter trials; the rows reported are, per "
                 "seed, the trial with the best linear-probe accuracy on nominal validation (oracle selection "
                 "on shifted labels appears only in the selection-rule table, as an upper bound).")
    text += " Labels of shifted data are used for nothing but the final scores."
    tta = manifest.get("tta") or {}
    if tta.get("methods"):
        text += (" Rows `<method>+adabn` / `<method>+tent` adapt a copy of that method's selected encoder to each "
                 "test set, without its labels, before embedding it: AdaBN re-estimates the BatchNorm statistics, "
                 "TENT trains the BatchNorm scale and shift to minimise the entropy of the linear probe's "
                 f"predictions (Adam, lr {tta['tent_lr']:g}, {tta['tent_epochs']} pass(es), batch "
                 f"{tta['batch_size']}" + (f", adapted on {tta['max_events']} events of each set" if
                                           tta.get("max_events") else "")
                 + "); both are scored with the probe fitted on the unadapted encoder's nominal embeddings.")
    return text


def make_report(out_dir: str | Path) -> ReportOutput:
    """Write results.csv/json, trials.csv/json, report.md and plots/ of a finished suite directory.

    Parameters
    ----------
    out_dir : path
        The ``--out`` directory of ``sparsenu benchmark`` (with its ``manifest.json``).

    Returns
    -------
    ReportOutput
    """
    from sparsenu.eval.suite.analysis import compute_statistics, load_method_predictions

    out_dir = Path(out_dir)
    manifest = load_manifest(out_dir)
    methods, seeds = manifest["methods"], manifest["seeds"]
    sets = [s["name"] for s in manifest["sets"]]
    rep = manifest["report"]
    df_all = all_rows(out_dir, manifest)
    order = {m: i for i, m in enumerate(methods)}
    set_order = {s: i for i, s in enumerate(sets)}
    trained = {e["method"] for e in manifest["evals"] if e["kind"] == "train"}
    trials = df_all[df_all["method"].isin(trained)]
    chosen = honest_selection(trials)
    selected = trials.merge(chosen, on=["method", "seed", "trial"], how="inner")
    df = pd.concat([selected, df_all[~df_all["method"].isin(trained)]], ignore_index=True)
    df = R.results_frame(df.assign(_m=df["method"].map(order), _s=df["shift"].map(set_order))
                         .sort_values(["_m", "seed", "_s"], kind="mergesort").to_dict("records"))
    files = list(R.write_results(df, out_dir))
    if manifest["n_trials"] > 1:
        files += list(R.write_results(trials.reset_index(drop=True), out_dir, stem="trials"))

    # per-event predictions of the reported rows, seeds in suite order
    dirs: dict[str, list[tuple[int, Path]]] = {}
    pick = {(str(r.method), int(r.seed)): int(r.trial) for r in chosen.itertuples()}
    for e in manifest["evals"]:
        if e["kind"] == "train" and pick.get((e["method"], e["seed"])) != e["trial"]:
            continue
        dirs.setdefault(e["method"], []).append((seeds.index(e["seed"]), out_dir / e["dir"]))
    preds = {m: load_method_predictions([d for _, d in sorted(dirs[m])], sets) for m in methods if m in dirs}
    n_classes = len(manifest["class_names"])
    stats = compute_statistics(preds, manifest["baseline"], n_boot=rep["n_boot"], confidence=rep["confidence"],
                               seed=rep["seed"], n_classes=n_classes)

    plot_dir = out_dir / "plots"
    plot_files = P.plot_accuracy_vs_shift(df, plot_dir, manifest["nominal_values"], methods,
                                          chance=manifest["chance"])
    sev = P.plot_accuracy_vs_severity(df, plot_dir, methods, chance=manifest["chance"])
    if sev is not None:
        plot_files.append(sev)
    plot_files += _projection_plots(out_dir, manifest, pick, plot_dir)
    files += plot_files

    n_events = int(preds[manifest["baseline"]]["nominal"].ids.size)
    summary = S.summary_section(stats, methods)
    conclusion = S.conclusion_sentence(stats, methods, len(seeds), n_events)
    head = [summary, conclusion]
    if manifest["n_trials"] > 1:
        head.append(S.selection_section(trials, manifest["trials"], methods))
    extra = [S.difference_section(stats, methods, sets), S.confusion_section(stats, methods, manifest["class_names"])]
    n_nom = n_events
    shift_rows = []
    for s in manifest["sets"]:
        kind = s["kind"] + (f" {s['severity']}" if s["severity"] else "")
        lost = stats.lost.get(s["name"], 0)
        shift_rows.append([s["name"], kind, s["description"], f"{n_nom - lost}" + (f" ({lost} lost)" if lost else "")])
    md = R.render_report(df, title=manifest["title"], methods=methods, shifts=sets, shift_rows=shift_rows,
                         plots=[str(p.relative_to(out_dir)) for p in plot_files], notes=manifest["notes"],
                         head_sections=head, accuracy_marks=S.significance_marks(stats), extra_sections=extra,
                         selection_note=_selection_note(manifest))
    write_text_atomic(out_dir / "report.md", md)
    files.append(out_dir / "report.md")
    table = "\n\n".join([R.summary_table(df, methods, sets), summary, conclusion])
    return ReportOutput(df, table, files)


def _projection_plots(out_dir: Path, manifest: dict[str, Any], pick: dict[tuple[str, int], int],
                      plot_dir: Path) -> list[Path]:
    """PCA of nominal vs the projection shift's embeddings, first seed, selected trial."""
    from sparsenu.eval.embeddings import load_embeddings
    from sparsenu.eval.suite.jobs import job_subdir

    ps = manifest.get("projection_shift")
    if not ps:
        return []
    desc = next(s["description"] for s in manifest["sets"] if s["name"] == ps)
    seed0 = manifest["seeds"][0]
    out = []
    for method in manifest["methods"]:
        if (method, seed0) not in pick:
            continue
        ed = out_dir / "eval" / job_subdir(method, pick[(method, seed0)], seed0)
        try:
            a = load_embeddings(ed / f"test_{R.NOMINAL}.h5")
            b = load_embeddings(ed / f"test_{ps}.h5")
        except SparsenuError:
            continue
        out.append(P.plot_projection(a["embeddings"], a["labels"], b["embeddings"], b["labels"],
                                     plot_dir / f"projection_{method}.png", class_names=manifest["class_names"],
                                     title=f"{method} (seed {seed0}): PCA of frozen test embeddings",
                                     shifted_label=f"{ps}: {desc}"))
    return out
