"""The one configuration mechanism: validated models, YAML files, includes, overrides, copies."""
from typing import Literal

import pytest
from pydantic import Field, model_validator

from sparsenu.config import ConfigModel, apply_overrides, from_dict, load_config, load_yaml, to_dict
from sparsenu.errors import SparsenuError


class Inner(ConfigModel):
    lr: float = Field(1e-3, gt=0)
    widths: tuple[int, ...] = (16, 32)


class Outer(ConfigModel):
    name: str = "x"
    epochs: int = Field(2, ge=1)
    mode: Literal["a", "b"] = "a"
    inner: Inner = Field(default_factory=Inner)
    frac: float = Field(0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _cross(self) -> "Outer":
        if self.mode == "b" and self.epochs > 5:
            raise ValueError("mode 'b' allows at most 5 epochs")
        return self


def test_defaults_and_nested():
    cfg = from_dict(Outer, {"inner": {"lr": 1, "widths": [8, 16, 32]}})
    assert cfg.inner.lr == 1.0 and isinstance(cfg.inner.lr, float)
    assert cfg.inner.widths == (8, 16, 32)
    assert from_dict(Outer, to_dict(cfg)) == cfg


def test_unknown_key_names_key_and_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("inner:\n  lrr: 0.1\n")
    with pytest.raises(SparsenuError) as err:
        load_config(Outer, p)
    msg = str(err.value)
    assert "inner.lrr" in msg and str(p) in msg and "did you mean 'inner.lr'" in msg and "valid keys: lr, widths" in msg


@pytest.mark.parametrize(
    "data, needle",
    [({"epochs": "two"}, "key 'epochs'"), ({"epochs": 0}, "greater than or equal to 1"), ({"mode": "c"}, "key 'mode'"),
     ({"inner": {"widths": [1.5]}}, "key 'inner.widths.0'"), ({"epochs": True}, "key 'epochs'"),
     ({"frac": True}, "key 'frac'"), ({"frac": float("nan")}, "finite"), ({"epochs": 2.0}, "key 'epochs'"),
     ({"mode": "b", "epochs": 9}, "mode 'b' allows at most 5 epochs")],
)
def test_wrong_values(data, needle):
    with pytest.raises(SparsenuError) as err:
        from_dict(Outer, data, source="f.yaml")
    assert needle in str(err.value) and "f.yaml" in str(err.value)


def test_every_copy_is_validated():
    """Ranges and cross-field rules hold on copies too, not only on load (the old
    dataclasses.replace path skipped the declared ranges)."""
    cfg = Outer()
    assert cfg.replace(epochs=3).epochs == 3
    with pytest.raises(ValueError, match="frac"):
        cfg.replace(frac=1.0)
    with pytest.raises(ValueError, match="at most 5 epochs"):
        cfg.replace(mode="b", epochs=9)
    with pytest.raises(ValueError, match="unknown field"):
        cfg.replace(epochz=3)
    with pytest.raises(ValueError, match="epochs"):
        cfg.model_copy(update={"epochs": 0})
    with pytest.raises(Exception):  # frozen: no silent mutation either
        cfg.epochs = 0  # type: ignore[misc]


def test_overrides_are_parsed_and_validated(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("epochs: 3\nfrac: 1e-4\n")  # YAML 1.1 would read 1e-4 as a string
    cfg = load_config(Outer, p, ["inner.lr=5e-4", "inner.widths=[4,8]", "mode=b"])
    assert cfg.inner.lr == 5e-4 and cfg.inner.widths == (4, 8) and cfg.mode == "b" and cfg.frac == 1e-4
    with pytest.raises(SparsenuError, match="inner.nope"):
        load_config(Outer, p, ["inner.nope=1"])
    with pytest.raises(SparsenuError):
        apply_overrides({}, ["novalue"])
    with pytest.raises(SparsenuError, match="empty key"):
        apply_overrides({}, ["a..b=1"])


def test_missing_bad_empty_and_binary_files(tmp_path):
    with pytest.raises(SparsenuError, match="not found"):
        load_config(Outer, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(SparsenuError, match="YAML"):
        load_config(Outer, bad)
    empty = tmp_path / "empty.yaml"
    empty.write_bytes(b"")
    with pytest.raises(SparsenuError, match="empty"):
        load_config(Outer, empty)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"epochs: 3\n\xff\xfe\x00")
    with pytest.raises(SparsenuError, match="not a UTF-8 text file"):
        load_config(Outer, binary)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(SparsenuError, match="mapping at the top level"):
        load_config(Outer, lst)


def test_include_merges_and_detects_cycles(tmp_path):
    (tmp_path / "base.yaml").write_text("epochs: 4\ninner: {lr: 0.5, widths: [1, 2]}\n")
    (tmp_path / "top.yaml").write_text("include: base.yaml\ninner: {lr: 0.25}\n")
    cfg = load_config(Outer, tmp_path / "top.yaml")
    assert cfg.epochs == 4 and cfg.inner.lr == 0.25 and cfg.inner.widths == (1, 2)
    (tmp_path / "a.yaml").write_text("include: b.yaml\n")
    (tmp_path / "b.yaml").write_text("include: a.yaml\n")
    with pytest.raises(SparsenuError, match="include cycle"):
        load_yaml(tmp_path / "a.yaml")


def test_cli_overrides_after_options():
    from sparsenu.cli import build_parser

    args, extra = build_parser().parse_known_args(["train", "c.yaml", "--out", "d", "optim.lr=1e-3"])
    assert extra == ["optim.lr=1e-3"]


@pytest.mark.parametrize("kind, key", [("experiment", "optim"), ("suite", "shifts"), ("simulation", "detector")])
def test_config_schema_command_exports_the_models(kind, key, capsys, tmp_path):
    """`sparsenu config-schema KIND` prints the JSON schema editors validate against: the
    same keys the loader accepts, unknown keys forbidden."""
    import json

    from sparsenu.cli import main

    assert main(["config-schema", kind]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert key in schema["properties"] and schema["additionalProperties"] is False
    assert main(["config-schema", kind, "-o", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text()) == schema
