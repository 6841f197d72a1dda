"""Every entry path runs the denoising steps, guidance and seed its quality preset names for the
generator (spatia.formats.presets.generator_settings): run_shot, run_case and the command line,
the service's jobs and Blender's shots (batch, Ray and Flamenco in tests/batch)."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spatia.cameras import Cameras, Trajectory
from spatia.cli.main import main
from spatia.engine.models.gpu import RuntimeOptions
from spatia.engine.models.spatia import SpatiaGenerator
from spatia.engine.models.spatia.tiny import tiny_spatia_pipeline
from spatia.engine.run import run_shot
from spatia.formats import presets
from spatia.formats.reference_case import REFERENCE_SEED, ReferenceCase, write_reference_case
from spatia.formats.shot import ShotSpec, load_shot, save_shot

W, H = 64, 32


def turning(frames: int) -> Trajectory:
    yaw = np.radians(np.linspace(0, 20, frames))
    target = np.stack([np.sin(yaw), np.cos(yaw), np.zeros(frames)], axis=1)
    return Trajectory(Cameras.look_at(np.zeros((frames, 3)), target, up=(0, 0, 1), width=W, height=H), 24.0)


def first_view(rng) -> np.ndarray:
    return rng.integers(0, 256, (H, W, 3), dtype=np.uint8)


def render_shot(tmp_path: Path, frames: int = 9, **fields) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(first_view(rng)).save(tmp_path / "first.png")
    np.save(tmp_path / "depth.npy", np.full((H, W), 3.0, np.float32))
    spec = ShotSpec.from_trajectory(turning(frames), ["a room"], name="s",
                                    init={"kind": "render", "image": "first.png", "depth": "depth.npy"},
                                    rounds={"first_round_frames": frames, "round_frames": 5, "overlap": 1}, **fields)
    save_shot(tmp_path / "shot.json", spec)
    return tmp_path / "shot.json"


def rounds_of(out: Path) -> list[dict]:
    return json.loads((out / "report.json").read_text())["rounds"]


def test_run_shot_runs_spatia_5b_for_the_steps_of_its_quality_preset(tmp_path, monkeypatch):
    """The tiny random-weight spatia-5b (the real generator and pipeline) denoises exactly the
    steps the draft preset names for spatia-5b, with its guidance, at the authors' seed (a copy of
    the presets whose draft runs 3 steps for spatia-5b, to keep the test short)."""
    import shutil

    root = tmp_path / "presets"
    shutil.copytree(presets.find_presets_dir(), root)
    draft = json.loads((root / "quality" / "draft.json").read_text())
    draft["generators"]["spatia-5b"]["steps"] = 3
    (root / "quality" / "draft.json").write_text(json.dumps(draft))
    monkeypatch.setenv(presets.PRESETS_DIR_ENV, str(root))
    generator = SpatiaGenerator(pipeline=tiny_spatia_pipeline(seed=0), runtime=RuntimeOptions(device="cpu"))
    stages = []
    shot = render_shot(tmp_path, frames=5, quality="draft")
    expected = presets.generator_settings("spatia-5b", "draft")
    assert expected.steps == 3 != presets.quality("draft").steps
    from spatia.engine.models.depth_exact import ExactDepth

    exact = ExactDepth(np.full((H, W), 3.0, np.float32), turning(5).cameras.intrinsics[0])
    report = run_shot(shot, tmp_path / "out", generator=generator, depth=exact, progress=lambda f, s: stages.append(s))
    (record,) = report["rounds"]
    assert record["generator_info"]["steps"] == record["steps"] == expected.steps
    assert record["generator_info"]["guidance"] == record["guidance"] == expected.guidance
    assert record["seed"] == REFERENCE_SEED  # the shot sets none: the model's own
    assert f"round 1/1: denoising step {expected.steps}/{expected.steps}" in stages
    assert not any(f"denoising step {expected.steps + 1}/" in s for s in stages)


def test_shot_values_win_over_the_preset_and_the_command_line_over_the_shot(tmp_path):
    shot = render_shot(tmp_path, quality="draft", steps=3, seed=11)
    assert main(["generate", "--shot", str(shot), "--out", str(tmp_path / "a")]) == 0
    (record,) = rounds_of(tmp_path / "a")
    assert (record["steps"], record["guidance"], record["seed"]) == (3, presets.quality("draft").guidance, 11)
    assert main(["generate", "--shot", str(shot), "--out", str(tmp_path / "b"), "--quality", "final",
                 "--steps", "5", "--seed", "2"]) == 0
    (record,) = rounds_of(tmp_path / "b")
    assert (record["steps"], record["guidance"], record["seed"]) == (5, presets.quality("final").guidance, 2)


def test_the_command_line_runs_a_case_at_its_quality_preset(tmp_path, monkeypatch):
    from spatia.engine.models.depth_exact import ExactDepth
    from spatia.engine.run import run_case

    rng = np.random.default_rng(1)
    trajectory = turning(9)
    write_reference_case(tmp_path / "case", ReferenceCase(image=first_view(rng), trajectory=trajectory,
                                                          prompts=["a room"]))
    exact = ExactDepth(np.full((H, W), 3.0, np.float32), trajectory.cameras.intrinsics[0])
    report = run_case(tmp_path / "case", tmp_path / "a", depth=exact, quality="draft")
    draft = presets.generator_settings("preview", "draft")
    assert [(r["steps"], r["guidance"], r["seed"]) for r in report["rounds"]] == [(draft.steps, draft.guidance,
                                                                                   REFERENCE_SEED)]
    standard = presets.generator_settings("preview")
    assert [r["steps"] for r in run_case(tmp_path / "case", tmp_path / "b", depth=exact)["rounds"]] == [standard.steps]
    # the command line names an unknown preset before it writes anything
    assert main(["generate", "--case", str(tmp_path / "case"), "--out", str(tmp_path / "c"), "--quality", "best"]) == 2
    assert not (tmp_path / "c").exists()


def test_the_service_runs_a_job_at_its_shot_quality():
    from spatia.service.runner import generate_settings

    spec = load_shot(render_shot_dict(generator="spatia-5b", quality="draft"))
    settings = generate_settings(spec)
    draft = presets.quality("draft", generator="spatia-5b")
    assert (settings.steps, settings.guidance, settings.seed) == (draft.steps, draft.guidance, REFERENCE_SEED)
    default = generate_settings(load_shot(render_shot_dict(generator="spatia-5b")))
    assert default.steps == 40 and default.seed == REFERENCE_SEED  # the paper's steps and the authors' seed
    assert generate_settings(load_shot(render_shot_dict(generator="preview"))).seed == 0


def render_shot_dict(**fields) -> dict:
    spec = ShotSpec.from_trajectory(turning(9), ["a room"], name="s", **fields)
    return json.loads(json.dumps(spec.model_dump(mode="json", by_alias=True)))


def test_blender_shots_carry_the_quality_and_leave_the_seed_to_the_model():
    pytest.importorskip("spatia_blender.payloads")
    from spatia_blender import payloads

    exported = {"width": W, "height": H, "fps": 24.0, "frames": [1, 2], "intrinsics": [[40.0, 40.0, 32.0, 16.0]] * 2,
                "w2c": [np.eye(4).tolist()] * 2}
    shot = load_shot(payloads.build_shot(exported, ["a room"], generator="spatia-5b", quality="draft"))
    run = shot.generation()
    assert "seed" not in payloads.build_shot(exported, ["a room"]) and shot.seed is None
    assert (run.steps, run.seed) == (presets.quality("draft", generator="spatia-5b").steps, REFERENCE_SEED)
    own = load_shot(payloads.build_shot(exported, ["a room"], generator="spatia-5b", seed=0, steps=7)).generation()
    assert (own.steps, own.seed) == (7, 0)

