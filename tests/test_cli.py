"""The `spatia` command line and the file-driven pipeline, on a small synthetic case."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from spatia.cameras import Cameras, Trajectory
from spatia.formats.reference_case import ReferenceCase, read_reference_case, write_reference_case
from spatia.cli.main import main
from spatia.engine.models.depth_exact import ExactDepth
from spatia.engine.run import run_case
from spatia.engine.world import GenerateSettings

W, H = 64, 48


def box_room_case(tmp_path: Path, frames: int = 30, prompts=("a grey box room",)) -> tuple[Path, np.ndarray]:
    """A camera turning inside a box; the first image is a gradient, depth a plane at 3 m."""
    yaw = np.radians(np.linspace(0, 40, frames))
    eye = np.zeros((frames, 3))
    target = np.stack([np.sin(yaw), np.cos(yaw), np.zeros(frames)], axis=1)
    cams = Cameras.look_at(eye, target, up=(0, 0, 1), width=W, height=H)
    image = np.zeros((H, W, 3), dtype=np.uint8)
    image[..., 0] = np.linspace(0, 255, W, dtype=np.uint8)[None]
    image[..., 1] = np.linspace(0, 255, H, dtype=np.uint8)[:, None]
    image[..., 2] = 128
    folder = tmp_path / "case"
    write_reference_case(folder, ReferenceCase(image=image, trajectory=Trajectory(cams, 24.0), prompts=list(prompts)))
    depth = np.full((H, W), 3.0, dtype=np.float32)
    return folder, depth


def small_rounds():
    return GenerateSettings(first_round_frames=17, round_frames=13, overlap=5)


def test_run_case_writes_video_memory_versions_cameras_and_report(tmp_path):
    folder, depth = box_room_case(tmp_path, frames=25)
    case = read_reference_case(folder)
    out = tmp_path / "out"
    report = run_case(folder, out, depth=ExactDepth(depth, case.cameras.intrinsics[0]), settings=small_rounds())
    assert report["summary"]["frames"] == 25 and report["summary"]["rounds"] == 2  # 17, then 13 with 5 overlapping
    assert (out / "video.mp4").stat().st_size > 0
    # one layout for every command: video.mp4, memory.ply (the final version; every version stays
    # in the world's store), cameras.json, report.json, world/
    assert sorted(p.name for p in out.iterdir()) == ["cameras.json", "memory.ply", "report.json", "video.mp4", "world"]
    assert report["summary"]["memory_ply"] == str(out / "memory.ply")
    assert report["summary"]["memory_versions"] == [1, 2, 3]
    # loop closure in the report: the memory at the first camera, per round
    assert len(report["summary"]["memory_vs_first_psnr_per_round"]) == 2
    assert all(p > 20 for p in report["summary"]["memory_vs_first_psnr_per_round"])
    assert all("revisits" in r["loop_closure"] for r in report["rounds"])
    cams = json.loads((out / "cameras.json").read_text())
    np.testing.assert_allclose(cams["w2c"], case.cameras.w2c, atol=1e-12)
    assert json.loads((out / "report.json").read_text())["summary"] == report["summary"]
    # the first generated frame is the case's image
    from spatia.formats.video import read_image

    np.testing.assert_array_equal(read_image(out / "world" / "frames" / "000000.png"), case.image)


def test_generate_without_weights_names_the_download_command_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("SPATIA_MODELS_DIR", raising=False)
    folder, _ = box_room_case(tmp_path)
    out = tmp_path / "out"
    assert main(["generate", "--case", str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "depth-pro" in err and "spatia models download depth-pro" in err
    assert not out.exists()


def test_a_case_runs_with_the_authors_seed_unless_told_otherwise(tmp_path):
    folder, depth = box_room_case(tmp_path, frames=9)
    case = read_reference_case(folder)
    exact = ExactDepth(depth, case.cameras.intrinsics[0])
    report = run_case(folder, tmp_path / "a", depth=exact)
    assert [r["seed"] for r in report["rounds"]] == [20917]
    assert [r["seed"] for r in run_case(folder, tmp_path / "b", depth=exact, seed=5)["rounds"]] == [5]


def test_the_papers_update_mode_needs_mapanything_and_says_so_before_writing(tmp_path, capsys):
    folder, _ = box_room_case(tmp_path)
    out = tmp_path / "out"
    assert main(["generate", "--case", str(folder), "--out", str(out), "--update-mode", "mapanything-rebuild"]) == 2
    assert "map-anything" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(SystemExit):
        main(["generate", "--case", str(folder), "--out", str(out), "--retrieval", "best"])


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda f: (f / "w2c.txt").write_text("[[1, 0, 0, 0], [0, 1, 0]]\n"), "w2c.txt"),
        (lambda f: (f / "prompt.txt").unlink(), "prompt.txt"),
        (lambda f: (f / "img.jpg").write_bytes(b"not an image"), "img.jpg"),
    ],
)
def test_bad_case_input_is_a_clear_error(tmp_path, capsys, breakage, message):
    folder, _ = box_room_case(tmp_path)
    breakage(folder)
    out = tmp_path / "out"
    assert main(["generate", "--case", str(folder), "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_fewer_prompts_than_rounds_is_refused_before_anything_runs(tmp_path):
    folder, depth = box_room_case(tmp_path, frames=40, prompts=("one", "two"))
    case = read_reference_case(folder)
    settings = GenerateSettings(first_round_frames=13, round_frames=13, overlap=5)
    with pytest.raises(ValueError, match="fewer prompts than rounds: 2 prompts for 5 rounds"):
        run_case(folder, tmp_path / "out", depth=ExactDepth(depth, case.cameras.intrinsics[0]), settings=settings)
    assert not (tmp_path / "out").exists()


def test_cameras_convert_case_to_colmap_and_shot(tmp_path):
    folder, _ = box_room_case(tmp_path)
    assert main(["cameras", "convert", str(folder), str(tmp_path / "colmap"), "--to", "colmap"]) == 0
    assert main(["cameras", "convert", str(tmp_path / "colmap"), str(tmp_path / "shot.json"), "--to", "shot"]) == 0
    from spatia.formats.shot import load_shot

    shot = load_shot(tmp_path / "shot.json")
    assert shot.trajectory().cameras.equals(read_reference_case(folder).cameras, atol=1e-9)


def test_models_verify_checks_sha256_and_safetensors(tmp_path, monkeypatch, capsys):
    """Weights in a user folder: a blob that no longer matches its sha256 name is reported."""
    import hashlib

    from safetensors.numpy import save_file

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("SPATIA_MODELS_DIR", str(tmp_path / "models"))
    folder = tmp_path / "models" / "depth-anything-v2-metric-indoor"
    blobs = tmp_path / "blobs"
    folder.mkdir(parents=True)
    blobs.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "preprocessor_config.json").write_text("{}")
    save_file({"w": np.zeros(3, np.float32)}, str(tmp_path / "weights.safetensors"))
    content = (tmp_path / "weights.safetensors").read_bytes()
    blob = blobs / hashlib.sha256(content).hexdigest()
    blob.write_bytes(content)
    os.symlink(blob, folder / "model.safetensors")
    assert main(["models", "verify", "depth-anything-v2-metric-indoor"]) == 0
    assert "depth-anything-v2-metric-indoor: ok (3 files)" in capsys.readouterr().out

    blob.write_bytes(content[:-4])  # a truncated download
    assert main(["models", "verify", "depth-anything-v2-metric-indoor"]) == 1
    out = capsys.readouterr().out
    assert "BAD" in out and "does not match its sha256" in out


def test_generate_shot_from_a_render_init(tmp_path, capsys):
    from PIL import Image

    from spatia.formats.shot import ShotSpec, save_shot

    folder, depth = box_room_case(tmp_path, frames=25)
    case = read_reference_case(folder)
    Image.fromarray(case.image).save(tmp_path / "first.png")
    np.save(tmp_path / "first_depth.npy", depth)
    spec = ShotSpec.from_trajectory(
        case.trajectory, ["a grey box room"], name="box",
        init={"kind": "render", "image": "first.png", "depth": "first_depth.npy"},
        rounds={"first_round_frames": 17, "round_frames": 13, "overlap": 5},
    )
    save_shot(tmp_path / "shot.json", spec)
    assert main(["generate", "--shot", str(tmp_path / "shot.json"), "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["summary"]["frames"] == 25 and report["summary"]["rounds"] == 2
    # a second run into the same folder is refused rather than mixing two runs
    assert main(["generate", "--shot", str(tmp_path / "shot.json"), "--out", str(tmp_path / "out")]) == 2
    assert "already holds a run" in capsys.readouterr().err


# --- every input checked before anything is written ------------------------------------------------
def render_shot(tmp_path, *, image=None, depth=None, prompts=("a grey box room",), mask=None, frames=25,
                kind="render", first_round=17):
    """A shot file with an init from files in tmp_path; `image` / `depth` override the good ones."""
    from PIL import Image

    from spatia.formats.shot import ShotSpec, save_shot

    folder, good_depth = box_room_case(tmp_path, frames=frames)
    case = read_reference_case(folder)
    if image is None:
        Image.fromarray(case.image).save(tmp_path / "first.png")
    elif image != "missing":
        (tmp_path / "first.png").write_bytes(image)
    np.save(tmp_path / "first_depth.npy", good_depth if depth is None else depth)
    init = {"kind": kind, "image": "first.png"}
    if kind == "render":
        init["depth"] = "first_depth.npy"
    if mask is not None:
        np.save(tmp_path / "mask.npy", mask)
        init["mask"] = "mask.npy"
    spec = ShotSpec.from_trajectory(case.trajectory, list(prompts), name="box", init=init,
                                    rounds={"first_round_frames": first_round, "round_frames": 13, "overlap": 5})
    save_shot(tmp_path / "shot.json", spec)
    return tmp_path / "shot.json"


def png_of(array) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("case, message", [
    ("not an image", "cannot read image"),
    ("empty", "is empty"),
    ("missing", "does not exist"),
    ("1x1", "at least 16x16"),
    ("depth size", "init.depth is 10x10 but the shot is 64x48"),
    ("prompts", "fewer prompts than rounds"),
])
def test_a_bad_shot_input_writes_nothing_and_the_corrected_rerun_works(tmp_path, capsys, case, message):
    kwargs = {
        "not an image": dict(image=b"not an image"), "empty": dict(image=b""), "missing": dict(image="missing"),
        "1x1": dict(image=png_of(np.zeros((1, 1, 3), np.uint8))),
        "depth size": dict(depth=np.full((10, 10), 3.0, np.float32)),
        "prompts": dict(prompts=("one", "two"), frames=40, first_round=13),
    }[case]
    shot_path = render_shot(tmp_path, **kwargs)
    out = tmp_path / "out"
    assert main(["generate", "--shot", str(shot_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert not (out / "world").exists()
    fixed = render_shot(tmp_path / "fixed")
    assert main(["generate", "--shot", str(fixed), "--out", str(out)]) == 0


def test_an_image_start_without_depth_weights_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("SPATIA_MODELS_DIR", raising=False)
    shot_path = render_shot(tmp_path, kind="image")
    out = tmp_path / "out"
    assert main(["generate", "--shot", str(shot_path), "--out", str(out)]) == 2
    assert "spatia models download depth-pro" in capsys.readouterr().err
    assert not out.exists()


def test_init_mask_applies_to_a_render_start(tmp_path):
    from spatia.engine.memory import MemoryStore

    counts = []
    for name, mask in (("plain", None), ("masked", np.zeros((H, W), bool))):
        if mask is not None:
            mask[:, : W // 2] = True  # the left half is dynamic: kept out of the memory
        shot_path = render_shot(tmp_path / name, mask=mask)
        assert main(["generate", "--shot", str(shot_path), "--out", str(tmp_path / name / "out")]) == 0
        counts.append(len(MemoryStore(tmp_path / name / "out" / "world" / "memory").load(1)))
    assert 0 < counts[1] < 0.75 * counts[0], counts


def test_an_unknown_generator_lists_the_known_ones(tmp_path, capsys):
    shot_path = render_shot(tmp_path)
    out = tmp_path / "out"
    assert main(["generate", "--shot", str(shot_path), "--out", str(out), "--generator", "previw"]) == 2
    err = capsys.readouterr().err
    assert "unknown generator 'previw'" in err and "preview" in err and "Traceback" not in err
    assert not out.exists()


def test_a_tiny_case_image_and_too_many_cameras_are_refused(tmp_path, monkeypatch, capsys):
    from PIL import Image

    import spatia.engine.run as pipeline

    folder, _ = box_room_case(tmp_path, frames=25)
    monkeypatch.setattr(pipeline, "MAX_RUN_FRAMES", 20)
    assert main(["generate", "--case", str(folder), "--out", str(tmp_path / "out")]) == 2
    assert "at most 20" in capsys.readouterr().err
    monkeypatch.undo()
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(folder / "img.jpg")
    assert main(["generate", "--case", str(folder), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "img" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
