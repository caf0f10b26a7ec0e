"""`hanlin run` refuses bad input before starting anything, naming the problem."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from hanlin.run.cli import app

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def test_bad_field_exits_2_and_names_it(tmp_path: Path) -> None:
    doc = yaml.safe_load((EXAMPLES / "evalrun.yaml").read_text())
    doc["spec"]["workers"] = 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    result = CliRunner().invoke(app, ["-f", str(bad), "--workdir", str(tmp_path / "wd")])
    assert result.exit_code == 2
    assert "workers" in result.output
    assert not (tmp_path / "wd" / doc["metadata"]["name"]).exists()


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["-f", str(tmp_path / "nope.yaml"), "--workdir", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "nope.yaml" in result.output
