"""The Flamenco job type: valid JavaScript, one `spatia batch` task per shot, run with node and
a fake Flamenco `author` API (skipped without node)."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "flamenco"
SCRIPT = ROOT / "scripts" / "spatia-batch.js"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="needs node")


def compile_job(tmp_path, **settings):
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"settings": {"blendfile": "/farm/shots/hero.blend", "output_dir": "/farm/out", **settings}}))
    done = subprocess.run([NODE, str(ROOT / "test" / "harness.js"), str(SCRIPT), str(job)], capture_output=True,
                          text=True, timeout=60)
    result = json.loads(done.stdout)
    assert (done.returncode == 0) == ("error" not in result), done.stderr
    return result


def test_scripts_parse():
    for path in (SCRIPT, ROOT / "test" / "harness.js"):
        subprocess.run([NODE, "--check", str(path)], check=True, timeout=60)


def test_job_type_settings(tmp_path):
    job_type = compile_job(tmp_path)["job_type"]
    settings = {s["key"]: s for s in job_type["settings"]}
    assert {"blendfile", "shots", "shots_dir", "output_dir", "generator", "spatia_exe", "python_exe"} <= set(settings)
    assert settings["output_dir"]["subtype"] == "dir_path" and settings["output_dir"]["required"]
    from spatia.formats.presets import load_presets

    assert set(settings["generator"]["choices"]) == {"shot", *load_presets().models}  # the model presets
    assert all(s["type"] in ("string", "int32", "float", "bool") for s in settings.values())


def test_one_exec_task_per_shot(tmp_path):
    tasks = compile_job(tmp_path, shots="a.blend; /elsewhere/b.blend\n\nc.blend", shots_dir="/farm/shots",
                        generator="preview", samples=4, resolution="quality", force=True)["tasks"]
    assert [t["name"] for t in tasks] == ["spatia-a", "spatia-b", "spatia-c"]
    assert all(t["type"] == "misc" and len(t["commands"]) == 1 and t["commands"][0]["type"] == "exec" for t in tasks)
    params = tasks[0]["commands"][0]["parameters"]
    assert params == {"exe": "spatia", "args": ["batch", "/farm/shots/a.blend", "--out", "/farm/out", "--generator",
                                                "preview", "--samples", "4", "--resolution", "quality", "--force"]}
    assert tasks[1]["commands"][0]["parameters"]["args"][1] == "/elsewhere/b.blend"


def test_defaults_run_the_submitted_file_with_its_own_settings(tmp_path):
    tasks = compile_job(tmp_path, generator="shot", samples=0, python_exe="/opt/venv/bin/python")["tasks"]
    assert len(tasks) == 1
    assert tasks[0]["commands"][0]["parameters"] == {
        "exe": "/opt/venv/bin/python", "args": ["-m", "spatia.cli", "batch", "/farm/shots/hero.blend", "--out", "/farm/out"]}


def test_the_arguments_parse_as_spatia_batch(tmp_path):
    from spatia.cli.main import build_parser

    tasks = compile_job(tmp_path, shots="a.blend", shots_dir="/s", generator="wan-vace-1.3b", samples=8,
                        worlds_dir="/w")["tasks"]
    args = build_parser().parse_args(tasks[0]["commands"][0]["parameters"]["args"])
    assert (args.shots, args.out, args.generator, args.samples, args.worlds) == (
        ["/s/a.blend"], "/farm/out", "wan-vace-1.3b", 8, "/w")


def test_clashing_shot_names_are_refused(tmp_path):
    result = compile_job(tmp_path, shots="/a/hero.blend;/b/hero.blend")
    assert "would both write to shots/hero/" in result["error"]
    assert "no shots" in compile_job(tmp_path, blendfile="", shots="")["error"]
