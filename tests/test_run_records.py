"""Run records: how runs outside a service (CLI, batch, Ray) show on the dashboard."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from spatia.formats.runs import RunRecord, read_runs, runs_dir


def test_a_record_follows_its_run_and_ends_with_it(tmp_path):
    with RunRecord("cli", "pan", world="/shots/pan/world", folder=tmp_path) as run:
        (record,) = read_runs(tmp_path)
        assert record["status"] == "running" and record["origin"] == "cli" and record["pid"] == os.getpid()
        run.progress(0.5, "round 1/2: denoising")
        (record,) = read_runs(tmp_path)
        assert record["stage"] == "round 1/2: denoising" and record["fraction"] == 0.5  # a new stage is written at once
        assert record["eta_s"] is not None
    (record,) = read_runs(tmp_path)
    assert record["status"] == "succeeded" and record["fraction"] == 1.0 and record["finished"] >= record["started"]


def test_a_failing_run_says_why(tmp_path):
    with pytest.raises(ValueError):
        with RunRecord("batch", "shot", folder=tmp_path):
            raise ValueError("bad prompt")
    (record,) = read_runs(tmp_path)
    assert record["status"] == "failed" and record["error"] == "ValueError: bad prompt"


def test_a_run_whose_process_died_reads_as_interrupted(tmp_path):
    script = ("from spatia.formats.runs import RunRecord; import os; "
              f"r = RunRecord('cli', 'crashed', folder={str(tmp_path)!r}); r.progress(0.3, 'round 1/3'); os._exit(9)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    assert subprocess.run([sys.executable, "-c", script], env=env).returncode == 9
    (record,) = read_runs(tmp_path)
    assert record["status"] == "interrupted" and record["fraction"] == pytest.approx(0.3)


def test_records_can_be_turned_off_and_unwritable_folders_do_not_stop_a_run(tmp_path, monkeypatch):
    monkeypatch.setenv("SPATIA_RUNS_DIR", "")
    assert runs_dir() is None
    with RunRecord("cli", "x") as run:
        run.progress(0.5, "x")
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with RunRecord("cli", "y", folder=blocked / "runs") as run:  # cannot be created: no record, no error
        run.progress(0.5, "y")
    monkeypatch.setenv("SPATIA_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("SPATIA_RUN_ORIGIN", "flamenco")
    RunRecord("batch", "z").finish("cancelled")
    (record,) = read_runs(tmp_path / "runs")
    assert record["origin"] == "flamenco" and record["status"] == "cancelled"


def test_foreign_and_broken_files_are_skipped(tmp_path):
    (tmp_path / "r-broken.json").write_text("{")
    (tmp_path / "r-other.json").write_text(json.dumps({"schema": "something else"}))
    RunRecord("cli", "ok", folder=tmp_path).finish("succeeded")
    assert [r["name"] for r in read_runs(tmp_path)] == ["ok"]
