import json

import numpy as np
import pytest

from spatia.cameras import Cameras, Trajectory
from spatia.formats.shot import (
    ShotError,
    ShotSpec,
    dump_shot,
    load_shot,
    save_shot,
    shot_json_schema,
)

IDENTITY = np.eye(4).tolist()


def minimal_shot(**changes) -> dict:
    shot = {
        "schema": "spatia.shot",
        "version": 1,
        "name": "orbit",
        "width": 64,
        "height": 48,
        "fps": 24,
        "frames": [
            {"frame": 1, "intrinsics": [50, 50, 32, 24], "w2c": IDENTITY},
            {"frame": 2, "intrinsics": [50, 50, 32, 24], "w2c": IDENTITY},
        ],
        "prompts": ["a quiet street"],
    }
    shot.update(changes)
    return shot


def orbit(n=5):
    angles = np.linspace(0, np.pi / 2, n)
    eye = np.stack([3 * np.cos(angles), 3 * np.sin(angles), np.full(n, 1.0)], axis=1)
    return Cameras.look_at(eye, [0.0, 0.0, 0.0], width=64, height=48)


def test_defaults():
    spec = load_shot(minimal_shot())
    assert (spec.generator, spec.quality, spec.vram, spec.seed) == ("preview", "standard", "auto", None)  # None: the model's
    assert (spec.rounds.first_round_frames, spec.rounds.round_frames, spec.rounds.overlap) == (121, 81, 9)
    assert spec.steps is None and spec.guidance is None and spec.init is None and spec.world is None
    assert spec.negative_prompt == "" and spec.dynamic_prompts == []


def test_save_load_round_trip_is_exact(tmp_path):
    cams = orbit()
    spec = ShotSpec.from_trajectory(
        Trajectory(cams, 30.0), ["first", "second"], first_frame=10, name="o", seed=7, steps=20,
        dynamic_prompts=["person", "car"], init={"kind": "render", "image": "r.png", "depth": "r.exr"},
    )
    path = save_shot(tmp_path / "shot.json", spec)
    text = path.read_text()
    assert json.loads(text)["schema"] == "spatia.shot"
    back = load_shot(path)
    assert back == spec
    traj = back.trajectory()
    assert np.array_equal(traj.cameras.w2c, cams.w2c) and np.array_equal(traj.cameras.intrinsics, cams.intrinsics)
    assert traj.fps == 30.0 and traj.metadata == {"name": "o", "first_frame": 10}
    assert back.frame_numbers.tolist() == [10, 11, 12, 13, 14]
    # Saving again gives the same bytes.
    assert save_shot(tmp_path / "again.json", back).read_text() == text


def test_from_trajectory_round_trips_first_frame_through_metadata():
    traj = ShotSpec.from_trajectory(Trajectory(orbit(3)), "p", first_frame=101).trajectory()
    assert ShotSpec.from_trajectory(traj, "p").frame_numbers.tolist() == [101, 102, 103]


def test_gaps_between_frames_are_interpolated():
    cams = orbit(3)
    frames = [
        {"frame": f, "intrinsics": k, "w2c": m}
        for f, k, m in zip([1, 3, 4], [[50, 50, 32, 24], [60, 60, 32, 24], [60, 60, 32, 24]], cams.w2c.tolist())
    ]
    traj = load_shot(minimal_shot(frames=frames)).trajectory()
    assert len(traj) == 4
    assert np.array_equal(traj.cameras.w2c[[0, 2, 3]], cams.w2c)
    assert traj.cameras.intrinsics[1].tolist() == [55.0, 55.0, 32.0, 24.0]
    np.testing.assert_allclose(traj.cameras.centers[1], (cams.centers[0] + cams.centers[1]) / 2, atol=1e-12)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"sedd": 3}, "sedd: Extra inputs are not permitted"),
        ({"frames": []}, "frames: List should have at least 1 item"),
        (
            {"frames": [{"frame": 5, "intrinsics": [50, 50, 32, 24], "w2c": IDENTITY}] * 2},
            "frames: frame numbers must strictly increase: frames[1].frame = 5 follows frames[0].frame = 5",
        ),
        ({"frames": [{"frame": 1, "intrinsics": [50, 50, 32], "w2c": IDENTITY}]}, "frames[0].intrinsics: List should have at least 4 items"),
        ({"frames": [{"frame": 1, "intrinsics": [50, -1, 32, 24], "w2c": IDENTITY}]}, "frames[0].intrinsics: focal lengths fx, fy must be positive"),
        ({"frames": [{"frame": 1, "intrinsics": [50, 50, 32, 24], "w2c": IDENTITY[:3]}]}, "frames[0].w2c: must be a 4x4 matrix, got row lengths [4, 4, 4]"),
        (
            {"frames": [{"frame": 1, "intrinsics": [50, 50, 32, 24], "w2c": [[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}]},
            "frames[0].w2c: rotation is not a proper orthonormal matrix",
        ),
        (
            {"frames": [{"frame": 1, "intrinsics": [50, 50, 32, 24], "w2c": [[1, 0, 0, float("nan")], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}]},
            "frames[0].w2c[0][3]: Input should be a finite number",
        ),
        ({"frames": [{"frame": -2**63 - 1, "intrinsics": [50, 50, 32, 24], "w2c": IDENTITY}]},
         "frames[0].frame: Input should be greater than or equal to -1048574"),
        ({"frames": [{"frame": f, "intrinsics": [50, 50, 32, 24], "w2c": IDENTITY} for f in (1, 200_000)]},
         "frames: frames 1..200000 span 200000 frames; a shot holds at most 100000"),
        ({"frames": [{"frame": 1, "intrinsics": [3e38, 50, 32, 24], "w2c": IDENTITY}]}, "frames[0].intrinsics: intrinsics"),
        ({"frames": [{"frame": 1, "intrinsics": [50, 50, 32, 24],
                      "w2c": [[1, 0, 0, 1e30], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}]}, "frames[0].w2c: translation"),
        ({"prompts": []}, "prompts: List should have at least 1 item"),
        ({"prompts": ["ok", "   "]}, "prompts[1]: String should have at least 1 character"),
        ({"width": 8}, "width: Input should be greater than or equal to 16"),
        ({"height": 20000}, "height: Input should be less than or equal to 16384"),
        ({"fps": 0}, "fps: Input should be greater than 0"),
        ({"version": 2}, "version: unsupported shot spec version 2; this build reads version 1"),
        ({"schema": "spatia.world"}, "schema: Input should be 'spatia.shot'"),
        ({"init": {"kind": "render", "image": "a.png"}}, "init: kind 'render' needs depth"),
        ({"init": {"kind": "points", "points": "p.ply", "image": "a.png"}}, "init: kind 'points' does not use image"),
        ({"rounds": {"round_frames": 9, "overlap": 9}}, "rounds: overlap (9) must be smaller than round_frames (9)"),
    ],
)
def test_bad_shot_names_the_field(changes, message):
    with pytest.raises(ShotError) as err:
        load_shot(minimal_shot(**changes))
    assert message in str(err.value)


def test_bad_file_names_the_file_and_line(tmp_path):
    path = tmp_path / "shot.json"
    path.write_text('{\n  "name": "x",\n  "width": 64,,\n}\n')
    with pytest.raises(ShotError, match=r"shot\.json:3:\d+: malformed JSON"):
        load_shot(path)
    path.write_text(json.dumps(minimal_shot(typo=1)))
    with pytest.raises(ShotError, match=r"shot\.json: invalid shot spec \(1 problem\(s\)\):\n  typo: Extra inputs are not permitted"):
        load_shot(path)
    with pytest.raises(ShotError, match="missing"):
        load_shot(tmp_path / "nope.json")


def test_json_schema_describes_the_format():
    schema = shot_json_schema()
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"name", "width", "height", "fps", "frames", "prompts"}
    assert schema["properties"]["schema"]["const"] == "spatia.shot"
    assert schema["properties"]["generator"]["default"] == "preview"
    assert "schema_id" not in schema["properties"]


def test_dump_uses_json_field_names():
    data = dump_shot(load_shot(minimal_shot()))
    assert data["schema"] == "spatia.shot" and data["version"] == 1
    assert load_shot(data) == load_shot(minimal_shot())
