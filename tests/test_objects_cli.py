"""`spatia objects list | show | forget` on a world folder whose objects were made by hand."""

import json

import numpy as np
import pytest
from object_fixtures import FPS, flip_data_byte, make_objects
from spatia.cameras import Cameras
from spatia.cli.main import main
from spatia.engine.world import World

W, H = 64, 48


def flat_ground_world(folder):
    """A Blender-style world (Z up): a camera 1.5 m above flat ground, looking slightly down at it."""
    world = World.create(folder, width=W, height=H, fps=FPS)
    camera = Cameras.look_at([[0.0, 0.0, 1.5]], [[0.0, 4.0, 0.6]], up=(0, 0, 1), width=W, height=H)
    fx, fy, cx, cy = camera.intrinsics[0]
    v, u = np.mgrid[0:H, 0:W] + 0.5
    rays = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], axis=-1) @ camera.c2w[0, :3, :3].T
    depth = np.where(rays[..., 2] < -1e-3, -1.5 / np.minimum(rays[..., 2], -1e-3), 0.0).astype(np.float32)
    rgb = np.full((H, W, 3), 120, np.uint8)
    world.init_from_rgbd(rgb, depth, camera)
    return world


@pytest.fixture
def world(tmp_path):
    world = flat_ground_world(tmp_path / "world")
    assert np.array_equal(world.objects().up, [0.0, 0.0, 1.0])
    world.save_objects(make_objects(world.objects().up), parent=None, message="made by hand")
    return world


def run(capsys, *argv):
    code = main(["objects", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_prints_the_table_and_json(capsys, world):
    code, out, _ = run(capsys, "list", world.root)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "objects version 1: 2 object(s)"
    assert lines[1].split() == ["id", "label", "state", "points", "last", "seen", "keys"]
    assert lines[2].split() == ["1", "car", "parked", "300", "9", "3"]
    assert lines[3].split() == ["2", "person", "moving", "200", "9", "10"]

    code, out, _ = run(capsys, "list", world.root, "--json")
    data = json.loads(out)
    assert code == 0 and data["version"] == 1 and data["up"] == [0.0, 0.0, 1.0]
    assert [(o["id"], o["state"], o["points"], o["last_seen"]) for o in data["objects"]] == [
        (1, "parked", 300, 9), (2, "moving", 200, 9)]


def test_show_prints_keys_runs_and_crops(capsys, world):
    code, out, _ = run(capsys, "show", world.root, 1)
    assert code == 0
    assert out.startswith("object 1 (car), objects version 1: parked, 300 points")
    assert "keys (3):" in out and "frame      5  position (0.000, 0.000, 1.200)" in out
    assert "seen in frames: 0-9 (last seen: 9)" in out
    assert "crops (2):" in out and out.index("frame      7  score 50") < out.index("frame      2  score 10")

    code, out, _ = run(capsys, "show", world.root, 2, "--json")
    data = json.loads(out)
    assert code == 0 and data["id"] == 2 and data["label"] == "person" and data["version"] == 1
    assert [k["frame"] for k in data["keys"]] == list(range(10)) and data["seen"] == [[0, 10]]
    assert data["crops"] == []


def test_forget_writes_a_new_version_without_it(capsys, world):
    code, out, _ = run(capsys, "forget", world.root, 1)
    assert code == 0 and "objects version 2: forgot object 1" in out
    reopened = World.open(world.root)
    assert reopened.objects_version == 2 and reopened.objects().ids() == [2]
    assert reopened.objects(1).ids() == [1, 2]  # the old version stays
    _, meta = reopened.object_store.load_with_meta(2)
    assert meta["parent"] == "1" and meta["message"] == "forgot object 1"

    code, out, _ = run(capsys, "list", world.root, "--version", 1)
    assert code == 0 and len(out.splitlines()) == 4
    code, _, err = run(capsys, "forget", world.root, 2, "--parent", 1)  # stale: the current version is 2
    assert code == 2 and "--parent 1 is not the current objects version (2)" in err
    code, out, _ = run(capsys, "forget", world.root, 2, "--parent", 2)
    assert code == 0 and "objects version 3" in out
    assert World.open(world.root).objects().ids() == []


def test_errors_exit_2_naming_the_problem(capsys, tmp_path, world):
    code, _, err = run(capsys, "show", world.root, 7)
    assert code == 2 and "spatia objects: error:" in err and "no object 7" in err and "[1, 2]" in err
    code, _, err = run(capsys, "forget", world.root, 7)
    assert code == 2 and "no object 7" in err
    assert World.open(world.root).object_store.versions() == [1]  # nothing was written
    code, _, err = run(capsys, "list", world.root, "--version", 4)
    assert code == 2 and "objects version 4 does not exist" in err

    bare = flat_ground_world(tmp_path / "bare")
    code, out, _ = run(capsys, "list", bare.root)
    assert code == 0 and "no objects yet" in out
    code, _, err = run(capsys, "forget", bare.root, 1)
    assert code == 2 and "remembers no objects" in err
    code, _, err = run(capsys, "show", bare.root, 1)
    assert code == 2 and "remembers no objects" in err

    code, _, err = run(capsys, "list", tmp_path / "nowhere")
    assert code == 2 and "is not a world" in err

    flip_data_byte(world.root / "objects" / "v000001.safetensors")
    for argv in (["list", world.root], ["show", world.root, 1], ["forget", world.root, 1]):
        code, _, err = run(capsys, *argv)
        assert code == 2 and "objects/v000001.safetensors" in err and "sha256" in err, (argv, err)
    assert World.open(world.root).object_store.versions() == [1]


def test_generate_refuses_a_shot_naming_objects_its_world_lacks_before_writing(tmp_path, world, capsys):
    from spatia.formats.shot import ShotSpec, save_shot

    cams = Cameras.look_at([[0.0, 0.0, 1.5]] * 12, [[0.0, 4.0, 0.6]] * 12, up=(0, 0, 1), width=W, height=H)
    frames = [{"frame": 1 + i, "intrinsics": cams.intrinsics[i].tolist(), "w2c": cams.w2c[i].tolist()} for i in range(12)]
    base = {"name": "s", "width": W, "height": H, "fps": FPS, "frames": frames, "prompts": ["p"],
            "init": {"kind": "points", "points": "points.ply"}}
    new_world = save_shot(tmp_path / "new.json", ShotSpec.model_validate({**base, "forget_objects": [1]}))
    code = main(["generate", "--shot", str(new_world), "--out", str(tmp_path / "out-new")])
    assert code == 2 and "starts a new world, which remembers none" in capsys.readouterr().err
    assert not (tmp_path / "out-new").exists()
    base.pop("init")
    continued = save_shot(tmp_path / "more.json", ShotSpec.model_validate({**base, "world": str(world.root),
                                                                            "forget_objects": [9]}))
    code = main(["generate", "--shot", str(continued), "--out", str(tmp_path / "out-more")])
    assert code == 2 and "cannot forget objects [9]: the world remembers [1, 2]" in capsys.readouterr().err
    assert not (tmp_path / "out-more").exists() and world.objects_version == 1
