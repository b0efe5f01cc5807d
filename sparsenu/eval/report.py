"""Results table of a benchmark: files, aggregation over seeds, markdown report.

One row per (method, seed, test set). The test set ``nominal`` is the nominal
detector; every other is a named detector shift applied to the same events.
Aggregation is over seeds: mean and sample standard deviation (ddof = 1; a single
seed has no spread and is printed without ``±``). The *drop* is nominal accuracy
minus shifted accuracy, computed per seed and then aggregated, so the seed-to-seed
correlation between nominal and shifted accuracy does not inflate its spread.
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
    "results_frame",
    "write_results",
    "read_results",
    "format_mean_std",
    "aggregate",
    "metric_table",
    "drop_table",
    "render_report",
    "summary_table",
]

NOMINAL = "nominal"

#: Columns of results.csv / results.json, in order.
RESULT_COLUMNS = (
    "method",
    "seed",
    "shift",
    "parameter",
    "value",
    "accuracy",
    "balanced_accuracy",
    "knn_accuracy",
    "head_accuracy",
    "head_balanced_accuracy",
    "sensitivity",
    "n_events",
)

_METRIC_TITLES = {
    "accuracy": "Linear-probe accuracy",
    "balanced_accuracy": "Linear-probe balanced accuracy",
    "knn_accuracy": "kNN accuracy",
    "head_accuracy": "Classifier-head accuracy",
    "head_balanced_accuracy": "Classifier-head balanced accuracy",
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


def write_results(df: pd.DataFrame, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``results.csv`` and ``results.json`` (a list of row objects, NaN -> null)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / "results.csv", out_dir / "results.json"
    df.to_csv(csv_path, index=False, float_format="%.6g")
    records = [{k: _clean(v) for k, v in r.items()} for r in df.to_dict(orient="records")]
    json_path.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
    return csv_path, json_path


def read_results(path: str | Path) -> pd.DataFrame:
    """Read results.csv or results.json back into a DataFrame."""
    path = Path(path)
    if path.suffix == ".json":
        return results_frame(json.loads(path.read_text(encoding="utf-8")))
    return results_frame(pd.read_csv(path).to_dict(orient="records"))


def format_mean_std(mean: float, std: float, n: int, digits: int = 3, signed: bool = False) -> str:
    """``"0.712 ± 0.013"``; one value (n == 1) -> ``"0.712"``; no value -> ``"–"``."""
    if n == 0 or mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    fmt = f"{{:{'+' if signed else ''}.{digits}f}}"
    text = fmt.format(round(float(mean), digits) + 0.0)  # no "-0.000"
    if n > 1 and std is not None and not math.isnan(std):
        text += f" ± {std:.{digits}f}"
    return text


def aggregate(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean, std (ddof 1) and count of ``metric`` per (method, shift)."""
    sub = df[["method", "shift", metric]].dropna(subset=[metric])
    g = sub.groupby(["method", "shift"], sort=False)[metric]
    out = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "n": g.count()})
    return out.reset_index()


def _orders(df: pd.DataFrame, methods: Sequence[str] | None, shifts: Sequence[str] | None):
    methods = list(methods) if methods is not None else list(dict.fromkeys(df["method"]))
    if shifts is None:
        shifts = list(dict.fromkeys(df["shift"]))
    shifts = list(shifts)
    if NOMINAL in shifts:
        shifts = [NOMINAL] + [s for s in shifts if s != NOMINAL]
    return methods, shifts


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(header)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    sep = "| " + " | ".join("-" * w for w in widths) + " |"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


def metric_table(
    df: pd.DataFrame,
    metric: str = "accuracy",
    methods: Sequence[str] | None = None,
    shifts: Sequence[str] | None = None,
    digits: int = 3,
    with_drop: bool = False,
) -> str:
    """Markdown table: one row per test set (shift), one column per method.

    Cells are ``mean ± std`` over seeds. With ``with_drop`` each shifted cell also
    shows the drop from nominal in brackets, e.g. ``0.650 ± 0.010 (-0.062)``.
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
                cell = format_mean_std(r["mean"], r["std"], int(r["n"]), digits)
            else:
                cell = "–"
            if drops is not None and s != NOMINAL and (m, s) in drops.index and cell != "–":
                d = drops.loc[(m, s)]
                cell += f" ({round(-d['mean'], digits) + 0.0:+.{digits}f})"
            row.append(cell)
        rows.append(row)
    return _markdown(["test set", *methods], rows)


def _drops(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per-seed drop (nominal - shifted) of ``metric``, aggregated over seeds."""
    sub = df[["method", "seed", "shift", metric]].dropna(subset=[metric])
    nom = sub[sub["shift"] == NOMINAL].set_index(["method", "seed"])[metric]
    shifted = sub[sub["shift"] != NOMINAL].copy()
    key = list(zip(shifted["method"], shifted["seed"]))
    shifted["drop"] = [nom.get(k, np.nan) for k in key] - shifted[metric].to_numpy()
    shifted = shifted.dropna(subset=["drop"])
    g = shifted.groupby(["method", "shift"], sort=False)["drop"]
    return pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "n": g.count()}).reset_index()


def drop_table(
    df: pd.DataFrame,
    metric: str = "accuracy",
    methods: Sequence[str] | None = None,
    shifts: Sequence[str] | None = None,
    digits: int = 3,
) -> str:
    """Markdown table of the drop from nominal (nominal - shifted; positive = worse),
    mean ± std over seeds, plus a final row with the mean drop over all shifts."""
    methods, shifts = _orders(df, methods, shifts)
    shifts = [s for s in shifts if s != NOMINAL]
    d = _drops(df, metric)
    agg = d.set_index(["method", "shift"])
    rows = []
    for s in shifts:
        row = [s]
        for m in methods:
            if (m, s) in agg.index:
                r = agg.loc[(m, s)]
                row.append(format_mean_std(r["mean"], r["std"], int(r["n"]), digits, signed=True))
            else:
                row.append("–")
        rows.append(row)
    # Mean drop over shifts: per seed, average over shifts, then mean ± std over seeds.
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
            std = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else float("nan")
            mean_row.append(format_mean_std(float(np.mean(per_seed)), std, len(per_seed), digits,
                                            signed=True))
        else:
            mean_row.append("–")
    if shifts:
        rows.append(mean_row)
    return _markdown(["test set", *methods], rows)


def summary_table(df: pd.DataFrame, methods: Sequence[str] | None = None,
                  shifts: Sequence[str] | None = None, digits: int = 3) -> str:
    """The table printed at the end of ``sparsenu benchmark``: linear-probe accuracy
    per test set and method, mean ± std over seeds, drop from nominal in brackets."""
    seeds = sorted(set(df["seed"].dropna().astype(int))) if len(df) else []
    spread = f"mean ± std over {len(seeds)} seeds" if len(seeds) > 1 else "1 seed"
    head = f"Linear-probe accuracy on frozen embeddings ({spread}; in brackets: change from nominal)"
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
) -> str:
    """The markdown report: accuracy tables, drops, kNN, heads, sensitivity, plots.

    Parameters
    ----------
    df : DataFrame with :data:`RESULT_COLUMNS`
    title : str
    methods, shifts : order of columns / rows (default: order of appearance)
    shift_descriptions : shift name -> human description (e.g. ``lifetime_us = 500``)
    plots : relative paths of images to embed
    notes : extra paragraphs (e.g. on data sizes and run time)
    """
    methods, shifts = _orders(df, methods, shifts)
    seeds = sorted(set(df["seed"].dropna().astype(int))) if len(df) else []
    parts = [f"# {title}", ""]
    parts.append(
        f"Methods: {', '.join(methods)}. Seeds: {', '.join(map(str, seeds))} "
        f"(cells are mean ± std over seeds, sample std; a single seed has no spread)."
    )
    parts.append("")
    parts.append(
        "**Model selection.** Every checkpoint evaluated here is the trainer's `best.pt`, chosen "
        "on the *nominal* validation set. Labels of shifted data are never used for training, "
        "checkpoint selection or probe fitting: the linear probe (StandardScaler + logistic "
        "regression) and the kNN probe are fitted on embeddings of labelled nominal training "
        "events without augmentation, with the encoder frozen and the projection head dropped. "
        "Selecting checkpoints on labelled shifted data would flatter domain-adaptation methods."
    )
    parts.append("")
    if shift_descriptions:
        parts.append("## Test sets")
        parts.append("")
        parts.append("Each shifted test set re-runs only the detector stage of the same nominal "
                     "test events, so every difference is the detector's.")
        parts.append("")
        parts.append(_markdown(["test set", "detector"],
                               [[s, shift_descriptions.get(s, "")] for s in shifts]))
        parts.append("")
    sections = [
        ("accuracy", "Linear-probe accuracy (change from nominal in brackets)", True),
        ("balanced_accuracy", None, False),
        ("knn_accuracy", None, False),
        ("head_accuracy", "Classifier-head accuracy (the model's own head; for contrastive runs "
                          "a head fitted after training on frozen nominal embeddings)", False),
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
            d, shown_shifts = df, shifts
        shown_methods = [m for m in methods if d.loc[d["method"] == m, metric].notna().any()]
        parts.append(f"## {title_ or _METRIC_TITLES[metric]}")
        parts.append("")
        parts.append(metric_table(d, metric, shown_methods, shown_shifts, digits, with_drop=with_drop))
        parts.append("")
        if metric == "accuracy" and len(shifts) > 1:
            parts.append("### Drop from nominal (nominal − shifted; positive = worse)")
            parts.append("")
            parts.append(drop_table(df, metric, methods, shifts, digits))
            parts.append("")
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
