"""A rerun skips a job whose result is published from the same spec, and reruns a changed one."""

from __future__ import annotations

from pathlib import Path

from rich.progress import Progress

from hanlin import storage
from hanlin.api import TrainingJob
from hanlin.run.resources import load_file
from hanlin.run.stages import Runner

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def test_finished_only_for_the_same_spec(tmp_path: Path) -> None:
    job = load_file(EXAMPLES / "quickstart.yaml")[0]
    assert isinstance(job, TrainingJob)
    job.spec.output.uri = (tmp_path / "out").as_uri()
    result = storage.parse_uri(str(job.spec.output.uri)).join("artifact.json")
    runner = Runner(tmp_path / "wd", Progress(disable=True), {})
    (tmp_path / "wd").mkdir()
    assert not runner._finished(job, result)
    storage.write_bytes(result, b"{}")
    assert runner._finished(job, result)  # published elsewhere: trusted
    runner._mark_finished(job)
    assert runner._finished(job, result)
    changed = job.model_copy(deep=True)
    assert changed.spec.hyperparameters.max_steps is not None
    changed.spec.hyperparameters.max_steps += 1
    assert not runner._finished(changed, result)
