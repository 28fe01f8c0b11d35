"""TrainConfig is the one source of a run's settings: the trainer's flags and the queue's checks
derive from its fields."""
import dataclasses

import pytest

from backend.training.config import TrainConfig, build_parser, config_from_args, flag, to_args, train_fields
from jobs.hparams import hparam_args, validate_hparams


def test_every_field_has_its_flag_and_nothing_else():
    flags = {a.dest for a in build_parser()._actions if a.dest != "help"}
    assert flags == set(train_fields())


VALUES = {"epochs": 3, "batch_size": 2, "lr": 0.05, "amp": "bf16", "threads": 1, "progress": False,
          "tensorboard": False, "max_steps_per_epoch": 4, "finetune_from": "ckpt.pt", "warmup_epochs": 0.5,
          "optimizer": "adamw", "scale_min": 40, "seed": 7}


def test_flags_round_trip_to_the_same_config():
    argv = ["--data", "d", "--out", "o", "--arch", "ir-csn-26", *to_args(VALUES)]
    cfg = config_from_args(argv)
    assert cfg == TrainConfig(data="d", out="o", arch="ir-csn-26", **VALUES)


def test_values_that_look_like_flags_round_trip():
    """A value starting with '-' (a file named so, a small float in e-notation) is the flag's
    value, not another flag."""
    values = {"finetune_from": "-odd.pt", "val_data": "--val", "video_root": "-", "lr": 1e-05,
              "warmup_epochs": 0.5, "seed": -3}
    argv = ["--data", "d", "--out", "o", "--arch", "ir-csn-26", *to_args(values)]
    ns = build_parser().parse_args(argv)
    assert {k: getattr(ns, k) for k in values} == values
    assert config_from_args(argv) == TrainConfig(data="d", out="o", arch="ir-csn-26", **values)


def test_queue_flags_are_the_trainers():
    hp = {k: v for k, v in VALUES.items() if k != "threads"}
    cfg = config_from_args(["--data", "d", "--out", "o", "--arch", "x", *hparam_args(hp)])
    for k, v in hp.items():
        assert getattr(cfg, k) == v, k


def test_defaults_match_the_dataclass():
    cfg = config_from_args(["--data", "d", "--out", "o", "--arch", "x"])
    expected = dataclasses.replace(TrainConfig(), data="d", out="o", arch="x")
    assert cfg == expected


@pytest.mark.parametrize("hp, why", [({"epochs": 0}, "epochs must be >= 1"),
                                     ({"optimizer": "adam"}, "optimizer must be sgd or adamw"),
                                     ({"lr": "fast"}, "lr must be float or int"),
                                     ({"resume": True}, "'resume' is set by the worker"),
                                     ({"tensorboard": 1}, "tensorboard must be bool")])
def test_queue_refuses_what_the_trainer_would(hp, why):
    with pytest.raises(ValueError, match=why):
        validate_hparams(hp)



def test_queue_errors_quote_little_of_the_value():
    with pytest.raises(ValueError) as e:
        validate_hparams({"optimizer": "x" * 100_000})
    assert "optimizer must be sgd or adamw" in str(e.value) and len(str(e.value)) < 200
