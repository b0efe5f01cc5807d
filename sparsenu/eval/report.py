"""Results table of a benchmark: files, aggregation over seeds, markdown tables.

One row per (method, seed, test set). The test set ``nominal`` is the nominal
detector; every other is a named detector shift applied to the same events.
Aggregation is over seeds: the mean and its standard error (sample std, ddof 1, over
sqrt(n)). With a single seed the spread over seeds is unknown; accuracies then show the
binomial standard error of the test set, marked ``ᵇ``, and other metrics no spread. The
*drop* is nominal accuracy minus shifted accuracy, computed per seed and then
aggregated, so the seed-to-seed correlation between nominal and shifted accuracy does
not inflate its spread.

The statistical sections (summary figures, paired differences from the baseline,
selection rules, confusion matrices, the conclusion) are rendered from
:class:`sparsenu.eval.suite.analysis.SuiteStatistics` by :mod:`sparsenu.eval.report_sections`.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "RESULT_COLUMNS",
    "NOMINAL",
    "BINOMIAL_MARK",
    "results_frame",
    "write_results",
    "read_results",
    "format_mean_std",
    "format_mean_se",
    "aggregate",
    "metric_table",
    "drop_table",
    "markdown_table",
    "render_report",
    "summary_table",
]

NOMINAL = "nominal"

#: Marks a standard error that is the binomial error of one seed's test set.
BINOMIAL_MARK = "ᵇ"

#: Columns of results.csv / results.json, in order.
RESULT_COLUMNS = (
    "method",
    "seed",
    "trial",
    "shift",
    "kind",
    "severity",
    "parameter",
    "value",
    "accuracy",
    "balanced_accuracy",
    "ece",
    "knn_accuracy",
    "head_accuracy",
    "head_balanced_accuracy",
    "head_ece",
    "sensitivity",
    "n_events",
    "val_accuracy",
)

#: Metrics whose single-seed spread is the binomial error of the test set.
_PROPORTIONS = {"accuracy", "balanced_accuracy", "knn_accuracy", "head_accuracy", "head_balanced_accuracy"}

_METRIC_TITLES = {
    "accuracy": "Linear-probe accuracy",
    "balanced_accuracy": "Linear-probe balanced accuracy",
    "knn_accuracy": "kNN accuracy",
    "head_accuracy": "Classifier-head accuracy",
    "head_balanced_accuracy": "Classifier-head balanced accuracy",
    "ece": "Expected calibration error of the linear probe (15 bins; lower = better calibrated)",
    "head_ece": "Expected calibration error of the classifier head",
    "sensitivity": "Sensitivity (mean cosine distance nominal vs shifted, same events)",
}


def results_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows (dicts) -> DataFrame with exactly :data:`RESULT_COLUMNS` (missing -> NaN)."""
    df = pd.DataFrame(list(rows))
    for c in RESULT_COLUMNS:
        if c not in df.columns:
            df[c] = np.nan
    return df[list(RESULT_COLUMNS)].reset_index(drop=True)


def _clean(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return None if math.isnan(float(v)) else float(v)
    if v is pd.NA:
        return None
    return v


def write_results(df: pd.DataFrame, out_dir: str | Path, stem: str = "results") -> tuple[Path, Path]:
    """Write ``<stem>.csv`` and ``<stem>.json`` (a list of row objects, NaN -> null), atomically."""
    from sparsenu.data.formats.base import write_text_atomic

    out_dir = Path(out_dir)
    csv_path, json_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.json"
    write_text_atomic(csv_path, df.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    records = [{k: _clean(v) for k, v in r.items()} for r in df.to_dict(orient="records")]
    write_text_atomic(json_path, json.dumps(records, indent=1) + "\n")
    return csv_path, json_path


def read_results(path: str | Path) -> pd.DataFrame:
    """Read results.csv or results.json back into a DataFrame."""
    path = Path(path)
    if path.suffix == ".json":
        return results_frame(json.loads(path.read_text(encoding="utf-8")))
    return results_frame(pd.read_csv(path).to_dict(orient="records"))


def _num(x: float, digits: int, signed: bool = False) -> str:
    return f"{round(float(x), digits) + 0.0:{'+' if signed else ''}.{digits}f}"  # no "-0.000"


def format_mean_std(mean: float, std: float, n: int, digits: int = 3, signed: bool = False) -> str:
    """``"0.712 ± 0.013"``; one value (n == 1) -> ``"0.712"``; no value -> ``"–"``."""
    if n == 0 or mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    text = _num(mean, digits, signed)
    if n > 1 and std is not None and not math.isnan(std):
        text += f" ± {std:.{digits}f}"
    return text


def format_mean_se(mean: float, se: float, digits: int = 3, signed: bool = False, binomial: bool = False) -> str:
    """``"0.712 ± 0.004"``; NaN SE -> ``"0.712"``; binomial SE -> ``"0.712 ± 0.020ᵇ"``."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    text = _num(mean, digits, signed)
    if se is not None and not math.isnan(se):
        text += f" ± {se:.{digits}f}" + (BINOMIAL_MARK if binomial else "")
    return text


def aggregate(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per (method, shift): mean, std (ddof 1), n, se (std / sqrt n) and ``binomial``.

    With one seed, ``se`` of a proportion is the binomial error ``sqrt(p (1-p) / n_events)``
    (``binomial`` True); of any other metric NaN.
    """
    sub = df[["method", "shift", metric, "n_events"]].dropna(subset=[metric])
    rows = []
    for (m, s), g in sub.groupby(["method", "shift"], sort=False):
        v = g[metric].to_numpy(dtype=float)
        n = len(v)
        std = float(np.std(v, ddof=1)) if n > 1 else float("nan")
        se, binom = (std / math.sqrt(n), False) if n > 1 else (float("nan"), False)
        ne = g["n_events"].to_numpy(dtype=float)
        if n == 1 and metric in _PROPORTIONS and ne.size and np.isfinite(ne[0]) and ne[0] >= 1:
            p = min(max(v[0], 0.0), 1.0)
            se, binom = math.sqrt(p * (1 - p) / ne[0]), True
        rows.append({"method": m, "shift": s, "mean": float(v.mean()), "std": std, "n": n, "se": se,
                     "binomial": binom})
    return pd.DataFrame(rows, columns=["method", "shift", "mean", "std", "n", "se", "binomial"])


def _orders(df: pd.DataFrame, methods: Sequence[str] | None, shifts: Sequence[str] | None):
    methods = list(methods) if methods is not None else list(dict.fromkeys(df["method"]))
    if shifts is None:
        shifts = list(dict.fromkeys(df["shift"]))
    shifts = list(shifts)
    if NOMINAL in shifts:
        shifts = [NOMINAL] + [s for s in shifts if s != NOMINAL]
    return methods, shifts


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A padded markdown table."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(header)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    sep = "| " + " | ".join("-" * w for w in widths) + " |"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


_markdown = markdown_table


def metric_table(
    df: pd.DataFrame,
    metric: str = "accuracy",
    methods: Sequence[str] | None = None,
    shifts: Sequence[str] | None = None,
    digits: int = 3,
    with_drop: bool = False,
    marks: Mapping[tuple[str, str], str] | None = None,
) -> str:
    """Markdown table: one row per test set (shift), one column per method.

    Cells are ``mean ± SE`` over seeds (one seed: binomial SE of proportions, marked ``ᵇ``).
    With ``with_drop`` each shifted cell also shows the change from nominal in brackets,
    e.g. ``0.650 ± 0.010 (-0.062)``. ``marks[(method, shift)]`` is appended to a cell
    (significance marks).
    """
    methods, shifts = _orders(df, methods, shifts)
    agg = aggregate(df, metric).set_index(["method", "shift"])
    drops = _drops(df, metric).set_index(["method", "shift"]) if with_drop else None
    rows = []
    for s in shifts:
        row = [s]
        for m in methods:
            if (m, s) in agg.index:
                r = agg.loc[(m, s)]
                cell = format_mean_se(r["mean"], r["se"], digits, binomial=bool(r["binomial"]))
            else:
                cell = "–"
            if drops is not None and s != NOMINAL and (m, s) in drops.index and cell != "–":
                d = drops.loc[(m, s)]
                cell += f" ({_num(-d['mean'], digits, True)})"
            if marks and cell != "–" and marks.get((m, s)):
                cell += " " + marks[(m, s)]
            row.append(cell)
        rows.append(row)
    return markdown_table(["test set", *methods], rows)


def _drops(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per-seed drop (nominal - shifted) of ``metric``, aggregated over seeds (mean, std, se, n)."""
    sub = df[["method", "seed", "shift", metric]].dropna(subset=[metric])
    nom = sub[sub["shift"] == NOMINAL].set_index(["method", "seed"])[metric]
    shifted = sub[sub["shift"] != NOMINAL].copy()
    key = list(zip(shifted["method"], shifted["seed"]))
    shifted["drop"] = np.array([nom.get(k, np.nan) for k in key], dtype=float) - shifted[metric].to_numpy(float)
    shifted = shifted.dropna(subset=["drop"])
    g = shifted.groupby(["method", "shift"], sort=False)["drop"]
    out = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "n": g.count()}).reset_index()
    out["se"] = out["std"] / np.sqrt(out["n"])
    return out


def drop_table(
    df: pd.DataFrame,
    metric: str = "accuracy",
    methods: Sequence[str] | None = None,
    shifts: Sequence[str] | None = None,
    digits: int = 3,
) -> str:
    """Markdown table of the drop from nominal (nominal - shifted; positive = worse),
    mean ± SE over seeds, plus a final row with the mean drop over all shifts."""
    methods, shifts = _orders(df, methods, shifts)
    shifts = [s for s in shifts if s != NOMINAL]
    agg = _drops(df, metric).set_index(["method", "shift"])
    rows = []
    for s in shifts:
        row = [s]
        for m in methods:
            if (m, s) in agg.index:
                r = agg.loc[(m, s)]
                row.append(format_mean_se(r["mean"], r["se"], digits, signed=True))
            else:
                row.append("–")
        rows.append(row)
    # Mean drop over shifts: per seed, average over shifts, then mean ± SE over seeds.
    sub = df[["method", "seed", "shift", metric]].dropna(subset=[metric])
    nom = sub[sub["shift"] == NOMINAL].set_index(["method", "seed"])[metric]
    shifted = sub[(sub["shift"] != NOMINAL) & sub["shift"].isin(shifts)]
    mean_row = ["mean over shifts"]
    for m in methods:
        per_seed = []
        for seed, grp in shifted[shifted["method"] == m].groupby("seed"):
            if (m, seed) in nom.index:
                per_seed.append(float(nom.loc[(m, seed)] - grp[metric].mean()))
        if per_seed:
            se = float(np.std(per_seed, ddof=1) / math.sqrt(len(per_seed))) if len(per_seed) > 1 else float("nan")
            mean_row.append(format_mean_se(float(np.mean(per_seed)), se, digits, signed=True))
        else:
            mean_row.append("–")
    if shifts:
        rows.append(mean_row)
    return markdown_table(["test set", *methods], rows)


def _spread_text(df: pd.DataFrame) -> str:
    seeds = sorted(set(df["seed"].dropna().astype(int))) if len(df) else []
    if len(seeds) > 1:
        return f"mean ± standard error over {len(seeds)} seeds"
    return f"1 seed; ± is the binomial standard error of the test set, marked {BINOMIAL_MARK}"


def summary_table(df: pd.DataFrame, methods: Sequence[str] | None = None,
                  shifts: Sequence[str] | None = None, digits: int = 3) -> str:
    """The per-test-set table printed by ``sparsenu benchmark``: linear-probe accuracy
    per test set and method, mean ± SE, change from nominal in brackets."""
    head = f"Linear-probe accuracy on frozen embeddings ({_spread_text(df)}; in brackets: change from nominal)"
    return head + "\n" + metric_table(df, "accuracy", methods, shifts, digits, with_drop=True)


def render_report(
    df: pd.DataFrame,
    *,
    title: str = "sparsenu benchmark",
    methods: Sequence[str] | None = None,
    shifts: Sequence[str] | None = None,
    shift_descriptions: Mapping[str, str] | None = None,
    plots: Sequence[str] = (),
    notes: Sequence[str] = (),
    digits: int = 3,
    head_sections: Sequence[str] = (),
    accuracy_marks: Mapping[tuple[str, str], str] | None = None,
    extra_sections: Sequence[str] = (),
    selection_note: str | None = None,
    shift_rows: Sequence[Sequence[str]] | None = None,
) -> str:
    """The markdown report.

    Parameters
    ----------
    df : DataFrame with :data:`RESULT_COLUMNS`
    title : str
    methods, shifts : order of columns / rows (default: order of appearance)
    shift_descriptions : shift name -> human description (e.g. ``lifetime_us = 500``)
    plots : relative paths of images to embed
    notes : extra paragraphs (e.g. on data sizes)
    head_sections : markdown blocks placed right after the introduction (summary, conclusion)
    accuracy_marks : (method, shift) -> significance mark of the accuracy table
    extra_sections : markdown blocks placed after the per-test-set tables
    selection_note : replaces the default model-selection paragraph
    shift_rows : rows ``[name, kind, description, events]`` of the test-set table
        (default: from ``shift_descriptions``)
    """
    methods, shifts = _orders(df, methods, shifts)
    seeds = sorted(set(df["seed"].dropna().astype(int))) if len(df) else []
    parts = [f"# {title}", ""]
    parts.append(f"Methods: {', '.join(methods)}. Seeds: {', '.join(map(str, seeds))}. "
                 f"Cells: {_spread_text(df)}.")
    parts.append("")
    parts.append(selection_note or (
        "**Model selection.** Every checkpoint evaluated here is the trainer's `best.pt`, chosen "
        "on the *nominal* validation set. Labels of shifted data are never used for training, "
        "checkpoint selection or probe fitting: the linear probe (StandardScaler + logistic "
        "regression) and the kNN probe are fitted on embeddings of labelled nominal training "
        "events without augmentation, with the encoder frozen and the projection head dropped. "
        "Selecting checkpoints on labelled shifted data would flatter domain-adaptation methods."))
    parts.append("")
    for block in head_sections:
        parts += [block.rstrip(), ""]
    if shift_rows is not None or shift_descriptions:
        parts.append("## Test sets")
        parts.append("")
        parts.append("Each shifted test set re-runs only the detector stage of the same nominal "
                     "test events, so every difference is the detector's.")
        parts.append("")
        if shift_rows is not None:
            parts.append(markdown_table(["test set", "kind", "detector", "events"], shift_rows))
        else:
            assert shift_descriptions is not None
            parts.append(markdown_table(["test set", "detector"],
                                        [[s, shift_descriptions.get(s, "")] for s in shifts]))
        parts.append("")
    sections = [
        ("accuracy", "Linear-probe accuracy (change from nominal in brackets)", True),
        ("balanced_accuracy", None, False),
        ("knn_accuracy", None, False),
        ("head_accuracy", "Classifier-head accuracy (the model's own head; for contrastive runs "
                          "a head fitted after training on frozen nominal embeddings)", False),
        ("ece", None, False),
        ("head_ece", None, False),
        ("sensitivity", None, False),
    ]
    for metric, title_, with_drop in sections:
        if metric not in df.columns or df[metric].notna().sum() == 0:
            continue
        if metric == "sensitivity":
            d = df[df["shift"] != NOMINAL]
            if d[metric].notna().sum() == 0:
                continue
            shown_shifts = [s for s in shifts if s != NOMINAL]
        else:
            d, shown_shifts = df, list(shifts)
        shown_methods = [m for m in methods if d.loc[d["method"] == m, metric].notna().any()]
        parts.append(f"## {title_ or _METRIC_TITLES[metric]}")
        parts.append("")
        marks = accuracy_marks if metric == "accuracy" else None
        parts.append(metric_table(d, metric, shown_methods, shown_shifts, digits, with_drop=with_drop, marks=marks))
        parts.append("")
        if metric == "accuracy":
            if len(shifts) > 1:
                parts.append("### Drop from nominal (nominal − shifted; positive = worse)")
                parts.append("")
                parts.append(drop_table(df, metric, methods, shifts, digits))
                parts.append("")
            for block in extra_sections:
                parts += [block.rstrip(), ""]
    if plots:
        parts.append("## Plots")
        parts.append("")
        for p in plots:
            parts.append(f"![{Path(p).stem}]({p})")
            parts.append("")
    for n in notes:
        parts.append(n)
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"
