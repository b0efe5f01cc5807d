"""sparsenu.eval.hpsearch: reproducible random search, equal budget, the two selection rules."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from sparsenu.augment.transforms import build_augmentation, paper_augmentation
from sparsenu.config import from_dict
from sparsenu.eval.hpsearch import (
    ALPHA_SPACE,
    AUGMENT_STRENGTH_KEY,
    DEFAULT_SEARCH_SPACE,
    apply_trial,
    augment_spec,
    choice,
    compare_selection,
    loguniform,
    sample_trials,
    select_nominal,
    select_oracle,
    selected_rows,
    uniform,
)
from sparsenu.train.config import ExperimentConfig

#: The study's five methods as suite ``train`` blocks (cfg/quickstart.yaml).
METHOD_TRAIN = {
    "classifier": {"method": "classifier"},
    "classifier_aug": {"method": "classifier_aug"},
    "dann": {"method": "dann", "data": {"simulate": {"n_target": 10}}},
    "simclr": {"method": "contrastive", "loss": {"alpha": 0.0, "temperature": 0.1}},
    "supcon": {"method": "contrastive", "loss": {"alpha": 1.0, "temperature": 0.1}},
}


# ----------------------------------------------------------------------------- sampling


def test_sample_trials_reproducible_and_extendable():
    space = DEFAULT_SEARCH_SPACE["simclr"]
    a = sample_trials(space, 6, seed=3)
    assert a == sample_trials(space, 6, seed=3)
    assert a[0] == {}  # trial 0: the method's configured values
    assert all(set(t) == set(space) for t in a[1:])
    assert sample_trials(space, 3, seed=3) == a[:3]  # a longer search extends a shorter one
    assert sample_trials(space, 6, seed=4)[1] != a[1]
    # A key's value does not depend on which other keys are searched ...
    only_lr = sample_trials({"optim.lr": space["optim.lr"]}, 6, seed=3)
    assert [t["optim.lr"] for t in only_lr[1:]] == [t["optim.lr"] for t in a[1:]]
    # ... so every method gets the same lr candidates (common random numbers).
    other = sample_trials(DEFAULT_SEARCH_SPACE["dann"], 6, seed=3)
    assert [t.get("optim.lr") for t in other] == [t.get("optim.lr") for t in a]
    assert len(sample_trials(space, 4, seed=0, first_default=False)[0]) == len(space)
    with pytest.raises(ValueError):
        sample_trials(space, 0)


def test_distributions():
    n = 4000
    trials = sample_trials({"lr": loguniform(1e-4, 1e-2), "a": uniform(0.0, 1.0), "c": choice(["x", "y", "z"])},
                           n, seed=0, first_default=False)
    lr = np.array([t["lr"] for t in trials])
    a = np.array([t["a"] for t in trials])
    c = [t["c"] for t in trials]
    assert lr.min() >= 1e-4 and lr.max() < 1e-2 and a.min() >= 0 and a.max() < 1
    # log-uniform: each of the two decades holds half the draws (binomial sd 0.008 at n = 4000)
    assert np.mean(lr < 1e-3) == pytest.approx(0.5, abs=0.04)
    assert np.mean(a < 0.25) == pytest.approx(0.25, abs=0.04)
    assert {k: c.count(k) / n for k in "xyz"} == pytest.approx({"x": 1 / 3, "y": 1 / 3, "z": 1 / 3}, abs=0.04)
    with pytest.raises(ValueError):
        loguniform(0.0, 1.0)
    with pytest.raises(ValueError):
        uniform(1.0, 1.0)
    with pytest.raises(ValueError):
        choice([])
    with pytest.raises(ValueError, match="expected"):
        sample_trials({"x": (0, 1)}, 2)  # type: ignore[dict-item]


def test_default_space_covers_the_study():
    assert set(DEFAULT_SEARCH_SPACE) == set(METHOD_TRAIN)
    assert AUGMENT_STRENGTH_KEY not in DEFAULT_SEARCH_SPACE["classifier"]  # no augmentation by definition
    assert "dann.weight" in DEFAULT_SEARCH_SPACE["dann"]
    for m in ("simclr", "supcon"):
        assert "loss.temperature" in DEFAULT_SEARCH_SPACE[m] and "loss.alpha" not in DEFAULT_SEARCH_SPACE[m]
    for space in DEFAULT_SEARCH_SPACE.values():  # the published lr 1e-4 .. CPU-preset lr 2e-3 are inside
        assert space["optim.lr"].lo <= 1e-4 and space["optim.lr"].hi > 2e-3


def test_trials_make_valid_experiment_configs():
    for method, train in METHOD_TRAIN.items():
        space = {**DEFAULT_SEARCH_SPACE[method], **(ALPHA_SPACE if method == "simclr" else {})}
        for trial in sample_trials(space, 4, seed=1):
            merged = apply_trial(train, trial)
            cfg = from_dict(ExperimentConfig, merged, source=f"{method} {trial}")
            build_augmentation(cfg.resolved_augment)
            if "optim.lr" in trial:
                assert cfg.optim.lr == trial["optim.lr"]
            if "loss.temperature" in trial:
                assert cfg.loss.temperature == trial["loss.temperature"]
            if "dann.weight" in trial:
                assert cfg.dann.weight == trial["dann.weight"]
    train = METHOD_TRAIN["simclr"]
    assert apply_trial(train, {"loss.temperature": 0.2}) == {"method": "contrastive",
                                                              "loss": {"alpha": 0.0, "temperature": 0.2}}
    assert train["loss"]["temperature"] == 0.1  # the input is not modified
    with pytest.raises(ValueError, match="is not a section in the training config"):
        apply_trial({"optim": 3}, {"optim.lr": 1e-3})


def test_augment_strength_one_is_the_paper_set():
    ours = build_augmentation(augment_spec(1.0))
    ref = paper_augmentation()

    def params(rc):
        return [(type(t).__name__, {k: v for k, v in vars(t).items() if not k.startswith("_")})
                for t in rc.transforms] + [rc.n, rc.replacement]

    assert params(ours) == params(ref)
    strong = build_augmentation(augment_spec(2.0))
    by_name = {type(t).__name__: t for t in strong.transforms}
    assert by_name["VoxelDropout"].p == pytest.approx(0.2)
    assert by_name["ChargeSmear"].voxel_sigma == pytest.approx(0.5)
    assert by_name["CoordinateJitter"].sigma_voxels == pytest.approx(2.0)


# ----------------------------------------------------------------------------- selection


def _frame() -> pd.DataFrame:
    """2 methods x 2 seeds x 4 trials x 3 test sets with known best trials.

    Nominal validation is best for trial 2 (method a) / trial 3 (method b); mean shifted
    accuracy is best for trial 1 in every (method, seed); nominal *test* accuracy is best for
    trial 0 (which neither rule may pick for that reason).
    """
    val = {"a": [0.50, 0.70, 0.90, 0.60], "b": [0.40, 0.55, 0.60, 0.80]}
    shifted = [0.50, 0.80, 0.40, 0.45]
    rows = []
    for m, seed, trial, test_set in itertools.product("ab", (0, 1), range(4), ("nominal", "s1", "s2")):
        acc = 0.99 if (test_set == "nominal" and trial == 0) else (
            0.85 if test_set == "nominal" else shifted[trial] + (0.02 if test_set == "s1" else -0.02) + 0.01 * seed)
        rows.append({"method": m, "seed": seed, "trial": trial, "shift": test_set,
                     "val_metric": val[m][trial] + 0.001 * seed, "accuracy": acc})
    return pd.DataFrame(rows)


def test_select_nominal_picks_best_validation():
    sel = select_nominal(_frame())
    assert sel[["method", "seed", "trial"]].to_dict("records") == [
        {"method": "a", "seed": 0, "trial": 2}, {"method": "a", "seed": 1, "trial": 2},
        {"method": "b", "seed": 0, "trial": 3}, {"method": "b", "seed": 1, "trial": 3}]


def test_select_nominal_never_reads_test_accuracy():
    df = _frame()
    honest = select_nominal(df)
    rng = np.random.default_rng(0)
    corrupted = df.copy()
    shifted = corrupted["shift"] != "nominal"
    corrupted.loc[shifted, "accuracy"] = rng.random(shifted.sum())  # scrambled shifted labels
    pd.testing.assert_frame_equal(select_nominal(corrupted), honest)
    corrupted.loc[shifted & (corrupted["trial"] == 0), "accuracy"] = 1.0  # make trial 0 look perfect
    pd.testing.assert_frame_equal(select_nominal(corrupted), honest)
    corrupted["accuracy"] = np.nan  # no test accuracy at all
    pd.testing.assert_frame_equal(select_nominal(corrupted), honest)
    pd.testing.assert_frame_equal(select_nominal(df.drop(columns="accuracy")), honest)
    # ... while the oracle does follow the shifted accuracies
    assert set(select_oracle(df)["trial"]) == {1}
    scrambled = df.copy()
    scrambled.loc[(scrambled["shift"] != "nominal") & (scrambled["trial"] == 0), "accuracy"] = 1.0
    assert set(select_oracle(scrambled)["trial"]) == {0}


def test_select_oracle_ignores_nominal_and_scores_mean_shifted():
    sel = select_oracle(_frame())
    assert set(sel["trial"]) == {1}  # not trial 0, the best on the nominal test set
    # method a, seed 1, trial 1: (0.80 + 0.02 + 0.01 + 0.80 - 0.02 + 0.01) / 2
    row = sel[(sel["method"] == "a") & (sel["seed"] == 1)].iloc[0]
    assert row["shifted_accuracy"] == pytest.approx(0.81)
    with pytest.raises(ValueError, match="no shifted"):
        select_oracle(_frame().query("shift == 'nominal'"))


def test_ties_and_inconsistent_validation():
    df = _frame()
    df.loc[df["method"] == "a", "val_metric"] = 0.5  # all trials tie -> lowest trial
    assert set(select_nominal(df).query("method == 'a'")["trial"]) == {0}
    bad = _frame()
    bad.loc[0, "val_metric"] = 0.0  # one test-set row of a trial disagrees with the others
    with pytest.raises(ValueError, match="differs"):
        select_nominal(bad)
    missing = _frame()
    missing.loc[missing["method"] == "a", "val_metric"] = np.nan
    with pytest.raises(ValueError, match="no trial"):
        select_nominal(missing)


def test_compare_selection_side_by_side():
    df = _frame()
    table = compare_selection(df).set_index(["method", "shift"])
    # honest: method a picks trial 2 -> s1 accuracy 0.40 + 0.02 + 0.01 * seed, mean over seeds 0.425
    assert table.loc[("a", "s1"), "nominal_sel"] == pytest.approx(0.425)
    assert table.loc[("a", "s1"), "nominal_sel_se"] == pytest.approx(0.005)  # std([.42, .43]) / sqrt 2
    assert table.loc[("a", "s1"), "oracle_sel"] == pytest.approx(0.825)
    assert (table["oracle_sel"].xs("s1", level="shift") >= table["nominal_sel"].xs("s1", level="shift")).all()
    rows = selected_rows(df, select_nominal(df))
    assert len(rows) == 2 * 2 * 3  # (method, seed) x test sets


def test_space_for_follows_the_training_method():
    from sparsenu.eval.hpsearch import space_for

    assert set(space_for({"method": "classifier"})) == {"optim.lr", "optim.weight_decay"}
    assert set(space_for({})) == {"optim.lr", "optim.weight_decay"}  # the ExperimentConfig default
    assert "augment.strength" in space_for({"method": "classifier_aug"})
    assert "dann.weight" in space_for({"method": "dann"})
    con = space_for({"method": "contrastive", "loss": {"alpha": 0.5}})
    assert "loss.temperature" in con and "loss.alpha" not in con  # alpha defines the method
    assert set(space_for({"method": "resim"})) == {"optim.lr", "optim.weight_decay", "loss.temperature"}
    with pytest.raises(ValueError, match="no default search space"):
        space_for({"method": "nope"})
