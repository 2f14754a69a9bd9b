"""`launch.py data list|prepare|show` through the real CLI dispatcher."""

from __future__ import annotations

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


def test_data_show(tmp_path: Path, capsys) -> None:
    args = ["--dataset", "mnist5k", "--root", str(tmp_path), "--split-sizes", "train=20,valid=5,test=5"]
    png = tmp_path / "grid.png"
    assert main(["data", "show", *args, "--out", str(png), "--classes", "3", "--per-class", "2"]) == 0
    assert "train 200, valid 50, test 50" in capsys.readouterr().out
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] > 400 and image.size[1] > 400
    assert main(["data", "show", *args, "--out", str(png)]) == 2  # never overwritten silently
    assert "pass --force" in capsys.readouterr().err


def test_data_prepare_and_its_errors(tmp_path: Path, capsys) -> None:
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
            ]
        )
        == 0
    )
    assert "mnist5k: train 50, valid 20, test 20 images" in capsys.readouterr().out
    assert main(["data", "prepare", "--dataset", "nope", "--root", str(tmp_path)]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err
    assert (
        main(
            ["data", "show", "--dataset", "emnist", "--root", str(tmp_path), "--out", str(tmp_path / "a.png")]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "EMNIST not found: looked for" in err and "--download" in err and "Traceback" not in err
    assert not (tmp_path / "a.png").exists()


def test_parse_split_sizes() -> None:
    assert parse_split_sizes("train=300,valid=0.1") == {"train": 300, "valid": 0.1}
    assert parse_split_sizes(None) is None
    with pytest.raises(UserError, match="not SPLIT=N"):
        parse_split_sizes("train300")
    with pytest.raises(UserError, match="'x' for valid is not a number"):
        parse_split_sizes("valid=x")
