"""Every flag a command shows, it accepts: the flags of each subcommand's --help are exactly the leaves
of its configs that the command takes (a model kind's ``unused_flags`` left off), and a kind refuses
the flags it does not take when they come through the Python API or a config file instead."""

from __future__ import annotations

import argparse

import pytest

from probgen.cli import build_parser
from probgen.cli.commands import all_commands
from probgen.config import SweepConfig, flag, leaves
from probgen.errors import UserError
from probgen.models.registry import KINDS

META = {"-h", "--help", "--config"}  # argparse's own and the config-file flag


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(found[0].choices) if found else {}


def _command_parser(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> argparse.ArgumentParser:
    for word in path:
        parser = _subparsers(parser)[word]
    return parser


def shown_flags(parser: argparse.ArgumentParser) -> set[str]:
    """The long flags a command's --help lists (what its parser accepts)."""
    flags = set()
    for a in parser._actions:
        negation = isinstance(a, argparse.BooleanOptionalAction)  # --x shows --no-x too: one flag
        flags |= {s for s in a.option_strings if s.startswith("--") and not (negation and s.startswith("--no-"))}
    return flags - META


def declared_flags(configs: tuple[type, ...], skip: tuple[str, ...]) -> set[str]:
    """The flags of every leaf of ``configs`` that is neither positional nor skipped."""
    return {
        flag(leaf.name)
        for cls in configs
        for leaf in leaves(cls)
        if leaf.name not in skip and not leaf.field.metadata.get("positional")
    }


def test_every_subcommand_is_walked_and_shows_exactly_its_declared_flags():
    parser = build_parser()
    walked = []
    for cmd in all_commands():
        if cmd.path == ("loglik",):
            continue  # its flags are being regrouped (issue 23, item 2); covered by tests/pipelines/test_loglik*
        sub = _command_parser(parser, cmd.path)
        assert shown_flags(sub) == declared_flags(cmd.configs, cmd.skip), cmd.path
        walked.append(cmd.path)
    top = set(_subparsers(parser)) - {"fit", "data"}
    assert {p[0] for p in walked if len(p) == 1} | {"loglik"} == top  # no command escaped the walk


@pytest.mark.parametrize("kind", list(KINDS))
def test_fit_kind_shows_its_config_less_the_flags_it_does_not_take(kind):
    k = KINDS[kind]
    shown = shown_flags(_command_parser(build_parser(), ("fit", kind)))
    every = {flag(leaf.name) for leaf in leaves(k.config)}
    assert shown == every - {flag(n) for n in k.unused_flags}
    assert not {flag(n) for n in k.unused_flags} - every, "unused_flags names a flag the config lacks"


@pytest.mark.parametrize("kind", list(KINDS))
def test_sweep_of_each_kind_shows_that_kinds_flags(kind):
    k = KINDS[kind]
    shown = shown_flags(_command_parser(build_parser(sweep_kind=kind), ("sweep",)))
    expected = {flag(leaf.name) for leaf in (*leaves(SweepConfig), *leaves(k.config))}
    assert shown == expected - {flag(n) for n in (*k.unused_flags, "resume", "overwrite")}


def test_the_flags_a_kind_does_not_take_are_shown_by_another_kind():
    """A flag left off one kind's --help is one that some kind takes (else it should not exist)."""
    for k in KINDS.values():
        for name in k.unused_flags:
            takers = [
                o for o in KINDS.values() if name not in o.unused_flags and name in {x.name for x in leaves(o.config)}
            ]
            assert takers, f"{k.name}: no kind takes --{name}"


@pytest.mark.parametrize("kind", [k for k in KINDS if KINDS[k].unused_flags])
def test_a_hidden_flag_set_through_the_api_is_refused_in_one_line(kind):
    k = KINDS[kind]
    k.check_unused(k.config())  # the defaults pass
    name = k.unused_flags[0]
    leaf = next(x for x in leaves(k.config) if x.name == name)
    value = (not leaf.default) if isinstance(leaf.default, bool) else _other_value(leaf)
    cfg = k.config()
    section = cfg
    for part in leaf.path:
        section = getattr(section, part)
    object.__setattr__(section, name, value)
    with pytest.raises(UserError, match=rf"^--{name.replace('_', '-')}.*: only for .*\(not `fit {kind}`\)$"):
        k.check_unused(cfg)


def _names(cls: type) -> set[str]:
    return {leaf.name for leaf in leaves(cls)}


def _other_value(leaf):
    choices = leaf.field.metadata.get("choices")
    if choices:
        return next(c for c in choices if c != leaf.default)
    return leaf.default * 2 + 1 if isinstance(leaf.default, (int, float)) else f"{leaf.default}x"


def test_loglik_help_groups_the_flags_by_estimator_family():
    parser = _command_parser(build_parser(), ("loglik",))
    groups = {g.title.split()[0]: {a.dest for a in g._group_actions} for g in parser._action_groups}
    assert groups["budget"] == {"budget", "time", "chains"}
    assert groups["hmc"] == {
        "sampler",
        "warmup",
        "samples",
        "trajectory_length",
        "target_accept",
        "adapt_mass",
        "shrink",
    }
    assert groups["ais"] == {"ais_steps", "leapfrog_steps", "ais_mass", "target_se", "max_chains"}
    assert groups["iwae"] == {"iwae_samples", "max_batch"}
