"""The parts of `spatia batch` that need no Blender: finding shots, content keys, the worker
command, crash reports, moving outputs into place, the summary, Ray resources."""

import json
import stat
import sys
from pathlib import Path

import pytest
from spatia.batch import jobs
from spatia.batch.jobs import BatchError, BatchOptions
from spatia.batch.ray_runner import tar_folder, task_resources, untar_folder
from spatia.batch.execute import execute_shot, worker_command
from spatia.batch.runner import BatchResult, finalise, finished_report, merge_summary, plan_jobs
from spatia.cli.main import build_parser, main


def _blend(path: Path, data: bytes = b"BLENDER-v500") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_find_shots_and_names(tmp_path):
    a, b = _blend(tmp_path / "s" / "b.blend"), _blend(tmp_path / "s" / "a.blend")
    assert jobs.find_shots([tmp_path / "s"]) == [b.resolve(), a.resolve()]  # a folder: sorted
    with pytest.raises(BatchError, match="no such file or folder"):
        jobs.find_shots([tmp_path / "missing.blend"])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(BatchError, match="not a .blend file"):
        jobs.find_shots([tmp_path / "notes.txt"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(BatchError, match="no .blend files in this folder"):
        jobs.find_shots([tmp_path / "empty"])
    other = _blend(tmp_path / "t" / "a.blend")
    with pytest.raises(BatchError, match="two shots would write to shots/a/"):
        jobs.shot_names([b, other])


def test_key_changes_with_the_inputs(tmp_path):
    blend = _blend(tmp_path / "a.blend")
    code, presets = jobs.code_version(), jobs.presets_digest()
    assert code.startswith("0.1.0+") and len(code) == len("0.1.0+") + 12
    key = jobs.shot_key(blend, BatchOptions(), code, presets)
    assert key == jobs.shot_key(blend, BatchOptions(worlds_dir="/x", blender="b"), code, presets)  # locators only
    assert key != jobs.shot_key(blend, BatchOptions(generator="spatia-5b"), code, presets)
    assert key != jobs.shot_key(blend, BatchOptions(samples=4), code, presets)
    assert key != jobs.shot_key(blend, BatchOptions(), code + "x", presets)
    assert key != jobs.shot_key(blend, BatchOptions(), code, presets + "x")
    _blend(blend, b"BLENDER-v501")
    assert key != jobs.shot_key(blend, BatchOptions(), code, presets)
    with pytest.raises(BatchError, match="resolution must be one of scene, quality"):
        BatchOptions(resolution="4k")


def test_worker_command():
    assert worker_command(Path("/j.json")) == [sys.executable, "-m", "spatia.batch.worker", "/j.json"]
    cmd = worker_command(Path("/j.json"), "/opt/blender/blender")
    assert cmd[:5] == ["/opt/blender/blender", "-b", "--factory-startup", "--python-exit-code", "1"]
    assert cmd[5] == "--python-expr" and cmd[-2:] == ["--", "/j.json"]
    expr = cmd[6]
    assert "from spatia.batch.worker import main" in expr
    roots = eval(expr.split("sys.path[:0] = ", 1)[1].split("; from", 1)[0])  # the paths given to Blender's Python
    assert str(Path(jobs.__file__).resolve().parents[2]) in roots  # backend/: spatia
    assert all(Path(root).is_absolute() for root in roots)


def _fake_blender(tmp_path: Path, body: str) -> str:
    script = tmp_path / "fake-blender"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_a_crashing_shot_process_gets_a_report(tmp_path):
    out = tmp_path / "out"
    blender = _fake_blender(tmp_path, 'echo "Segmentation fault in the GPU driver"; exit 139')
    job = plan_jobs([_blend(tmp_path / "a.blend")], out, BatchOptions(blender=blender))[0]
    report = execute_shot(job)
    assert report["status"] == "failed" and report["stage"] == "process"
    assert report["error"]["type"] == "WorkerCrashed" and "exited with status 139" in report["error"]["message"]
    assert "Segmentation fault" in report["error"]["log_tail"]
    entry = finalise(out, job, report)
    assert entry["status"] == "failed" and entry["error"].startswith("WorkerCrashed: the shot's process exited")
    assert json.loads((out / "shots" / "a" / "report.json").read_text()) == report
    assert "Segmentation fault" in (out / "shots" / "a" / "log.txt").read_text()
    assert not (out / "shots" / ".a.partial").exists()

    missing = plan_jobs([tmp_path / "a.blend"], out, BatchOptions(blender=str(tmp_path / "no-blender")))[0]
    report = execute_shot(missing)
    assert report["stage"] == "process" and "could not start the shot's process" in report["error"]["message"]


def _ok_report(job, **extra) -> dict:
    return {"schema": jobs.REPORT_SCHEMA, "name": job.name, "source": job.source, "key": job.key, "status": "ok",
            "stage": "done", "outputs": {"video": "video.mp4"}, "hashes": {"frames_sha256": "f"}, **extra}


def test_finalise_replaces_on_success_and_keeps_outputs_on_failure(tmp_path):
    out = tmp_path / "out"
    job = plan_jobs([_blend(tmp_path / "a.blend")], out, BatchOptions())[0]
    stage = Path(job.stage_dir)
    stage.mkdir(parents=True)
    (stage / "video.mp4").write_bytes(b"v1")
    assert finalise(out, job, _ok_report(job))["status"] == "ok"
    final = out / "shots" / "a"
    assert (final / "video.mp4").read_bytes() == b"v1" and not stage.exists()
    (final / "report.json").write_text(json.dumps(_ok_report(job)))
    assert finished_report(out, job)["key"] == job.key

    stage.mkdir()
    (stage / "log.txt").write_text("boom")
    failed = {**_ok_report(job), "status": "failed", "stage": "generate",
              "error": {"type": "ModelUnavailable", "message": "no GPU", "stage": "generate"}}
    entry = finalise(out, job, failed)
    assert entry == {**entry, "status": "failed", "stage": "generate", "error": "ModelUnavailable: no GPU"}
    assert (final / "video.mp4").read_bytes() == b"v1"  # earlier outputs survive a failed attempt
    assert (final / "log.txt").read_text() == "boom"
    assert finished_report(out, job) is None  # the last attempt failed: run it again

    (final / "report.json").write_text(json.dumps(_ok_report(job)))
    (final / "video.mp4").unlink()
    assert finished_report(out, job) is None  # an output is missing
    (final / "video.mp4").write_bytes(b"v1")
    (final / "report.json").write_text(json.dumps(_ok_report(job, key="other")))
    assert finished_report(out, job) is None  # other inputs

    world = tmp_path / "w"
    world.mkdir()
    (world / "world.json").write_text("{}")
    source = {"path": str(world), "world_json_sha256": jobs.sha256_file(world / "world.json")}
    (final / "report.json").write_text(json.dumps(_ok_report(job, world_source=source)))
    assert finished_report(out, job) is not None
    (world / "world.json").write_text('{"frames": 3}')  # the continued world moved on
    assert finished_report(out, job) is None


def test_summary_merges_runs(tmp_path):
    def entry(name, status):
        return {"name": name, "source": f"/{name}.blend", "status": status, "key": "k"}

    merge_summary(tmp_path, [entry("a", "ok"), entry("b", "failed")], "v")
    summary = merge_summary(tmp_path, [entry("b", "ok"), entry("c", "skipped")], "v")
    assert [(e["name"], e["status"]) for e in summary["shots"]] == [("a", "ok"), ("b", "ok"), ("c", "skipped")]
    assert summary["counts"] == {"ok": 2, "skipped": 1, "failed": 0}
    assert json.loads((tmp_path / "summary.json").read_text()) == summary


def test_exit_status_counts_failures_up_to_255():
    assert BatchResult([{"status": "ok"}, {"status": "skipped"}]).exit_code == 0
    assert BatchResult([{"status": "failed"}] * 3 + [{"status": "ok"}]).exit_code == 3
    assert BatchResult([{"status": "failed"}] * 300).exit_code == 255


def test_ray_resources_and_archives(tmp_path):
    assert task_resources({"CPU": 16.0, "GPU": 4.0}, None) == {"num_gpus": 1}
    assert task_resources({"CPU": 2.0}, None) == {"num_cpus": 1}
    assert task_resources({"CPU": 16.0, "GPU": 4.0}, 4) == {"num_cpus": 4}
    folder = tmp_path / "f"
    (folder / "world" / "frames").mkdir(parents=True)
    (folder / "world" / "frames" / "000000.png").write_bytes(b"png")
    (folder / "report.json").write_text("{}")
    untar_folder(tar_folder(folder), tmp_path / "g")
    assert (tmp_path / "g" / "world" / "frames" / "000000.png").read_bytes() == b"png"
    assert (tmp_path / "g" / "report.json").read_text() == "{}"


def test_cli(tmp_path, capsys):
    args = build_parser().parse_args(["batch", "a.blend", "b", "--out", "o", "--ray", "auto", "--ray-cpus", "2"])
    assert (args.shots, args.out, args.ray, args.ray_cpus, args.force) == (["a.blend", "b"], "o", "auto", 2, False)
    assert build_parser().parse_args(["batch", "a.blend", "--out", "o", "--force"]).force
    with pytest.raises(SystemExit):
        build_parser().parse_args(["batch", "a.blend", "--out", "o", "--force", "--resume"])
    assert main(["batch", str(tmp_path / "nope.blend"), "--out", str(tmp_path / "o")]) == 2
    assert "nope.blend: no such file or folder" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing written for bad input
