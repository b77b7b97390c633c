"""The mask options of ``ribseg predict`` and ``ribseg evaluate`` are MaskOptions' own."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from napari_ribseg.cli import cmd_evaluate, cmd_predict
from napari_ribseg.cli.cmd_predict import mask_options
from napari_ribseg.core.session import MaskOptions


def _parser(command) -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(exit_on_error=False)
    command.register(root.add_subparsers(dest="command"))
    return root


@pytest.mark.parametrize(("command", "positional"), [(cmd_predict, "x.tif"), (cmd_evaluate, "d")])
def test_cli_defaults_are_the_dataclass_defaults(command, positional):
    args = _parser(command).parse_args([command.__name__.rsplit("_", 1)[1], positional])
    assert mask_options(args) == MaskOptions()
    for f in dataclasses.fields(MaskOptions):
        assert getattr(args, f.name) == f.default


def test_cli_flags_reach_every_field_and_keep_the_declared_ranges(capsys):
    parser = _parser(cmd_predict)
    argv = ["predict", "x.tif", "--threshold", "0.3", "--min-size", "7"]
    args = parser.parse_args([*argv, "--fill-holes", "--keep-largest", "4"])
    assert mask_options(args) == MaskOptions(0.3, 7, True, 4)
    assert mask_options(args).kwargs() == {"min_size": 7, "fill_holes": True, "keep_largest": 4}
    low, high = MaskOptions.__dataclass_fields__["threshold"].metadata["range"]
    assert parser.parse_args(["predict", "x.tif", "--threshold", str(low)]).threshold == low
    for flag, value in (("--threshold", "0.995"), ("--keep-largest", "51"), ("--min-size", "-1")):
        with pytest.raises(SystemExit):
            parser.parse_args(["predict", "x.tif", flag, value])
        assert "must be between" in capsys.readouterr().err
