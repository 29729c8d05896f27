"""The command line: the train options come from TrainConfig's fields, and every command answers --help."""

import argparse
from dataclasses import fields

import pytest

from mtl_lab.__main__ import _add_train_args, _config_overrides, build_parser
from mtl_lab.runs import PROFILE_NAMES
from mtl_lab.training.config import PROFILES, TrainConfig

# the train command's flags as users type them (scripts and docs depend on these spellings)
TRAIN_FLAGS = """--aggregation --batch-size --data --dev-limit --device --ema --encoder --epochs --freeze-layers --init
--layer-decay --lr --max-length --model --monitor-every --no-resume --out --pair-head --pcgrad --precision --pretrain
--profile --rdrop --reduction --sampler --seed --sequential --task-draws --tasks --temperature --train-fraction
--train-limit --train-word-embeddings""".split()


def _train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    _add_train_args(parser)
    return parser


def test_the_train_flags_keep_their_spellings():
    flags = {o for a in _train_parser()._actions for o in a.option_strings if o.startswith("--") and o != "--help"}
    assert sorted(flags) == sorted(TRAIN_FLAGS)


def test_every_option_field_is_a_flag_with_the_dataclass_choices():
    parser = _train_parser()
    by_dest = {a.dest: a for a in parser._actions}
    for f in fields(TrainConfig):
        if "help" in f.metadata:
            assert f.name in by_dest, f"TrainConfig.{f.name} has help but no flag"
            assert by_dest[f.name].help == f.metadata["help"]
            if f.metadata["choices"]:
                assert list(by_dest[f.name].choices) == list(f.metadata["choices"])


def test_flags_become_the_config_the_profile_overrides():
    args = _train_parser().parse_args(
        "--profile smoke --tasks sst sts --sequential --train-word-embeddings --lr 0.001 --freeze-layers 2".split()
    )
    overrides = {k: v for k, v in _config_overrides(args).items() if v is not None}
    assert overrides == {
        "tasks": ("sst", "sts"),
        "sequential": True,
        "freeze_word_embeddings": False,
        "lr": 0.001,
        "freeze_layers": 2,
    }
    cfg = TrainConfig(**{**PROFILES["smoke"], **overrides})
    assert cfg.tasks == ("sst", "sts") and cfg.batch_size == PROFILES["smoke"]["batch_size"]
    assert all(v is None for k, v in _config_overrides(_train_parser().parse_args([])).items())


def test_a_bad_choice_names_the_flag(capsys):
    with pytest.raises(SystemExit):
        _train_parser().parse_args(["--sampler", "nope"])
    assert "--sampler" in capsys.readouterr().err


def test_the_profiles_are_named_once():
    assert tuple(PROFILES) == PROFILE_NAMES


def test_every_command_answers_help(capsys):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name in commands:
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args([name, "--help"])
        assert exit_.value.code == 0, name
    assert "usage: python -m mtl_lab" in capsys.readouterr().out
