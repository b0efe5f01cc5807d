"""Files say which detector type made them; a file of one type where another is expected is
a clear error (training sets, multi-file data sets, re-simulation, evaluation of a model)."""
from pathlib import Path

import pytest
from test_train import toy_events, write_cfg

from sparsenu.cli import main
from sparsenu.data.formats.base import detector_type
from sparsenu.data.formats.sparse_h5 import write_sparse
from sparsenu.errors import SparsenuError
from sparsenu.sim import DetectorConfig, SimConfig
from sparsenu.sim.segcube import SegCubeConfig


def _toy(path: Path, n: int, seed: int, det: str) -> Path:
    ev, lab = toy_events(n, seed)
    detector = SegCubeConfig().to_dict() if det == "segcube" else DetectorConfig().to_dict()
    return write_sparse(path, ev, lab, voxel_size_mm=3.8, detector=detector)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("types")
    return {"lar_train": _toy(d / "lar_train.h5", 16, 0, "lartpc"), "lar_val": _toy(d / "lar_val.h5", 8, 1, "lartpc"),
            "cube_val": _toy(d / "cube_val.h5", 8, 2, "segcube"), "dir": d}


def _cfg(train, val) -> dict:
    return {"name": "t", "method": "classifier", "seed": 0, "device": "cpu",
            "data": {"train": str(train), "val": str(val)},
            "model": {"widths": [4, 8], "depths": [1, 1]}, "optim": {"batch_size": 4, "epochs": 1}}


def test_training_refuses_validation_data_of_another_detector_type(files, tmp_path, capsys):
    path = write_cfg(tmp_path / "c.yaml", _cfg(files["lar_train"], files["cube_val"]))
    assert main(["train", str(path), "--out", str(tmp_path / "run"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "'segcube' detector, the training data by a 'lartpc' detector" in err and err.count("\n") == 1


def test_checkpoint_records_the_type_and_evaluation_refuses_other_types(files, tmp_path, capsys):
    from sparsenu.train import load_checkpoint

    path = write_cfg(tmp_path / "c.yaml", _cfg(files["lar_train"], files["lar_val"]))
    assert main(["train", str(path), "--out", str(tmp_path / "run"), "-q"]) == 0
    ckpt = tmp_path / "run" / "last.pt"
    assert load_checkpoint(ckpt).detector_type == "lartpc"
    capsys.readouterr()
    assert main(["embed", str(ckpt), str(files["cube_val"]), "-o", str(tmp_path / "e.h5"), "-q"]) == 2
    assert "made by a 'segcube' detector, but the model was trained on 'lartpc' data" in capsys.readouterr().err
    assert not (tmp_path / "e.h5").exists()
    assert main(["embed", str(ckpt), str(files["lar_val"]), "-o", str(tmp_path / "e.h5"), "-q"]) == 0


def test_multi_file_data_sets_must_share_the_detector_type(files):
    from sparsenu.data import SparseH5Dataset

    assert detector_type(files["cube_val"]) == "segcube" and detector_type(files["lar_val"]) == "lartpc"
    with pytest.raises(SparsenuError, match="detector type"):
        SparseH5Dataset([files["lar_val"], files["cube_val"]])


def test_resimulation_refuses_a_detector_of_another_type(tmp_path):
    from sparsenu.augment.resim import ResimViews
    from sparsenu.data.simulate import resimulate_file, write_simulated_dataset

    sim = SimConfig(classes=("muon",))
    write_simulated_dataset(tmp_path / "s.h5", 2, 1, sim, DetectorConfig(), raw_output=tmp_path / "r.h5",
                            progress=False)
    with pytest.raises(SparsenuError, match="simulated for a 'lartpc' detector; they cannot be re-simulated "
                                            "with a 'segcube' detector"):
        resimulate_file(tmp_path / "r.h5", tmp_path / "x.h5", SegCubeConfig(), progress=False)
    assert not (tmp_path / "x.h5").exists()
    # the default re-simulation ranges belong to the detector type
    assert set(ResimViews(base_detector=SegCubeConfig()).detector_ranges) == {"crosstalk_scale"}
    assert set(ResimViews(base_detector=DetectorConfig()).detector_ranges) == set(DetectorConfig.RESIM_RANGES)


def test_event_display_shifts_a_segcube_file_with_its_own_fields(tmp_path, capsys):
    from sparsenu.data.simulate import write_simulated_dataset

    sim = SimConfig(classes=("muon",), fiducial_min_mm=(300.0,) * 3, fiducial_max_mm=(700.0,) * 3)
    write_simulated_dataset(tmp_path / "s.h5", 1, 3, sim, SegCubeConfig(), raw_output=tmp_path / "r.h5",
                            progress=False)
    out = tmp_path / "ev.png"
    assert main(["show", str(tmp_path / "r.h5"), "--event", "0", "--shift", "crosstalk_scale=0", "-o", str(out)]) == 0
    assert out.stat().st_size > 10_000
    assert main(["show", str(tmp_path / "r.h5"), "--shift", "lifetime_us=500", "-o", str(tmp_path / "x.png")]) == 2
    assert "lifetime_us" in capsys.readouterr().err
