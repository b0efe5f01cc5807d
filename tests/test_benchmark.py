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
    from sparsenu.eval.suite.runner import _check_train_configs, _method_mapping

    for name in ("suite_tiny", "quickstart", "paper"):
        path = REPO / "cfg" / f"{name}.yaml"
        suite = load_suite(path)
        shifts = {s.name: s for s in resolve_shifts(suite, nominal)}
        assert suite.methods and shifts
        # every method's merged training config is a valid ExperimentConfig
        _check_train_configs({m: _method_mapping(suite, m, path.parent, str(path)) for m in suite.methods},
                             str(path))
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
    # overrides are validated like file values
    p = _write(tmp_path / "s.yaml", base)
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


def _check_outputs(out: Path, methods: list[str], shifts: list[str], seeds: list[int]):
    for f in ("results.csv", "results.json", "report.md", "suite.yaml"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    df = pd.read_csv(out / "results.csv")
    assert len(df) == len(methods) * len(seeds) * (1 + len(shifts))
    assert set(df["method"]) == set(methods) and set(df["shift"]) == {"nominal", *shifts}
    for col in ("accuracy", "balanced_accuracy", "knn_accuracy"):
        assert df[col].between(0, 1).all(), col
    nom = df[df["shift"] == "nominal"]
    assert (nom["sensitivity"] == 0).all()
    assert (df.loc[df["shift"] != "nominal", "sensitivity"] >= 0).all()
    assert df.loc[df["method"].isin(["classifier", "dann"]), "head_accuracy"].notna().all()
    records = json.loads((out / "results.json").read_text())
    assert len(records) == len(df) and {"method", "seed", "shift", "accuracy", "sensitivity"} <= set(records[0])
    report = (out / "report.md").read_text()
    assert "Model selection" in report and "## Drop from nominal" in report.replace("### ", "## ")
    for s in shifts:
        assert s in report
    pngs = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert "accuracy_vs_shift.png" in pngs
    for m in methods:
        assert f"projection_{m}.png" in pngs
    for p in (out / "plots").glob("*.png"):
        assert p.stat().st_size > 1000
    return df


def test_tiny_suite_end_to_end(tmp_path, monkeypatch, capsys):
    from sparsenu.eval.embeddings import load_embeddings

    monkeypatch.chdir(REPO)
    out = tmp_path / "bench"
    rc = main(["benchmark", "cfg/suite_tiny.yaml", "--out", str(out), "-q"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "nominal" in captured.out and "lifetime_500" in captured.out and "simclr" in captured.out
    methods, shifts = ["classifier", "dann", "simclr"], ["lifetime_500", "noise_x2"]
    df = _check_outputs(out, methods, shifts, [0])
    assert {"accuracy_vs_lifetime_us.png", "accuracy_vs_noise.png"} <= {p.name for p in (out / "plots").iterdir()}

    # every shifted test set holds the same events as the nominal one (only the detector differs)
    ed = out / "eval" / "simclr" / "seed0"
    nom = load_embeddings(ed / "test_nominal.h5")
    for s in shifts:
        sh = load_embeddings(ed / f"test_{s}.h5")
        assert set(sh["event_id"]) <= set(nom["event_id"]) and len(sh["event_id"]) >= 0.8 * len(nom["event_id"])
        common, a, b = np.intersect1d(nom["event_id"], sh["event_id"], return_indices=True)
        np.testing.assert_array_equal(nom["labels"][a], sh["labels"][b])
    assert nom["embeddings"].shape[1] == 16  # encoder width: the projection head is dropped

    # second run: nothing trained or evaluated again, same table
    ckpt = out / "runs" / "simclr" / "seed0" / "best.pt"
    mtime = ckpt.stat().st_mtime_ns
    assert main(["benchmark", "cfg/suite_tiny.yaml", "--out", str(out), "-q"]) == 0
    second = capsys.readouterr().out
    assert "trained 0 run(s), evaluated 0" in second
    assert ckpt.stat().st_mtime_ns == mtime
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), df)

    # an interrupted run (checkpoint, no completion marker) is resumed, not restarted
    (out / "runs" / "classifier" / "seed0" / "COMPLETE.json").unlink()
    assert main(["benchmark", "cfg/suite_tiny.yaml", "--out", str(out), "-q"]) == 0
    assert "trained 1 run(s)" in capsys.readouterr().out
    assert (out / "runs" / "classifier" / "seed0" / "COMPLETE.json").is_file()

    # a changed suite (one more shift, -q overrides) only evaluates what is new
    rc = main(["benchmark", "cfg/suite_tiny.yaml", "shifts.gain_m10.scale.gain=0.9",
               "--out", str(out), "-q"])
    assert rc == 0
    assert "trained 0 run(s)" in capsys.readouterr().out
    df3 = pd.read_csv(out / "results.csv")
    assert set(df3["shift"]) == {"nominal", *shifts, "gain_m10"}


@pytest.mark.slow
def test_tiny_suite_all_methods_two_seeds(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    out = tmp_path / "bench"
    rc = main(["benchmark", "cfg/suite_tiny.yaml", "seeds=[0,1]",
               "methods.classifier_aug.train.method=classifier_aug",
               "methods.supcon.train.method=contrastive", "methods.supcon.train.loss.alpha=1.0",
               "shifts.dead_10.detector.dead_channel_fraction=0.1", "--out", str(out), "-q"])
    assert rc == 0, capsys.readouterr().err
    df = _check_outputs(out, ["classifier", "dann", "simclr", "classifier_aug", "supcon"],
                        ["lifetime_500", "noise_x2", "dead_10"], [0, 1])
    assert "±" in (out / "report.md").read_text()
    assert df["seed"].nunique() == 2
