"""Every config class is a dataclass whose defaults validate (guards against merge slips like a lost decorator)."""

import dataclasses
import inspect

import pytest

import probgen.config as config

CLASSES = [
    c
    for _, c in inspect.getmembers(config, inspect.isclass)
    if c.__module__.startswith(config.__name__ + ".") and c is not config.Leaf  # every config module's classes
]


@pytest.mark.parametrize("cls", CLASSES, ids=[c.__name__ for c in CLASSES])
def test_config_class_is_a_dataclass_with_valid_defaults(cls):
    assert dataclasses.is_dataclass(cls), f"{cls.__name__} lost its @dataclass"
    cfg = cls()
    assert config.from_dict(cls, config.to_dict(cfg)) == cfg
    for f in dataclasses.fields(cls):
        assert not isinstance(getattr(cfg, f.name), dataclasses.Field), f.name
