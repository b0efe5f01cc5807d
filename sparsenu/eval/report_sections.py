"""Statistical sections of the benchmark report (markdown), from cached results only.

- :func:`summary_section`: per method, nominal accuracy, mean over shifted sets, worst set and
  mean drop (each mean ± SE over seeds with a bootstrap interval), and the paired differences
  of mean shifted accuracy and mean drop from the baseline with significance marks;
- :func:`conclusion_sentence`: one sentence stating what those paired intervals support;
- :func:`difference_section`: per test set, method − baseline with a paired interval;
- :func:`significance_marks`: marks for the per-test-set accuracy table;
- :func:`selection_section`: nominal-validation selection (headline) next to oracle selection
  (upper bound) when the suite ran a hyper-parameter search;
- :func:`confusion_section`: row-normalised confusion matrices, nominal and worst set.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from sparsenu.eval.report import NOMINAL, format_mean_se, markdown_table
from sparsenu.eval.stats import BootstrapCI, mean_and_se

__all__ = ["summary_section", "conclusion_sentence", "difference_section", "significance_marks",
           "selection_section", "confusion_section", "SIG_BETTER", "SIG_WORSE"]

#: Marks of a significant difference from the baseline (better / worse accuracy).
SIG_BETTER, SIG_WORSE = "▲", "▼"


def _f(x: float, digits: int = 3, signed: bool = False) -> str:
    return f"{round(float(x), digits) + 0.0:{'+' if signed else ''}.{digits}f}"


def _ci(ci: BootstrapCI, digits: int = 3) -> str:
    mark = " *" if ci.significant else ""
    return f"{_f(ci.estimate, digits, True)} [{_f(ci.low, digits, True)}, {_f(ci.high, digits, True)}]{mark}"


def _pct(c: float) -> str:
    return f"{100 * c:.1f}%"


def summary_section(stats: Any, methods: Sequence[str], digits: int = 3) -> str:
    """The headline table: summary figures of every method and their differences from the baseline."""
    b = stats.baseline
    rows = []
    for m in methods:
        if m not in stats.summary:
            continue
        fig = stats.summary[m]
        cells = [m]
        for key in ("nominal", "mean_shifted", "worst", "mean_drop"):
            f = fig[key]
            text = format_mean_se(f.estimate, f.se_seeds, digits, signed=key == "mean_drop")
            text += f" [{_f(f.ci_low, digits, key == 'mean_drop')}, {_f(f.ci_high, digits, key == 'mean_drop')}]"
            if key == "worst":
                text += f" ({f.detail})"
            cells.append(text)
        ps = stats.paired_summary.get(m)
        cells += [_ci(ps["mean_shifted"], digits), _ci(ps["mean_drop"], digits)] if ps else ["baseline", "baseline"]
        rows.append(cells)
    conf = _pct(stats.summary_confidence)
    first = next(iter(stats.summary.values()))["nominal"] if stats.summary else None
    head = (f"## Summary over the shifted test sets (compared with `{b}`)\n\n"
            "Per method: nominal accuracy, the mean over all shifted test sets, the worst shifted set "
            "and the mean drop from nominal (an mCE analogue; positive = accuracy lost). Cells are "
            "mean ± standard error over seeds (training randomness) and, in brackets, a 95% two-stage "
            "bootstrap interval (seeds, then test events). Here a shifted detector's lost events count as "
            f"misclassified. The last two columns are the paired difference method − `{b}` with its "
            f"{conf} interval (Bonferroni-corrected over the compared methods); `*` marks an interval "
            "that excludes 0. A negative Δ mean drop means the method loses less accuracy under shift.")
    if first is not None and math.isnan(first.se_seeds):
        head += " With one seed the spread over seeds is unknown and only the bootstrap interval is shown."
    return head + "\n\n" + markdown_table(
        ["method", "nominal", "mean shifted", "worst shifted set", "mean drop",
         f"Δ mean shifted vs {b}", f"Δ mean drop vs {b}"], rows)


def conclusion_sentence(stats: Any, methods: Sequence[str], n_seeds: int, n_events: int,
                        digits: int = 3) -> str:
    """One sentence: which methods differ significantly from the baseline, and nothing stronger."""
    b = stats.baseline
    clauses = []
    for m in methods:
        ps = stats.paired_summary.get(m)
        if not ps:
            continue
        parts = []
        ms, md = ps["mean_shifted"], ps["mean_drop"]
        if ms.significant:
            parts.append(f"a {'higher' if ms.estimate > 0 else 'lower'} mean shifted accuracy ({_ci(ms, digits)[:-2]})")
        if md.significant:
            parts.append(f"a {'smaller' if md.estimate < 0 else 'larger'} mean drop ({_ci(md, digits)[:-2]})")
        if parts:
            clauses.append(f"`{m}` has " + " and ".join(parts))
    basis = (f"paired bootstrap over {n_seeds} seed{'s' if n_seeds != 1 else ''} and {n_events} test events "
             f"per set, {_pct(stats.summary_confidence)} intervals Bonferroni-corrected over "
             f"{len(stats.paired_summary)} compared methods")
    if not clauses:
        return (f"**Conclusion.** No method differs significantly from `{b}` in mean shifted accuracy or in "
                f"mean drop ({basis}), so these results do not show that any method is more robust to the "
                f"tested detector shifts than `{b}`.")
    if n_seeds < 2:
        # one seed: the intervals hold the test events' sampling only, not training randomness
        return (f"**Conclusion.** With one training seed these intervals cover only the sampling of test events, "
                f"not the seed-to-seed variation of training, so they establish no difference between methods; "
                f"taken at face value, compared with `{b}` ({basis}), " + "; ".join(clauses)
                + ", and nothing else is significant.")
    return (f"**Conclusion.** Compared with `{b}` ({basis}), " + "; ".join(clauses)
            + "; no other difference in mean shifted accuracy or mean drop is significant, and these "
            "statements hold for this simulation, training size and set of shifts only.")


def significance_marks(stats: Any) -> dict[tuple[str, str], str]:
    """(method, test set) -> ``▲`` / ``▼`` where method − baseline is significant on that set."""
    out = {}
    for m, by_set in stats.per_set.items():
        for s, ci in by_set.items():
            if ci.significant:
                out[(m, s)] = SIG_BETTER if ci.estimate > 0 else SIG_WORSE
    return out


def difference_section(stats: Any, methods: Sequence[str], sets: Sequence[str], digits: int = 3) -> str:
    """Per test set: accuracy of each method minus the baseline, paired bootstrap interval."""
    b = stats.baseline
    shown = [m for m in methods if m in stats.per_set]
    if not shown:
        return ""
    ci0 = next(iter(stats.per_set[shown[0]].values()))
    rows = [[s, *(_ci(stats.per_set[m][s], digits) if s in stats.per_set[m] else "–" for m in shown)]
            for s in sets]
    return (f"### Difference from `{b}` per test set\n\n"
            f"Linear-probe accuracy of each method minus `{b}` on the same events, with a paired two-stage "
            f"bootstrap {_pct(ci0.confidence)} interval ({ci0.n_boot} replicates; seeds, then events); `*` (and "
            f"{SIG_BETTER}/{SIG_WORSE} in the accuracy table) marks an interval that excludes 0. These per-set "
            "intervals are not corrected for the number of comparisons: about 1 in 20 non-differences is "
            "expected to be marked by chance.\n\n"
            + markdown_table(["test set", *shown], rows))


def selection_section(trials: pd.DataFrame, params: Mapping[str, Sequence[Mapping[str, Any]]],
                      methods: Sequence[str], digits: int = 3) -> str:
    """Nominal-validation selection (honest) next to oracle selection (upper bound).

    Parameters
    ----------
    trials : DataFrame
        One row per (method, seed, trial, test set) with ``accuracy`` and ``val_accuracy``.
    params : method -> list of trial hyper-parameters (trial index = position)
    """
    from sparsenu.eval.hpsearch import select_nominal, select_oracle, selected_rows

    df = trials.rename(columns={"val_accuracy": "val_metric"})
    honest = select_nominal(df)
    oracle = select_oracle(df, nominal=NOMINAL)
    rows = []
    for m in methods:
        if m not in set(df["method"]):
            continue
        cells = [m]
        for sel in (honest, oracle):
            r = selected_rows(df[df["method"] == m], sel)
            nom = r[r["shift"] == NOMINAL].sort_values("seed")["accuracy"].to_numpy()
            sh = r[r["shift"] != NOMINAL].groupby("seed")["accuracy"].mean().to_numpy()
            chosen = sel[sel["method"] == m].sort_values("seed")["trial"].astype(int).tolist()
            for v in (nom, sh):
                mean, se = mean_and_se(v) if len(v) else (float("nan"), float("nan"))
                cells.append(format_mean_se(mean, se, digits))
            cells.append(", ".join(map(str, chosen)))
        rows.append(cells)
    n_trials = int(df["trial"].max()) + 1
    table = markdown_table(["method", "nominal-val: nominal", "nominal-val: mean shifted", "trials chosen",
                            "oracle: nominal", "oracle: mean shifted (upper bound)", "trials chosen"], rows)
    lines = []
    for m in methods:
        for t, p in enumerate(params.get(m, [])):
            text = ", ".join(f"{k} = {v:.3g}" if isinstance(v, float) else f"{k} = {v}" for k, v in p.items())
            lines.append(f"- `{m}` trial {t}: {text or 'configured values'}")
    return ("## Hyper-parameter search and selection rules\n\n"
            f"Every method had the same budget of {n_trials} trials (trial 0: its configured hyper-parameters; "
            "the others drawn at random from its search space), each trained with every seed. **Nominal-val** "
            "(the honest rule, used by every other table of this report) picks, per seed, the trial with the best "
            "linear-probe accuracy on the labelled *nominal validation* set; it reads nothing else. **Oracle** "
            "picks the trial with the best mean accuracy over the labelled *shifted* test sets: it selects on the "
            "data it is scored on, so it is an optimistic upper bound, never a result.\n\n" + table
            + "\n\nTrials:\n\n" + "\n".join(lines))


def confusion_section(stats: Any, methods: Sequence[str], class_names: Sequence[str]) -> str:
    """Row-normalised confusion matrices (percent of each true class), nominal / worst set."""
    parts = ["## Confusion matrices",
             "",
             "Linear probe, all seeds summed; rows: true class, columns: predicted class; each cell is the "
             "percentage of the true class on the nominal test set / on the method's worst shifted set. "
             "Electron/photon and muon/pion are the hard pairs."]
    for m in methods:
        if m not in stats.confusion:
            continue
        nom, worst, wcm = stats.confusion[m]
        parts += ["", f"**{m}** — nominal / `{worst}`", ""]
        rn = nom / np.maximum(nom.sum(1, keepdims=True), 1)
        rw = wcm / np.maximum(wcm.sum(1, keepdims=True), 1)
        rows = [[class_names[i], *(f"{100 * rn[i, j]:.0f} / {100 * rw[i, j]:.0f}" for j in range(len(class_names)))]
                for i in range(len(class_names))]
        parts.append(markdown_table(["true \\ predicted", *class_names], rows))
    return "\n".join(parts)
