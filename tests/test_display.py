"""``sparsenu show``: a figure for every input format, augmented and re-simulated panels, errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sparsenu.cli import main
from sparsenu.data.formats.sparse_h5 import write_sparse
from sparsenu.data.formats.synthetic import random_tracks, write_larcv3, write_ndlar_flow, write_pilarnet
from sparsenu.errors import SparsenuError
from sparsenu.eval.display import detect_format, load_event, show_event

REPO = Path(__file__).resolve().parents[1]
DPI, PANEL_INCHES = 110, 5.0


@pytest.fixture(scope="module")
def raw_file(tmp_path_factory):
    from sparsenu.data.simulate import simulate_file

    out = tmp_path_factory.mktemp("raw") / "raw.h5"
    simulate_file(REPO / "cfg" / "sim_nominal.yaml", 4, out, progress=False)
    return out


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, raw_file):
    """One small file of every input format, keyed by the format ``show`` should recognise."""
    d = tmp_path_factory.mktemp("formats")
    rng = np.random.default_rng(0)
    tracks = random_tracks(3, rng)
    flow = [(rng.uniform(-50, 50, size=3) + np.cumsum(rng.normal(0, 0.4, size=(60, 3)), 0), rng.uniform(1, 5, 60))
            for _ in range(3)]
    return {
        "sparsenu": raw_file,
        "sparse": write_sparse(d / "sparse.h5", [(c.astype(np.int32), q[:, None]) for c, q in tracks],
                               labels=[2, -1, 4], event_ids=[7, 8, 9], voxel_size_mm=3.0),
        "larcv3": write_larcv3(d / "larcv.h5", tracks, pdgs=[[11], [13], [2212]]),
        "pilarnet": write_pilarnet(d / "pil.h5", [(c + 0.5, q) for c, q in tracks]),
        "ndlar-flow": write_ndlar_flow(d / "flow.h5", flow),
    }


def _check_png(path, n_panels):
    """The figure's pixel size follows from its panels; it is not blank (not a pixel comparison)."""
    from matplotlib.image import imread

    img = imread(path)
    width = round((PANEL_INCHES * n_panels + 1.0) * DPI)
    assert img.shape[:2] == (round(PANEL_INCHES * DPI), width)
    ink = (img[..., :3] < 0.9).any(axis=2)  # pixels that are not (near) white
    assert 0.02 < ink.mean() < 0.6
    coloured = np.ptp(img[..., :3], axis=2) > 0.2  # voxels and colour bar: saturated pixels
    assert coloured.sum() > 200
    assert path.stat().st_size > 20_000


@pytest.mark.parametrize("fmt", ["sparsenu", "sparse", "larcv3", "pilarnet", "ndlar-flow"])
def test_show_every_format(inputs, tmp_path, capsys, fmt):
    path = inputs[fmt]
    assert detect_format(path) == fmt
    out = tmp_path / "ev.png"
    rc = main(["show", str(path), "--event", "1", "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert f"({fmt}), 1 panel(s)" in capsys.readouterr().out
    _check_png(out, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ev.png"]
    view = load_event(path, row=1, fmt=fmt)
    assert len(view.charge) > 0 and view.centres_mm.shape == (len(view.charge), 3)


def test_event_contents_and_title(inputs, raw_file):
    import h5py

    v = load_event(inputs["sparse"], event_id=9)
    assert (v.row, v.label, v.voxel_size_mm) == (2, 4, 3.0)
    r = load_event(raw_file, row=2)
    with h5py.File(raw_file) as f:
        off = f["hits/offsets"][()]
        np.testing.assert_array_equal(r.coords, f["hits/coords"][off[2]:off[3]])
        assert r.energy_mev == pytest.approx(float(f["primaries/kinetic_energy_mev"][2]))
        origin, voxel = f.attrs["origin_mm"], float(f.attrs["voxel_size_mm"])
    np.testing.assert_allclose(r.centres_mm, origin + (r.coords + 0.5) * voxel)  # voxel centres in mm
    from sparsenu.eval.display import _title
    from sparsenu.sim import CLASS_NAMES

    assert r.label == 2 and "muon (label 2)" in _title(r) and CLASS_NAMES[2] == "muon"  # simulated label = id % 5
    assert f"T = {r.energy_mev:.0f} MeV" in _title(r)
    assert "label unknown" in _title(load_event(inputs["sparse"], row=1))
    # ND-LAr flow positions are cm: converted to mm on the 4.4 mm grid
    flow = load_event(inputs["ndlar-flow"], row=0)
    assert flow.voxel_size_mm == 4.4 and np.abs(flow.centres_mm).max() > 100


def test_augmented_and_shifted_panels(raw_file, tmp_path, capsys):
    out = tmp_path / "ev.png"
    rc = main(["show", str(raw_file), "--event", "0", "--augment", "paper", "--seed", "3",
               "--shift", "lifetime_us=500", "noise=0", "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert "3 panel(s)" in capsys.readouterr().out
    _check_png(out, 3)
    # the re-simulated event is that detector's: a shorter lifetime collects less charge
    from sparsenu.eval.display import shifted_view

    v = load_event(raw_file, row=0)
    lower = shifted_view(v, ["lifetime_us=100"])
    assert lower.charge.sum() < v.charge.sum()
    same = shifted_view(v, [])
    np.testing.assert_array_equal(same.coords, v.coords)  # nominal re-run reproduces the stored hits
    np.testing.assert_allclose(same.charge, v.charge, rtol=1e-6)


def test_show_errors_are_one_line(inputs, tmp_path, capsys):
    out = tmp_path / "ev.png"
    cases = [
        (["show", str(inputs["sparse"]), "--shift", "lifetime_us=500", "-o", str(out)], "deposits"),
        (["show", str(inputs["sparse"]), "--event", "3", "-o", str(out)], "out of range"),
        (["show", str(inputs["sparse"]), "--event-id", "99", "-o", str(out)], "no event with id 99"),
        (["show", str(inputs["sparsenu"]), "--shift", "lifetme_us=500", "-o", str(out)], "lifetme_us"),
        (["show", str(inputs["sparse"]), "--augment", "spin", "-o", str(out)], "spin"),
        (["show", str(inputs["sparse"]), "-o", str(tmp_path / "ev.jpg")], "suffix"),
        (["show", str(tmp_path / "missing.h5"), "-o", str(out)], "not found"),
    ]
    for args, match in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("sparsenu: error:") and len(err.strip().splitlines()) == 1, err
        assert match in err, (match, err)
    assert list(tmp_path.iterdir()) == []
    text = tmp_path / "x.h5"
    import h5py

    with h5py.File(text, "w") as f:
        f["something"] = np.zeros(3)
    with pytest.raises(SparsenuError, match="--format"):
        show_event(text, out)
