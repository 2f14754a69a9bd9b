"""`launch.py corruptions list|gallery` through the real command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from comprobust.cli import main


def test_list_prints_every_corruption_with_its_parameter(capsys: pytest.CaptureFixture) -> None:
    assert main(["corruptions", "list", "--compositions"]) == 0
    out = capsys.readouterr().out
    assert "GaussianBlur  GB    False     2         2.0" in out
    assert " 166  Contrast-ImpulseNoise-GaussianBlur-Swirl-Invert-Rotate90" in out


def test_gallery_renders_a_png_with_one_row_per_image(tmp_path: Path) -> None:
    out = tmp_path / "gallery.png"
    assert (
        main(
            [
                "corruptions",
                "gallery",
                "--out",
                str(out),
                "--digits",
                "2",
                "--photos",
                "1",
                "--compositions",
                "Identity",
                "IN",
                "CO-R90",
            ]
        )
        == 0
    )
    image = np.asarray(Image.open(out).convert("L"))
    assert image.shape[0] > 200 and image.shape[1] > 200
    assert image.std() > 20  # a real picture, not a blank canvas


def test_gallery_refuses_a_non_png_name_and_unknown_corruptions(tmp_path: Path, capsys) -> None:
    assert main(["corruptions", "gallery", "--out", str(tmp_path / "g.jpg")]) == 2
    assert "ending in .png" in capsys.readouterr().err
    assert main(["corruptions", "gallery", "--out", str(tmp_path / "g.png"), "--compositions", "Fog"]) == 2
    assert "unknown corruption 'Fog'" in capsys.readouterr().err
    assert not (tmp_path / "g.png").exists()
