"""The domain-shift suite: config validation, and the tiny suite end to end through the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sparsenu.cli import main
from sparsenu.errors import SparsenuError
from sparsenu.eval.suite import load_suite, resolve_shifts

REPO = Path(__file__).resolve().parents[1]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- config


def test_presets_load_and_resolve():
    from sparsenu.sim import DetectorConfig

    nominal = DetectorConfig()
    from sparsenu.eval.suite.jobs import check_train_configs, method_mapping, method_trials, trial_mapping

    for name in ("suite_tiny", "quickstart", "paper", "study"):
        path = REPO / "cfg" / f"{name}.yaml"
        suite = load_suite(path)
        shifts = {s.name: s for s in resolve_shifts(suite, nominal)}
        assert suite.methods and shifts
        # every method's (and every trial's) merged training config is a valid ExperimentConfig
        maps = {}
        for m in suite.methods:
            base = method_mapping(suite, m, path.parent, str(path))
            for t, params in enumerate(method_trials(suite, base, str(path), m)):
                maps[f"{m} {t}"] = trial_mapping(base, params)
        check_train_configs(maps, str(path))
    q = load_suite(REPO / "cfg" / "quickstart.yaml")
    assert set(q.methods) == {"classifier", "classifier_aug", "dann", "simclr", "supcon"}
    s = {r.name: r for r in resolve_shifts(q, nominal)}
    assert s["noise_x2"].detector.noise == pytest.approx(2 * nominal.noise)
    assert s["threshold_x2"].detector.threshold == pytest.approx(2 * nominal.threshold)
    assert s["gain_m10"].detector.gain == pytest.approx(0.9 * nominal.gain)
    assert s["gain_p10"].detector.gain == pytest.approx(1.1 * nominal.gain)
    assert {v.detector.lifetime_us for k, v in s.items() if k.startswith("lifetime")} == {500, 1000, 5000}
    # the field shift moves the drift velocity too (derived from the field when not fixed)
    assert s["field_045"].detector.vdrift_mm_us < nominal.vdrift_mm_us < s["field_055"].detector.vdrift_mm_us
    assert "drift velocity" in s["field_045"].description
    p = load_suite(REPO / "cfg" / "paper.yaml")
    alphas = sorted(m.train["loss"]["alpha"] for m in p.methods.values() if m.train.get("method") == "contrastive")
    assert alphas == [0.0, 0.25, 0.5, 0.75, 1.0] and len(p.seeds) >= 3
    assert any(m.train.get("method") == "resim" for m in p.methods.values())
    assert s["dead_10"].parameter == "dead_channel_fraction" and s["dead_10"].value == pytest.approx(0.1)
    assert s["recombination_birks"].value == "birks"
    # the study preset: every method, >= 3 seeds, severities with Birks and throws, equal tuning
    # budget, TTA baselines, test sets with a per-seed binomial SE <= 0.01
    from sparsenu.eval.stats import events_for_binomial_se

    st = load_suite(REPO / "cfg" / "study.yaml")
    kinds = {r.kind for r in resolve_shifts(st, nominal)}
    assert {"severity", "model", "throw"} <= kinds and len(st.seeds) >= 3 and st.search.n_trials >= 2
    assert st.data.n_test >= events_for_binomial_se(0.01)
    assert {"classifier", "classifier_aug", "dann", "simclr", "supcon", "rs3l"} <= set(st.methods)
    alphas = sorted(m.train["loss"]["alpha"] for m in st.methods.values() if m.train.get("method") == "contrastive")
    assert alphas == [0.0, 1.0]  # the sweep's ends: its middle points did not fit 2 h on 2 cores
    assert set(st.tta.methods) == {"adabn", "tent"} and st.tta.base and st.report.baseline == "classifier_aug"
    # only detector fields differ from nominal
    assert s["diffusion_4"].detector.replace(diffusion_t_cm2_us=nominal.diffusion_t_cm2_us) == nominal


def test_suite_errors_name_the_problem(tmp_path):
    from sparsenu.sim import DetectorConfig

    base = "methods: {a: {train: {method: classifier}}}\n"
    p = _write(tmp_path / "s.yaml", base + "shifts: {x: {detector: {lifetme_us: 5}}}\n")
    with pytest.raises(SparsenuError, match="lifetme_us.*did you mean 'lifetime_us'"):
        resolve_shifts(load_suite(p), DetectorConfig(), str(p))
    p = _write(tmp_path / "s.yaml", base + "shifts: {nominal: {detector: {lifetime_us: 5}}}\n")
    with pytest.raises(SparsenuError, match="reserved"):
        load_suite(p)
    p = _write(tmp_path / "s.yaml", base + "shifts: {x: {}}\n")
    with pytest.raises(SparsenuError, match="at least one"):
        load_suite(p)
    p = _write(tmp_path / "s.yaml", base + "shifts: {x: {detector: {noise: -1.0}}}\n")
    with pytest.raises(SparsenuError, match="shift 'x'.*noise"):
        resolve_shifts(load_suite(p), DetectorConfig(), str(p))
    p = _write(tmp_path / "s.yaml", "methods: {}\n")
    with pytest.raises(SparsenuError, match="at least one method"):
        load_suite(p)
    p = _write(tmp_path / "s.yaml", base + "eval: {knn_k: 0}\n")
    with pytest.raises(SparsenuError, match="knn_k"):
        load_suite(p)
    # the new sections are validated like the others; errors name the key and the file
    for text, pattern in [
        ("severities: {axes: [lifetime], levels: [5]}\n", "severities.*unknown severity axis.*lifetime"),
        ("severities: {levels: [0, 6]}\n", "levels.*must be in"),
        ("severities: {throws: -1}\n", "throws"),
        ("search: {n_trials: 0}\n", "search.n_trials"),
        ("tta: {methods: [adabn], base: [nope]}\n", "tta.base 'nope' is not a method"),
        ("tta: {methods: [bn], base: [a]}\n", "tta.methods"),
        ("tta: {methods: [tent]}\n", "needs both"),
        ("report: {baseline: nope}\n", "report.baseline 'nope'"),
        ("report: {n_boot: 10}\n", "report.n_boot"),
    ]:
        p = _write(tmp_path / "s.yaml", base + "shifts: {x: {detector: {lifetime_us: 500}}}\n" + text)
        with pytest.raises(SparsenuError, match=pattern) as info:
            load_suite(p)
        assert "s.yaml" in str(info.value), text
    p = _write(tmp_path / "s.yaml", base + "severities: {axes: [lifetime_us], levels: [5], throws: 1}\n")
    names = [r.name for r in resolve_shifts(load_suite(p), DetectorConfig())]
    assert names == ["lifetime_us-s5", "recombination-birks", "throw_00"]  # severities alone suffice
    p = _write(tmp_path / "s.yaml", base + "shifts: {lifetime_us-s5: {detector: {lifetime_us: 400}}}\n"
               "severities: {axes: [lifetime_us], levels: [5]}\n")
    with pytest.raises(SparsenuError, match="lifetime_us-s5"):
        load_suite(p)
    p = _write(tmp_path / "s.yaml", base)
    with pytest.raises(SparsenuError, match="no test shift"):
        load_suite(p)

    # overrides are validated like file values
    p = _write(tmp_path / "s.yaml", base + "shifts: {x: {detector: {lifetime_us: 500}}}\n")
    assert load_suite(p, ["seeds=[1,2]", "data.n_train=50"]).seeds == [1, 2]
    with pytest.raises(SparsenuError, match="seeds"):
        load_suite(p, ["seeds=[1,1]"])


def test_benchmark_cli_reports_bad_method_config(tmp_path, capsys):
    p = _write(tmp_path / "s.yaml", "methods: {a: {config: nowhere.yaml}}\n"
                                    "shifts: {x: {detector: {lifetime_us: 500}}}\n")
    assert main(["benchmark", str(p), "--out", str(tmp_path / "out"), "-q"]) == 2
    assert "nowhere.yaml" in capsys.readouterr().err
    p = _write(tmp_path / "s.yaml", "methods: {a: {train: {method: clasifier}}}\n"
                                    "shifts: {x: {detector: {lifetime_us: 500}}}\n")
    assert main(["benchmark", str(p), "--out", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "method 'a'" in err and "clasifier" in err
    assert not (tmp_path / "out" / "data").exists()  # nothing simulated for a broken suite


# ----------------------------------------------------------------------------- end to end

TINY_METHODS = ["classifier", "dann", "simclr"]
TINY_ROWS = TINY_METHODS + ["classifier+adabn", "classifier+tent"]
TINY_SHIFTS = ["lifetime_500", "noise_x2", "lifetime_us-s3", "lifetime_us-s5", "recombination-birks", "throw_00"]


def _check_outputs(out: Path, methods: list[str], shifts: list[str], seeds: list[int]):
    for f in ("results.csv", "results.json", "report.md", "suite.yaml", "manifest.json"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    df = pd.read_csv(out / "results.csv")
    assert len(df) == len(methods) * len(seeds) * (1 + len(shifts))
    assert set(df["method"]) == set(methods) and set(df["shift"]) == {"nominal", *shifts}
    for col in ("accuracy", "balanced_accuracy", "ece"):
        assert df[col].between(0, 1).all(), col
    trained = df[~df["method"].str.contains("+", regex=False)]
    assert trained["knn_accuracy"].between(0, 1).all() and trained["val_accuracy"].between(0, 1).all()
    nom = trained[trained["shift"] == "nominal"]
    assert (nom["sensitivity"] == 0).all()
    assert (trained.loc[trained["shift"] != "nominal", "sensitivity"] >= 0).all()
    assert df.loc[df["method"].isin(["classifier", "dann"]), "head_accuracy"].notna().all()
    records = json.loads((out / "results.json").read_text())
    assert len(records) == len(df) and {"method", "seed", "shift", "accuracy", "ece", "trial"} <= set(records[0])
    report = (out / "report.md").read_text()
    assert "Model selection" in report and "## Drop from nominal" in report.replace("### ", "## ")
    for s in shifts:
        assert s in report
    pngs = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert "accuracy_vs_shift.png" in pngs
    for m in methods:
        if "+" not in m:
            assert f"projection_{m}.png" in pngs
    for p in (out / "plots").glob("*.png"):
        assert p.stat().st_size > 1000
    return df


def test_tiny_suite_end_to_end(tmp_path, monkeypatch, capsys):
    """Severities (with the Birks model change and a throw), a 2-trial search, AdaBN/TENT and two
    seeds through the CLI; the report's statistics; a report re-made from caches is identical;
    the honest selection ignores shifted labels; re-runs skip, resume and extend."""
    from sparsenu.eval.embeddings import load_embeddings
    from sparsenu.eval.probe_io import load_probe
    from sparsenu.eval.suite import make_report

    monkeypatch.chdir(REPO)
    out = tmp_path / "bench"
    rc = main(["benchmark", "cfg/suite_tiny.yaml", "--out", str(out), "-q"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "recombination-birks" in captured.out and "classifier+tent" in captured.out
    assert "Conclusion." in captured.out
    df = _check_outputs(out, TINY_ROWS, TINY_SHIFTS, [0, 1])
    assert set(df["seed"]) == {0, 1}
    # the non-numeric (recombination) shift and the throw are scored but have no accuracy curve
    birks = df[df["shift"] == "recombination-birks"]
    assert (birks["value"] == "birks").all() and (birks["parameter"] == "recombination").all()
    assert df.loc[df["shift"] == "throw_00", "parameter"].isna().all()
    pngs = {p.name for p in (out / "plots").iterdir()}
    assert {"accuracy_vs_lifetime_us.png", "accuracy_vs_noise.png", "accuracy_vs_severity.png"} <= pngs
    assert not any("recombination" in p or "throw" in p for p in pngs)
    assert set(df.loc[df["shift"] == "lifetime_us-s3", "severity"]) == {3}

    report = (out / "report.md").read_text()
    assert "± " in report and "Summary over the shifted test sets" in report and "**Conclusion.**" in report
    assert "Difference from `classifier` per test set" in report and "[" in report  # paired intervals
    assert "Expected calibration error" in report and "## Confusion matrices" in report
    assert "| electron " in report and "true \\ predicted" in report
    assert "nominal-val: mean shifted" in report and "oracle: mean shifted (upper bound)" in report
    assert "classifier+adabn" in report and "classifier+tent" in report
    trials = pd.read_csv(out / "trials.csv")
    assert set(trials["trial"]) == {0, 1} and set(trials["method"]) == set(TINY_METHODS)

    # per-event predictions of every test set, the saved probe, same events in every shifted set
    ed = out / "eval" / "simclr" / "seed0"
    probe = load_probe(ed / "probe.h5")
    assert probe.metadata_["method"] == "contrastive" and len(probe.metadata_["checkpoint_sha256"]) == 64
    nom = load_embeddings(ed / "test_nominal.h5")
    for s in TINY_SHIFTS:
        sh = load_embeddings(ed / f"test_{s}.h5")
        assert set(sh["event_id"]) <= set(nom["event_id"]) and len(sh["event_id"]) >= 0.8 * len(nom["event_id"])
        common, a, b = np.intersect1d(nom["event_id"], sh["event_id"], return_indices=True)
        np.testing.assert_array_equal(nom["labels"][a], sh["labels"][b])
        assert (ed / f"pred_{s}.h5").is_file()
    assert nom["embeddings"].shape[1] == 16  # encoder width: the projection head is dropped
    assert (out / "eval" / "classifier+tent" / "seed1" / "pred_recombination-birks.h5").is_file()

    # the report step alone, from the caches: byte-identical files
    before = {f: (out / f).read_bytes() for f in ("report.md", "results.csv", "results.json", "trials.csv")}
    make_report(out)
    for f, b in before.items():
        assert (out / f).read_bytes() == b, f

    # honest selection never reads shifted labels: make every non-chosen trial perfect on every
    # shifted set; the reported (nominal-validation) trials stay, the oracle's move to them
    chosen = df[df["shift"] == "nominal"].set_index(["method", "seed"])["trial"]
    saved = {}
    for m in TINY_METHODS:
        for seed in (0, 1):
            other = 1 - int(chosen[(m, seed)])
            rows_path = out / "eval" / (f"{m}/seed{seed}" if other == 0 else f"{m}/trial{other}/seed{seed}") / "rows.json"
            saved[rows_path] = rows_path.read_text()
            rows = json.loads(saved[rows_path])
            for s in TINY_SHIFTS:
                rows[s]["metrics"]["accuracy"] = 1.0
            rows_path.write_text(json.dumps(rows))
    make_report(out)
    again = pd.read_csv(out / "results.csv")
    assert again[again["shift"] == "nominal"].set_index(["method", "seed"])["trial"].equals(chosen)
    rep2 = (out / "report.md").read_text()
    table = rep2.split("## Hyper-parameter search")[1].split("Trials:")[0]
    for m in TINY_METHODS:
        line = next(x for x in table.splitlines() if x.startswith(f"| {m} "))
        assert line.rstrip(" |").split("|")[-2].strip() in ("1.000 ± 0.000",)  # oracle found the "perfect" trials
    for path, text in saved.items():
        path.write_text(text)
    make_report(out)
    assert (out / "report.md").read_bytes() == before["report.md"]

    # second run: nothing trained or evaluated again, same results
    ckpt = out / "runs" / "simclr" / "seed0" / "best.pt"
    mtime = ckpt.stat().st_mtime_ns
    assert main(["benchmark", "cfg/suite_tiny.yaml", "--out", str(out), "-q"]) == 0
    second = capsys.readouterr().out
    assert "trained 0 run(s), evaluated 0" in second
    assert ckpt.stat().st_mtime_ns == mtime
    assert (out / "results.csv").read_bytes() == before["results.csv"]

    # an interrupted run (checkpoint, no completion marker) is resumed, not restarted
    (out / "runs" / "classifier" / "trial1" / "seed0" / "COMPLETE.json").unlink()
    assert main(["benchmark", "cfg/suite_tiny.yaml", "--out", str(out), "-q"]) == 0
    assert "trained 1 run(s)" in capsys.readouterr().out
    assert (out / "runs" / "classifier" / "trial1" / "seed0" / "COMPLETE.json").is_file()

    # a changed suite (one more shift, given as an override) only evaluates what is new
    rc = main(["benchmark", "cfg/suite_tiny.yaml", "shifts.gain_m10.scale.gain=0.9", "--out", str(out), "-q"])
    assert rc == 0
    assert "trained 0 run(s)" in capsys.readouterr().out
    df3 = pd.read_csv(out / "results.csv")
    assert set(df3["shift"]) == {"nominal", *TINY_SHIFTS, "gain_m10"}


def test_report_only_needs_a_finished_directory(tmp_path):
    from sparsenu.eval.suite import run_benchmark

    with pytest.raises(SparsenuError, match="manifest.json"):
        run_benchmark("unused.yaml", tmp_path, report_only=True)
    from sparsenu.eval.suite.__main__ import main as suite_main

    assert suite_main(["report", str(tmp_path)]) == 2
    assert suite_main(["nonsense"]) == 2


@pytest.mark.slow
def test_tiny_suite_all_methods_one_seed(tmp_path, monkeypatch, capsys):
    """Five methods, no search, one seed: cells carry the binomial SE, marked."""
    monkeypatch.chdir(REPO)
    out = tmp_path / "bench"
    rc = main(["benchmark", "cfg/suite_tiny.yaml", "seeds=[0]", "search.n_trials=1", "tta.methods=[]", "tta.base=[]",
               "methods.classifier_aug.train.method=classifier_aug",
               "methods.supcon.train.method=contrastive", "methods.supcon.train.loss.alpha=1.0",
               "shifts.dead_10.detector.dead_channel_fraction=0.1", "--out", str(out), "-q"])
    assert rc == 0, capsys.readouterr().err
    _check_outputs(out, ["classifier", "dann", "simclr", "classifier_aug", "supcon"],
                   TINY_SHIFTS + ["dead_10"], [0])
    report = (out / "report.md").read_text()
    assert "ᵇ" in report and "binomial standard error" in report
    assert "compared with `classifier_aug`" in report
