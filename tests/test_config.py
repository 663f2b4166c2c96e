from dataclasses import dataclass, field

import pytest

from polymodal.config import ConfigError, apply_overrides, from_dict, load_json, save_json, to_dict


@dataclass
class Inner:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class Outer:
    name: str = "x"
    steps: int = 10
    inner: Inner = field(default_factory=Inner)
    tags: list[str] = field(default_factory=list)
    note: str | None = None


def test_round_trip_and_int_to_float():
    cfg = from_dict(Outer, {"steps": 3, "inner": {"lr": 1, "betas": [0.8, 0.9]}, "tags": ["a"]})
    assert cfg.inner.lr == 1.0 and isinstance(cfg.inner.lr, float)
    assert cfg.inner.betas == (0.8, 0.9)
    assert from_dict(Outer, to_dict(cfg)) == cfg


def test_unknown_key_names_key_and_section():
    with pytest.raises(ConfigError, match=r"unknown key 'lrr' in Outer\.inner; valid keys: betas, lr"):
        from_dict(Outer, {"inner": {"lrr": 1}})


def test_wrong_type_is_explained():
    with pytest.raises(ConfigError, match=r"Outer\.steps: expected int"):
        from_dict(Outer, {"steps": "many"})
    with pytest.raises(ConfigError, match="expected int"):
        from_dict(Outer, {"steps": True})


def test_dotted_overrides():
    data = apply_overrides(to_dict(Outer()), ["inner.lr=3e-4", "name=run1", 'tags=["a","b"]', "note=null"])
    cfg = from_dict(Outer, data)
    assert cfg.inner.lr == 3e-4 and cfg.name == "run1" and cfg.tags == ["a", "b"] and cfg.note is None
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_overrides({}, ["nonsense"])
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"name": "x"}, ["name.sub=1"])


def test_json_io(tmp_path):
    save_json(Outer(steps=7), tmp_path / "c.json")
    assert from_dict(Outer, load_json(tmp_path / "c.json")).steps == 7
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_json(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="not found"):
        load_json(tmp_path / "missing.json")
