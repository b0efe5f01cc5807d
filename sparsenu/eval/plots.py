"""Benchmark plots (matplotlib, Agg backend: no display needed).

- accuracy versus each shifted detector parameter, one line per method, mean ±
  standard error over seeds, the nominal value marked (only numeric values: a model
  change such as ``recombination: birks`` and multi-parameter throws have no curve);
- accuracy versus severity level (0 = nominal .. 5) per severity axis;
- a 2D PCA projection of frozen embeddings coloured by class, nominal detector
  next to a shifted one (the PCA is fitted on the nominal embeddings and applied
  to both, so the two panels share axes and any displacement is the detector's).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["plot_accuracy_vs_shift", "plot_accuracy_vs_severity", "plot_projection", "PARAMETER_LABELS"]

#: Axis labels (with units) of DetectorConfig parameters.
PARAMETER_LABELS = {
    "crosstalk_scale": "optical crosstalk [x nominal leak per face]",
    "lifetime_us": "electron lifetime [us]",
    "diffusion_t_cm2_us": "transverse diffusion [cm$^2$/us]",
    "diffusion_l_cm2_us": "longitudinal diffusion [cm$^2$/us]",
    "field_kv_cm": "drift field [kV/cm]",
    "drift_velocity_mm_us": "drift velocity [mm/us]",
    "noise": "noise [ADC rms]",
    "threshold": "threshold [ADC]",
    "gain": "gain [ADC / electron]",
    "dead_channel_fraction": "dead-channel fraction",
}

_LOG_PARAMETERS = {"lifetime_us"}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def _numeric(values: pd.Series) -> pd.Series:
    """Values as floats; non-numeric (a model name) -> NaN."""
    return pd.to_numeric(values, errors="coerce")


def _se(v: np.ndarray) -> float:
    return float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0


def _series(df: pd.DataFrame, method: str, parameter: str, nominal_value: float | None, metric: str):
    """(x, mean, se) sorted by x for one method along one parameter (numeric values only)."""
    sub = df[(df["method"] == method) & (df["parameter"] == parameter)].copy()
    sub["_x"] = _numeric(sub["value"])
    sub = sub.dropna(subset=["_x"])
    pts = [(float(v), g.groupby("seed")[metric].mean().dropna().to_numpy()) for v, g in sub.groupby("_x")]
    if nominal_value is not None and isinstance(nominal_value, (int, float)) and not isinstance(nominal_value, bool):
        nom = df[(df["method"] == method) & (df["shift"] == "nominal")][metric].dropna().to_numpy()
        if len(nom):
            pts.append((float(nominal_value), nom))
    pts = [(x, v) for x, v in pts if len(v)]
    pts.sort(key=lambda t: t[0])
    x = np.array([p[0] for p in pts])
    mean = np.array([p[1].mean() for p in pts])
    se = np.array([_se(p[1]) for p in pts])
    return x, mean, se


def _draw_parameter(ax, df, parameter, methods, nominal_value, metric, chance):
    for i, m in enumerate(methods):
        x, mean, std = _series(df, m, parameter, nominal_value, metric)
        if len(x) == 0:
            continue
        ax.errorbar(x, mean, yerr=std, marker="o", ms=4, capsize=3, lw=1.5, label=m, color=f"C{i}")
    if nominal_value is not None:
        ax.axvline(float(nominal_value), color="0.5", ls="--", lw=1)  # callers pass numeric values only
    if chance is not None:
        ax.axhline(chance, color="0.7", ls=":", lw=1)
    if parameter in _LOG_PARAMETERS:
        ax.set_xscale("log")
    xs = sorted(set(np.round(_numeric(df.loc[df["parameter"] == parameter, "value"]).dropna().astype(float), 12))
                | ({float(nominal_value)} if nominal_value is not None else set()))
    if xs:
        from matplotlib.ticker import NullFormatter

        ax.set_xticks(xs)
        ax.set_xticklabels([f"{x:g}" for x in xs], rotation=30 if len(xs) > 4 else 0, fontsize=8)
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(PARAMETER_LABELS.get(parameter, parameter))
    ax.grid(alpha=0.3)


def plot_accuracy_vs_shift(
    df: pd.DataFrame,
    out_dir: str | Path,
    nominal_values: Mapping[str, float],
    methods: Sequence[str] | None = None,
    metric: str = "accuracy",
    chance: float | None = None,
    grid_name: str = "accuracy_vs_shift.png",
) -> list[Path]:
    """Accuracy versus each shifted detector parameter, one line per method.

    Parameters
    ----------
    df : DataFrame
        Results with columns method, seed, shift, parameter, value and ``metric``.
        Rows of the nominal test set have shift ``"nominal"``.
    out_dir : path
        Directory for the PNGs.
    nominal_values : mapping parameter -> nominal value
        Adds the nominal test set as the point at the nominal value (dashed line).
    methods : order of the lines (default: order of appearance)
    metric : column plotted
    chance : float, optional
        Horizontal dotted line (e.g. 1 / n_classes).
    grid_name : str
        File name of the grid with every parameter.

    Returns
    -------
    list of Path: ``<metric>_vs_<parameter>.png`` per parameter, then the grid.
    """
    plt = _plt()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    methods = list(methods) if methods is not None else list(dict.fromkeys(df["method"]))
    numeric = df[_numeric(df["value"]).notna()]
    params = [p for p in dict.fromkeys(numeric["parameter"].dropna()) if p]
    nominal_values = {k: v for k, v in nominal_values.items()
                      if isinstance(v, (int, float)) and not isinstance(v, bool)}
    ylabel = metric.replace("_", " ")
    paths = []
    for p in params:
        fig, ax = plt.subplots(figsize=(5.0, 3.6))
        _draw_parameter(ax, df, p, methods, nominal_values.get(p), metric, chance)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"{metric}_vs_{_safe(p)}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    if params:
        ncol = min(3, len(params))
        nrow = math.ceil(len(params) / ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.2 * nrow), squeeze=False,
                                 sharey=True)
        for ax, p in zip(axes.flat, params):
            _draw_parameter(ax, df, p, methods, nominal_values.get(p), metric, chance)
        for ax in axes.flat[len(params):]:
            ax.set_visible(False)
        for ax in axes[:, 0]:
            ax.set_ylabel(ylabel)
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper center", ncol=min(len(methods), 6), fontsize=9,
                   bbox_to_anchor=(0.5, 1.0))
        fig.tight_layout(rect=(0, 0, 1, 0.94 if nrow > 1 else 0.88))
        path = out_dir / grid_name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_accuracy_vs_severity(
    df: pd.DataFrame,
    out_dir: str | Path,
    methods: Sequence[str] | None = None,
    metric: str = "accuracy",
    chance: float | None = None,
    name: str = "accuracy_vs_severity.png",
) -> Path | None:
    """Accuracy versus severity level, one panel per severity axis, one line per method.

    Severity 0 is the nominal test set. Points are the mean over seeds, error bars the
    standard error over seeds.

    Parameters
    ----------
    df : DataFrame
        Results with columns method, seed, shift, kind, severity, parameter and ``metric``.
    out_dir : path
    methods : order of the lines
    metric : column plotted
    chance : float, optional
    name : file name

    Returns
    -------
    Path of the PNG, or None when ``df`` has no severity rows.
    """
    sev = df[df["kind"] == "severity"]
    if sev.empty:
        return None
    plt = _plt()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    methods = list(methods) if methods is not None else list(dict.fromkeys(df["method"]))
    axes_names = list(dict.fromkeys(sev["parameter"].dropna()))
    ncol = min(4, len(axes_names))
    nrow = math.ceil(len(axes_names) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 3.0 * nrow), squeeze=False, sharey=True)
    nom = df[df["shift"] == "nominal"]
    for ax, p in zip(axes.flat, axes_names):
        for i, m in enumerate(methods):
            pts = []
            n0 = nom[nom["method"] == m].groupby("seed")[metric].mean().dropna().to_numpy()
            if len(n0):
                pts.append((0, n0))
            sub = sev[(sev["method"] == m) & (sev["parameter"] == p)]
            for level, g in sub.groupby("severity"):
                pts.append((int(level), g.groupby("seed")[metric].mean().dropna().to_numpy()))
            pts = sorted((x, v) for x, v in pts if len(v))
            if not pts:
                continue
            ax.errorbar([x for x, _ in pts], [v.mean() for _, v in pts], yerr=[_se(v) for _, v in pts],
                        marker="o", ms=3, capsize=2, lw=1.2, label=m, color=f"C{i % 10}")
        if chance is not None:
            ax.axhline(chance, color="0.7", ls=":", lw=1)
        ax.set_title(PARAMETER_LABELS.get(p, p), fontsize=9)
        ax.set_xticks(range(6))
        ax.set_xlabel("severity (0 = nominal)")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(axes_names):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(metric.replace("_", " "))
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=min(len(methods), 6), fontsize=8,
               bbox_to_anchor=(0.5, 1.0))
    legend_rows = math.ceil(len(methods) / 6)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.06 * legend_rows / max(nrow, 1) - 0.02))
    path = out_dir / name
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path


def plot_projection(
    emb_nominal: np.ndarray,
    labels_nominal: np.ndarray,
    emb_shifted: np.ndarray,
    labels_shifted: np.ndarray,
    path: str | Path,
    *,
    class_names: Sequence[str] | None = None,
    title: str = "",
    shifted_label: str = "shifted",
    max_points: int = 2000,
    seed: int = 0,
) -> Path:
    """2D PCA projection of embeddings coloured by class, nominal | shifted.

    Parameters
    ----------
    emb_nominal : array [E1, D]
    labels_nominal : array [E1] int
    emb_shifted : array [E2, D]
    labels_shifted : array [E2] int
    path : path of the PNG
    class_names : names of labels 0..K-1
    title : figure title (e.g. the method)
    shifted_label : title of the right panel
    max_points : subsample each panel to at most this many points
    seed : subsampling seed

    Returns
    -------
    Path of the PNG.
    """
    from sklearn.decomposition import PCA

    plt = _plt()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    emb_nominal = np.asarray(emb_nominal, dtype=np.float64)
    emb_shifted = np.asarray(emb_shifted, dtype=np.float64)
    # Centre/scale on nominal so that one dominant dimension does not hide the rest.
    mu = emb_nominal.mean(0)
    sd = emb_nominal.std(0) + 1e-8
    n_comp = max(1, min(2, emb_nominal.shape[1], len(emb_nominal)))
    pca = PCA(n_components=n_comp).fit((emb_nominal - mu) / sd)

    def proj(e):
        p = pca.transform((e - mu) / sd)
        return p if p.shape[1] == 2 else np.concatenate([p, np.zeros((len(p), 1))], 1)

    rng = np.random.default_rng(seed)
    panels = []
    for e, lab in ((emb_nominal, labels_nominal), (emb_shifted, labels_shifted)):
        lab = np.asarray(lab)
        idx = np.arange(len(e))
        if len(idx) > max_points:
            idx = np.sort(rng.choice(len(e), max_points, replace=False))
        panels.append((proj(e[idx]) if len(idx) else np.zeros((0, 2)), lab[idx]))
    allp = np.concatenate([p for p, _ in panels]) if sum(len(p) for p, _ in panels) else np.zeros((1, 2))
    lo, hi = np.percentile(allp, 0.5, axis=0), np.percentile(allp, 99.5, axis=0)
    pad = 0.05 * (hi - lo + 1e-9)
    classes = sorted(set(np.concatenate([labels_nominal, labels_shifted]).astype(int).tolist()))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), sharex=True, sharey=True)
    for ax, (p, lab), name in zip(axes, panels, ("nominal detector", shifted_label)):
        for c in classes:
            m = lab == c
            cname = class_names[c] if class_names is not None and 0 <= c < len(class_names) else str(c)
            ax.scatter(p[m, 0], p[m, 1], s=6, alpha=0.6, color=f"C{c % 10}", label=cname,
                       rasterized=True)
        ax.set_title(name)
        ax.set_xlabel("PC 1 (fit on nominal)")
        ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
        ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("PC 2")
    axes[1].legend(fontsize=8, markerscale=2, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
