"""`launch.py data list|prepare|show` through the real CLI dispatcher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from comprobust.cli import main
from comprobust.commands.data import parse_split_sizes
from comprobust.errors import UserError


def test_data_list(capsys) -> None:
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "mnist5k" in out and "offline default" in out and "facescrub" in out


def test_data_prepare_then_show(tmp_path: Path, capsys) -> None:
    args = ["--dataset", "mnist5k", "--root", str(tmp_path), "--split-sizes", "train=20,valid=5,test=5"]
    assert main(["data", "prepare", *args, "--out", str(tmp_path / "sets"), "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "train 200, valid 50, test 50" in out and "manifest.json" in out
    manifest = json.loads((tmp_path / "sets" / "manifest.json").read_text())
    assert manifest["seed"] == 3 and len(manifest["files"]) == 16
    png = tmp_path / "grid.png"
    assert main(["data", "show", *args, "--out", str(png), "--classes", "3", "--per-class", "2"]) == 0
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] > 400 and image.size[1] > 400
    assert main(["data", "show", *args, "--out", str(png)]) == 2  # never overwritten silently
    assert "pass --force" in capsys.readouterr().err


def test_data_prepare_default_out_and_errors(tmp_path: Path, capsys) -> None:
    assert (
        main(
            [
                "data",
                "prepare",
                "--dataset",
                "mnist5k",
                "--root",
                str(tmp_path),
                "--split-sizes",
                "train=5,valid=2,test=2",
                "--splits",
                "valid",
            ]
        )
        == 0
    )
    (first,) = (tmp_path / "comprobust-cache" / "mnist5k").glob("elementals-*/manifest.json")
    assert str(first) in capsys.readouterr().out
    assert (
        main(
            [
                "data",
                "prepare",
                "--dataset",
                "mnist5k",
                "--root",
                str(tmp_path),
                "--split-sizes",
                "train=5,valid=3,test=2",
                "--splits",
                "valid",
            ]
        )
        == 0
    )  # other sizes: another folder
    assert len(list((tmp_path / "comprobust-cache" / "mnist5k").glob("elementals-*/manifest.json"))) == 2
    capsys.readouterr()
    assert main(["data", "prepare", "--dataset", "nope", "--root", str(tmp_path)]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err
    assert main(["data", "prepare", "--dataset", "emnist", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "EMNIST not found: looked for" in err and "--download" in err and "Traceback" not in err


def test_parse_split_sizes() -> None:
    assert parse_split_sizes("train=300,valid=0.1") == {"train": 300, "valid": 0.1}
    assert parse_split_sizes(None) is None
    with pytest.raises(UserError, match="not SPLIT=N"):
        parse_split_sizes("train300")
    with pytest.raises(UserError, match="'x' for valid is not a number"):
        parse_split_sizes("valid=x")
