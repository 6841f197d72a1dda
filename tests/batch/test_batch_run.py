"""`spatia batch` end to end on three small .blend shots: two succeed, one (an orthographic
camera) fails with a clear report; a rerun skips the finished shots and retries the failed
one; the Ray path on a local instance writes the same outputs as the local path."""

import hashlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
from spatia.cli.main import main

pytestmark = [pytest.mark.bpy, pytest.mark.slow]

SAMPLES = "2"


def _files_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.png")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _summary(out: Path) -> dict:
    return {entry["name"]: entry for entry in json.loads((out / "summary.json").read_text())["shots"]}


@pytest.fixture(scope="module")
def local_run(shot_blends, tmp_path_factory):
    out = tmp_path_factory.mktemp("batch") / "out"
    code = main(["batch", str(shot_blends), "--out", str(out), "--samples", SAMPLES])
    return out, code


def test_two_shots_succeed_and_the_broken_one_reports_why(local_run):
    from spatia.formats.video import read_video

    out, code = local_run
    assert code == 1  # one failed shot
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"ok": 2, "skipped": 0, "failed": 1}
    shots = _summary(out)
    for name in ("alpha", "beta"):
        folder = out / "shots" / name
        report = json.loads((folder / "report.json").read_text())
        assert report["status"] == "ok" and report["error"] is None and shots[name]["status"] == "ok"
        assert report["generator"] == "preview" and report["quality"] == "draft" and report["size"] == "48x32"
        assert report["summary"]["rounds"] == 2 and report["summary"]["frames"] == 20
        assert read_video(folder / "video.mp4").shape == (20, 32, 48, 3)
        assert len(list((folder / "world" / "frames").glob("*.png"))) == 20
        assert report["hashes"]["frames_sha256"] == _files_digest(folder / "world" / "frames")
        assert report["hashes"]["memory_ply_sha256"] == _sha(folder / "memory.ply")
        assert (folder / f"{name}.blend").is_file() and not (folder / f"{name}.blend1").exists()
        shot = json.loads((folder / "shot.json").read_text())
        # the scene leaves steps and guidance unset: the draft preset's reach the generator
        assert shot["quality"] == "draft" and shot["steps"] is None and shot["guidance"] is None
        assert (report["steps"], report["guidance"], report["seed"]) == (12, 3.0, shot["seed"])
        for record in sorted((folder / "world" / "rounds").glob("*/round.json")):
            assert (json.loads(record.read_text())["steps"], json.loads(record.read_text())["guidance"]) == (12, 3.0)
        assert shot["rounds"] == {"first_round_frames": 12, "round_frames": 10, "overlap": 2}
    assert shots["alpha"]["hashes"] != shots["beta"]["hashes"]  # different cameras, different videos

    failed = json.loads((out / "shots" / "gamma" / "report.json").read_text())
    assert failed["status"] == "failed" and failed["stage"] == "camera"
    assert failed["error"]["type"] == "CameraExportError" and failed["error"]["stage"] == "camera"
    assert "orthographic" in failed["error"]["message"] and "Perspective" in failed["error"]["message"]
    assert shots["gamma"]["error"].startswith("CameraExportError: camera 'Camera' is orthographic")
    assert not (out / "shots" / "gamma" / "video.mp4").exists()
    assert not list((out / "shots").glob(".*"))  # no stage folders left behind


def test_output_blend_holds_the_memory_and_the_clips(local_run):
    bpy = pytest.importorskip("bpy")
    out, _ = local_run
    folder = out / "shots" / "alpha"
    report = json.loads((folder / "report.json").read_text())
    bpy.ops.wm.open_mainfile(filepath=str(folder / "alpha.blend"))
    try:
        memory = bpy.data.objects["Spatia Memory"]
        assert len(memory.data.vertices) == report["summary"]["memory_points"]
        assert memory["spatia_memory_version"] == report["summary"]["memory_version"]
        strips = sorted((s.name, s.frame_final_start, s.frame_final_end, s.directory)
                        for s in bpy.context.scene.sequence_editor.strips)
        # the rounds' new frames, one after the other: the shot's 20 frames from frame 1
        assert [name for name, *_ in strips] == ["Spatia round 0", "Spatia round 1"]
        assert strips[0][1] == 1 and strips[0][2] == strips[1][1] > 1 and strips[1][2] == 21
        strips = [(name, start, path) for name, start, _, path in strips]
        # relative paths: the shot folder can be moved (or gathered from another machine)
        assert all(path.startswith("//world/frames") for _, _, path in strips)
        assert all(bpy.path.abspath(path).startswith(str(folder)) for _, _, path in strips)
        images = [bg.image for bg in bpy.context.scene.camera.data.background_images]
        assert len(images) == 2 and all(i.filepath.startswith("//world/frames/") for i in images)
    finally:
        bpy.ops.wm.read_factory_settings(use_empty=True)


def test_rerun_skips_finished_shots_and_retries_the_failed_one(local_run, tmp_path):
    from shot_blends import build_blends

    first, _ = local_run
    out = tmp_path / "out"
    shutil.copytree(first, out)
    shots = tmp_path / "shots"
    shutil.copytree(_source_folder(first), shots)
    before = {name: (out / "shots" / name / "report.json").read_bytes() for name in ("alpha", "beta", "gamma")}

    assert main(["batch", str(shots), "--out", str(out), "--samples", SAMPLES]) == 1
    statuses = {name: entry["status"] for name, entry in _summary(out).items()}
    assert statuses == {"alpha": "skipped", "beta": "skipped", "gamma": "failed"}
    for name in ("alpha", "beta"):  # untouched
        assert (out / "shots" / name / "report.json").read_bytes() == before[name]
    retried = json.loads((out / "shots" / "gamma" / "report.json").read_text())
    assert (out / "shots" / "gamma" / "report.json").read_bytes() != before["gamma"]  # a new attempt
    assert retried["stage"] == "camera"

    build_blends(tmp_path / "fixed", "gamma")  # a perspective camera this time
    shutil.copyfile(tmp_path / "fixed" / "gamma.blend", shots / "gamma.blend")
    assert main(["batch", str(shots), "--out", str(out), "--samples", SAMPLES]) == 0
    statuses = {name: entry["status"] for name, entry in _summary(out).items()}
    assert statuses == {"alpha": "skipped", "beta": "skipped", "gamma": "ok"}
    assert json.loads((out / "shots" / "gamma" / "report.json").read_text())["status"] == "ok"

    # --force runs a finished shot again, into the same place, with the same result
    alpha = json.loads((out / "shots" / "alpha" / "report.json").read_text())
    assert main(["batch", str(shots / "alpha.blend"), "--out", str(out), "--samples", SAMPLES, "--force"]) == 0
    again = json.loads((out / "shots" / "alpha" / "report.json").read_text())
    assert _summary(out)["alpha"]["status"] == "ok" and again["hashes"] == alpha["hashes"]
    assert set(_summary(out)) == {"alpha", "beta", "gamma"}  # earlier entries kept


def _source_folder(out: Path) -> Path:
    """The folder the first run's shots came from."""
    report = json.loads((out / "shots" / "alpha" / "report.json").read_text())
    return Path(report["source"]).parent


def test_ray_path_writes_the_same_outputs(local_run, shot_blends, tmp_path):
    ray = pytest.importorskip("ray")
    from spatia.batch import BatchOptions, run_batch

    out_local, _ = local_run
    out = tmp_path / "ray"
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        result = run_batch([shot_blends], out, BatchOptions(samples=int(SAMPLES)), ray="local", progress=False)
    finally:
        ray.shutdown()
    assert result.exit_code == 1
    assert [(e["name"], e["status"]) for e in result.entries] == [("alpha", "ok"), ("beta", "ok"), ("gamma", "failed")]
    for name in ("alpha", "beta"):
        here, there = out_local / "shots" / name, out / "shots" / name
        assert _files_digest(there / "world" / "frames") == _files_digest(here / "world" / "frames")
        assert _sha(there / "memory.ply") == _sha(here / "memory.ply")
        assert _sha(there / "video.mp4") == _sha(here / "video.mp4")
        assert sorted(p.relative_to(there).as_posix() for p in there.rglob("*") if p.name != "log.txt") == \
            sorted(p.relative_to(here).as_posix() for p in here.rglob("*") if p.name != "log.txt")
        report = json.loads((there / "report.json").read_text())
        assert report["hashes"] == json.loads((here / "report.json").read_text())["hashes"]
        assert (report["steps"], report["guidance"]) == (12, 3.0)  # the draft preset, as on the local path
    gamma = json.loads((out / "shots" / "gamma" / "report.json").read_text())
    assert gamma["stage"] == "camera" and gamma["error"]["type"] == "CameraExportError"


def test_ray_task_runs_from_the_blend_bytes_alone(shot_blends, tmp_path):
    """A node that cannot see the .blend gets its bytes: the shot opens them from a temporary copy."""
    from spatia.batch.jobs import BatchOptions, sha256_file
    from spatia.batch.ray_runner import shot_task, untar_folder
    from spatia.batch.runner import plan_jobs

    blend = tmp_path / "elsewhere" / "gamma.blend"
    blend.parent.mkdir()
    shutil.copyfile(shot_blends / "gamma.blend", blend)
    job = plan_jobs([blend], tmp_path / "out", BatchOptions(samples=2))[0]
    data, sha = blend.read_bytes(), sha256_file(blend)
    blend.unlink()  # the worker node does not have it
    report, archive = shot_task(asdict(job), data, sha)
    assert report["stage"] == "camera"  # the copy opened: the failure is the camera's, not the file's
    untar_folder(archive, tmp_path / "back")
    assert json.loads((tmp_path / "back" / "report.json").read_text()) == report
    assert "Read blend" in (tmp_path / "back" / "log.txt").read_text()


BLENDER_STAND_IN = '''#!{python} -S
"""Blender's command-line contract on the bpy module: `-b --factory-startup --python-exit-code N
--python-expr EXPR -- ARGS`, sys.argv holding the whole command line, as the binary does.
Started without `site`, so like Blender's own Python it sees bpy but not this environment's
editable installs: spatia imports only through the paths the command gives it."""
import sys
sys.path.append({bpy_root!r})
args = sys.argv[1:]
assert args[:3] == ["-b", "--factory-startup", "--python-exit-code"], args
exit_code, flag, expr = int(args[3]), args[4], args[5]
assert flag == "--python-expr" and args[6] == "--", args
import bpy
bpy.ops.wm.read_factory_settings(use_empty=True)
try:
    import spatia
    sys.exit("spatia must not be importable before the command adds its paths")
except ImportError:
    pass
try:
    exec(compile(expr, "<python-expr>", "exec"), {{"__name__": "__main__"}})
except SystemExit as exc:
    sys.exit(exc.code)
except Exception:
    import traceback
    traceback.print_exc()
    sys.exit(exit_code)
'''


def test_blender_binary_path_writes_the_same_outputs(local_run, shot_blends, tmp_path):
    """`--blender PATH`: the shot runs in another program's Python, which gets our import
    paths on its command line; the outputs match the bpy-module path."""
    import stat
    import sys

    out_local, _ = local_run
    blender = tmp_path / "bin" / "blender"
    blender.parent.mkdir()
    import site

    bpy_root = next(root for root in site.getsitepackages() if (Path(root) / "bpy").is_dir())
    blender.write_text(BLENDER_STAND_IN.format(python=sys.executable, bpy_root=bpy_root))
    blender.chmod(blender.stat().st_mode | stat.S_IEXEC)
    out = tmp_path / "out"
    assert main(["batch", str(shot_blends / "alpha.blend"), "--out", str(out), "--samples", SAMPLES,
                 "--blender", str(blender)]) == 0
    here, there = out_local / "shots" / "alpha", out / "shots" / "alpha"
    assert _files_digest(there / "world" / "frames") == _files_digest(here / "world" / "frames")
    assert _sha(there / "memory.ply") == _sha(here / "memory.ply")
    assert json.loads((there / "report.json").read_text())["hashes"] == \
        json.loads((here / "report.json").read_text())["hashes"]
