"""Validation of YAML configs loaded into dataclasses."""
from dataclasses import dataclass, field

import pytest

from sparsenu.config import apply_overrides, from_dict, load_config
from sparsenu.errors import SparsenuError


@dataclass
class Inner:
    lr: float = 1e-3
    widths: tuple[int, ...] = (16, 32)


@dataclass
class Outer:
    name: str = "x"
    epochs: int = field(default=2, metadata={"range": (1, None)})
    mode: str = field(default="a", metadata={"choices": ("a", "b")})
    inner: Inner = field(default_factory=Inner)


def test_defaults_and_nested():
    cfg = from_dict(Outer, {"inner": {"lr": 1, "widths": [8, 16, 32]}})
    assert cfg.inner.lr == 1.0 and isinstance(cfg.inner.lr, float)
    assert cfg.inner.widths == (8, 16, 32)


def test_unknown_key_names_key_and_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("inner:\n  lrr: 0.1\n")
    with pytest.raises(SparsenuError) as err:
        load_config(Outer, p)
    msg = str(err.value)
    assert "inner.lrr" in msg and str(p) in msg and "did you mean 'inner.lr'" in msg


@pytest.mark.parametrize(
    "data, needle",
    [({"epochs": "two"}, "epochs"), ({"epochs": 0}, "out of range"), ({"mode": "c"}, "mode"),
     ({"inner": {"widths": [1.5]}}, "inner.widths[0]"), ({"epochs": True}, "epochs")],
)
def test_wrong_values(data, needle):
    with pytest.raises(SparsenuError, match=None) as err:
        from_dict(Outer, data, source="f.yaml")
    assert needle in str(err.value) and "f.yaml" in str(err.value)


def test_overrides_are_parsed_and_validated(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("epochs: 3\n")
    cfg = load_config(Outer, p, ["inner.lr=5e-4", "inner.widths=[4,8]", "mode=b"])
    assert cfg.inner.lr == 5e-4 and cfg.inner.widths == (4, 8) and cfg.mode == "b"
    with pytest.raises(SparsenuError):
        load_config(Outer, p, ["inner.nope=1"])
    with pytest.raises(SparsenuError):
        apply_overrides({}, ["novalue"])


def test_missing_and_bad_yaml(tmp_path):
    with pytest.raises(SparsenuError, match="not found"):
        load_config(Outer, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(SparsenuError, match="YAML"):
        load_config(Outer, bad)


def test_cli_overrides_after_options():
    from sparsenu.cli import build_parser, main

    args, extra = build_parser().parse_known_args(["train", "c.yaml", "--out", "d", "optim.lr=1e-3"])
    assert extra == ["optim.lr=1e-3"]
    with pytest.raises(SystemExit) as exc:
        main(["train", "c.yaml", "--out", "d", "--bogus"])
    assert exc.value.code == 2
