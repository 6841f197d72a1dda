"""What a first-time user meets: the examples are complete shots, outputs keep the user's
umask, depth files are read (.npy and OpenEXR) and checked, conversions keep the first image."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from spatia.engine.plan import plan_rounds
from spatia.engine.run import _load_init
from spatia.formats.atomic import write_atomic
from spatia.formats.depth import DepthFileError, check_depth, read_depth
from spatia.formats.shot import load_shot

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("name", ["room-render", "corridor-photo", "room-long-return"])
def test_every_example_is_a_complete_shot_that_needs_no_weights(name):
    path = EXAMPLES / name / "shot.json"
    spec = load_shot(path)
    trajectory = spec.trajectory()
    assert spec.generator == "preview" and spec.init.kind == "render"  # no model weights anywhere
    init = _load_init(spec, path.parent, trajectory)  # the files exist, have the shot's size, depth is metres
    assert init["image"].shape == (spec.height, spec.width, 3)
    assert init["depth"].shape == (spec.height, spec.width) and (init["depth"] > 0).mean() > 0.9  # the sky has none
    rounds = plan_rounds(len(trajectory), list(spec.prompts), first_round_frames=spec.rounds.first_round_frames,
                         round_frames=spec.rounds.round_frames, overlap=spec.rounds.overlap)
    assert len(rounds) >= 3
    if name == "room-long-return":  # the long shot comes back to its first view, more than once
        cams = trajectory.cameras
        back = [i for i in range(1, len(cams)) if np.abs(cams.w2c[i] - cams.w2c[0]).max() < 1e-4]
        assert len(back) >= 3 and len(rounds) >= 12


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    from spatia.engine.memory import MemoryStore, SpatialMemory

    old = os.umask(umask)
    try:
        written = write_atomic(tmp_path / "a.json", "{}")
        store = MemoryStore(tmp_path / "memory")
        version = store.save(SpatialMemory.from_points(np.zeros((3, 3), np.float32), voxel_size=0.02))
    finally:
        os.umask(old)
    assert stat.S_IMODE(written.stat().st_mode) == mode
    assert stat.S_IMODE(store.path(version).stat().st_mode) == mode


def test_depth_files_npy_and_exr_are_read_and_checked(tmp_path):
    import OpenEXR

    depth = np.linspace(0.5, 9.0, 48, dtype=np.float32).reshape(6, 8)
    depth[0, 0] = np.inf  # nothing hit: no depth
    np.save(tmp_path / "d.npy", depth)
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    OpenEXR.File(header, {"Z": depth}).write(str(tmp_path / "z.exr"))
    rgb = np.repeat(depth[..., None], 3, axis=-1)  # a depth render written as colour: R holds it
    OpenEXR.File(header, {"RGB": rgb}).write(str(tmp_path / "rgb.exr"))
    for name in ("d.npy", "z.exr", "rgb.exr"):
        read = read_depth(tmp_path / name, 8, 6)
        assert read.dtype == np.float32 and read[0, 0] == 0.0
        np.testing.assert_allclose(read.ravel()[1:], depth.ravel()[1:])
    for bad, words in [(np.nan_to_num(depth, posinf=0).astype(np.int32), "int32"), (-depth, "negative"), (np.full_like(depth, np.nan), "no usable"),
                       (np.zeros_like(depth), "no usable"), (depth[:3], "8x6"), (depth[None].repeat(2, 0), "[H, W]")]:
        with pytest.raises(DepthFileError, match=words.replace("[", r"\[").replace("]", r"\]")):
            check_depth(bad, "depth", 8, 6)
    OpenEXR.File(header, {"A": depth, "B": depth}).write(str(tmp_path / "ab.exr"))
    with pytest.raises(DepthFileError, match="no depth channel"):
        read_depth(tmp_path / "ab.exr")
    (tmp_path / "bad.exr").write_bytes(b"garbage")
    with pytest.raises(DepthFileError, match="OpenEXR"):
        read_depth(tmp_path / "bad.exr")


def test_a_case_converted_to_a_shot_keeps_its_first_image_and_back(tmp_path):
    from spatia.cameras import Cameras, Trajectory
    from spatia.formats.camera_convert import convert
    from spatia.formats.reference_case import ReferenceCase, read_reference_case, write_reference_case
    from spatia.formats.video import read_image

    yy, xx = np.mgrid[0:24, 0:32]
    image = np.stack([xx * 8, yy * 10, (xx + yy) * 4], axis=-1).astype(np.uint8)  # smooth: JPEG keeps it close
    w2c = np.repeat(np.eye(4)[None], 5, 0)
    w2c[:, 0, 3] = np.arange(5) * 0.1
    cams = Cameras(np.tile([30.0, 30.0, 16.0, 12.0], (5, 1)), w2c, 32, 24)
    mask = np.zeros((1, 24, 32), bool)
    mask[0, 5:9, 7:12] = True
    write_reference_case(tmp_path / "case", ReferenceCase(image, Trajectory(cams, 24.0), ["a street"], mask))
    shot_path = convert(tmp_path / "case", tmp_path / "shots" / "street.json", "shot")
    data = json.loads(shot_path.read_text())
    init = {k: v for k, v in data["init"].items() if v is not None}
    assert init == {"kind": "image", "image": "street.first.png", "mask": "street.mask.png"} and data["seed"] == 20917  # the case's (the authors')
    image = read_reference_case(tmp_path / "case").image  # as the case holds it (img.jpg)
    np.testing.assert_array_equal(read_image(shot_path.parent / "street.first.png"), image)
    np.testing.assert_array_equal(read_image(shot_path.parent / "street.mask.png")[..., 0] > 127, mask[0])
    back = read_reference_case(convert(shot_path, tmp_path / "again", "case"))
    assert np.abs(back.image.astype(int) - image).mean() < 3  # written again as JPEG
    np.testing.assert_allclose(back.cameras.w2c, cams.w2c, atol=1e-9)
    assert back.prompts == ["a street"]
