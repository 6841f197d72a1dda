"""Reference test-case folders and nerfstudio transforms.json."""

import json

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from spatia.cameras import Cameras, Trajectory
from spatia.formats.nerfstudio import NerfstudioFormatError, read_nerfstudio, write_nerfstudio
from spatia.formats.reference_case import (
    ReferenceCase,
    ReferenceCaseError,
    read_reference_case,
    write_reference_case,
)

# Lines as the Spatia reference cases write them (numpy-style intrinsics, python-list poses).
INTRINSICS_LINE = "[0.8246414596970016 1.4608655657087053 0.49907563551972733 0.5008032662527901]"
W2C_LINES = [
    "[[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]",
    "[[0.8, 0.0, -0.6, -0.0007], [0.0, 1.0, 0.0, 1.0e-05], [0.6, 0.0, 0.8, 0.25], [0.0, 0.0, 0.0, 1.0]]",
]


def make_case_folder(folder, width=40, height=30, w2c_lines=W2C_LINES, prompts="a street\n\nthe street at night\n"):
    folder.mkdir(exist_ok=True)
    Image.fromarray(np.full((height, width, 3), 90, dtype=np.uint8)).save(folder / "img.jpg")
    (folder / "intrinsics.txt").write_text(INTRINSICS_LINE + "\n")
    (folder / "w2c.txt").write_text("\n".join(w2c_lines) + "\n")
    if prompts is not None:
        (folder / "prompt.txt").write_text(prompts)
    return folder


def random_cameras(n=3, width=48, height=32, vary_intrinsics=False):
    c2w = np.tile(np.eye(4), (n, 1, 1))
    c2w[:, :3, :3] = Rotation.random(n, random_state=7).as_matrix()
    c2w[:, :3, 3] = np.random.default_rng(7).normal(size=(n, 3))
    k = np.array([[40.1, 41.3, 24.2, 15.9]] * n)
    if vary_intrinsics:
        k[1:] *= 1.1
    return Cameras.from_c2w(k, c2w, width, height)


# --- reference case --------------------------------------------------------------------------
def test_reference_case_reads_pixels_poses_and_prompts(tmp_path):
    case = read_reference_case(make_case_folder(tmp_path / "case"), fps=16.0)
    cams = case.cameras
    assert (cams.width, cams.height) == (40, 30)
    assert case.image.shape == (30, 40, 3) and case.image.dtype == np.uint8
    assert cams.intrinsics[0].tolist() == [
        0.8246414596970016 * 40, 1.4608655657087053 * 30, 0.49907563551972733 * 40, 0.5008032662527901 * 30
    ]
    assert cams.w2c[1, 0].tolist() == [0.8, 0.0, -0.6, -0.0007]
    assert cams.w2c[1, 1, 3] == 1e-05
    assert case.prompts == ["a street", "the street at night"]  # blank line ignored
    assert case.trajectory.fps == 16.0 and len(case.trajectory) == 2
    assert case.mask is None


def test_reference_case_round_trip_keeps_text_exactly(tmp_path):
    source = make_case_folder(tmp_path / "a")
    first = tmp_path / "b"
    write_reference_case(first, read_reference_case(source))
    assert (first / "intrinsics.txt").read_text() == INTRINSICS_LINE + "\n"
    # Python repr rewrites 1.0e-05 as 1e-05; the values are identical.
    assert (first / "w2c.txt").read_text().splitlines()[1] == (
        "[[0.8, 0.0, -0.6, -0.0007], [0.0, 1.0, 0.0, 1e-05], [0.6, 0.0, 0.8, 0.25], [0.0, 0.0, 0.0, 1.0]]"
    )
    second = tmp_path / "c"
    write_reference_case(second, read_reference_case(first))
    for name in ("intrinsics.txt", "w2c.txt", "prompt.txt"):
        assert (second / name).read_text() == (first / name).read_text()


def test_reference_case_round_trip_of_arbitrary_cameras(tmp_path):
    cams = random_cameras()
    image = np.random.default_rng(1).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    mask = np.zeros((2, 32, 48), dtype=bool)
    mask[1, 5:9, 10:20] = True
    write_reference_case(tmp_path, ReferenceCase(image, Trajectory(cams), ["go"], mask))
    back = read_reference_case(tmp_path)
    assert back.cameras.equals(cams, atol=1e-9)
    assert np.array_equal(back.cameras.w2c, cams.w2c)  # repr round-trips every bit
    assert back.prompts == ["go"]
    assert back.mask.dtype == bool and np.array_equal(back.mask, mask)
    assert back.image.shape == image.shape  # JPEG: same size, lossy pixels


def test_single_mask_is_written_as_png(tmp_path):
    mask = np.zeros((32, 48), dtype=bool)
    mask[:4, :4] = True
    case = ReferenceCase(np.zeros((32, 48, 3), np.uint8), Trajectory(random_cameras(1)), ["p"], mask)
    write_reference_case(tmp_path, case)
    assert (tmp_path / "mask.png").is_file() and not (tmp_path / "mask.npy").exists()
    back = read_reference_case(tmp_path).mask
    assert back.shape == (1, 32, 48) and back.sum() == 16 and back[0, :4, :4].all()


def test_reference_case_is_read_as_the_authors_read_it(tmp_path):
    from spatia.formats.reference_case import REFERENCE_SEED, paper_round_count

    # a 3x4 [R | t] line (their reader takes [T,3,4] or [T,4,4]) gets the row [0, 0, 0, 1]
    three_rows = W2C_LINES[1][: W2C_LINES[1].rindex(", [")] + "]"
    case = read_reference_case(make_case_folder(tmp_path / "a", w2c_lines=[W2C_LINES[0], three_rows]))
    np.testing.assert_array_equal(case.cameras.w2c[1], read_reference_case(make_case_folder(tmp_path / "b")).cameras.w2c[1])
    # any nonzero mask pixel is dynamic (theirs: astype(bool))
    folder = make_case_folder(tmp_path / "c")
    mask = np.zeros((30, 40), np.uint8)
    mask[2, 3], mask[4, 5] = 1, 200
    Image.fromarray(mask).save(folder / "mask.png")
    assert np.argwhere(read_reference_case(folder).mask[0]).tolist() == [[2, 3], [4, 5]]
    np.save(folder / "mask.npy", np.array([[[0.0] * 40] * 29 + [[0.2] + [0.0] * 39]]))
    (folder / "mask.png").unlink()
    assert np.argwhere(read_reference_case(folder).mask[0]).tolist() == [[29, 0]]
    # fewer prompts than the paper's rounds: the last one repeats (121, then 72 new frames a round)
    assert [paper_round_count(n) for n in (1, 121, 122, 193, 194, 265)] == [1, 1, 2, 2, 3, 3]
    lines = [W2C_LINES[0]] * 194
    case = read_reference_case(make_case_folder(tmp_path / "d", w2c_lines=lines, prompts="one\ntwo\n"))
    assert case.prompts == ["one", "two", "two"]
    case = read_reference_case(make_case_folder(tmp_path / "e", w2c_lines=lines, prompts="only\n"))
    assert case.prompts == ["only"]  # one prompt serves every round
    assert case.seed == REFERENCE_SEED == 20917


def test_writer_rejects_per_frame_intrinsics(tmp_path):
    case = ReferenceCase(np.zeros((32, 48, 3), np.uint8), Trajectory(random_cameras(vary_intrinsics=True)), ["p"])
    with pytest.raises(ReferenceCaseError, match="intrinsics vary per frame"):
        write_reference_case(tmp_path, case)


@pytest.mark.parametrize(
    "break_case, message",
    [
        (lambda f: (f / "prompt.txt").unlink(), "prompt.txt: missing"),
        (lambda f: (f / "prompt.txt").write_text("\n  \n"), "prompt.txt: no prompts"),
        (lambda f: (f / "w2c.txt").unlink(), "w2c.txt: missing"),
        (lambda f: (f / "img.jpg").write_bytes(b"not a jpeg"), "img.jpg: unreadable image"),
        (lambda f: (f / "intrinsics.txt").write_text("[0.8 1.4 0.5]\n"), "intrinsics.txt:1: expected 4 intrinsics (fx fy cx cy), got 3"),
        (lambda f: (f / "intrinsics.txt").write_text("0.8 1.4 0.5 0.5\n"), "intrinsics.txt:1: expected `[fx fy cx cy]`"),
        (lambda f: (f / "intrinsics.txt").write_text("[-0.8 1.4 0.5 0.5]\n"), "intrinsics.txt:1: focal lengths must be positive"),
        (
            lambda f: (f / "w2c.txt").write_text(W2C_LINES[0] + "\n\n" + W2C_LINES[1][:-1] + "\n"),
            "w2c.txt:3: expected a 4x4 (or 3x4) nested list",
        ),
        (
            lambda f: (f / "w2c.txt").write_text(W2C_LINES[0] + "\n" + W2C_LINES[1].replace("0.25", "nan") + "\n"),
            "w2c.txt:2: non-finite value",
        ),
        (
            lambda f: (f / "w2c.txt").write_text(W2C_LINES[0] + "\n" + W2C_LINES[1].replace("0.25]", "0.25, 1.0]") + "\n"),
            "w2c.txt:2: expected 4 (or 3) rows of 4 numbers, got row lengths [4, 4, 5, 4]",
        ),
        (lambda f: (f / "w2c.txt").write_text(W2C_LINES[1].replace("-0.6", "-0.5") + "\n"), "w2c.txt:1: rotation is not orthonormal"),
        (lambda f: Image.fromarray(np.zeros((10, 10), np.uint8)).save(f / "mask.png"), "mask.png: mask is 10x10 but the image is 40x30"),
        (lambda f: np.save(f / "mask.npy", np.zeros((2, 30, 41))), "mask.npy: mask is 41x30 but the image is 40x30"),
    ],
)
def test_bad_reference_case_names_file_and_line(tmp_path, break_case, message):
    folder = make_case_folder(tmp_path / "case")
    break_case(folder)
    with pytest.raises(ReferenceCaseError) as err:
        read_reference_case(folder)
    assert message in str(err.value)


# --- nerfstudio ------------------------------------------------------------------------------
def test_nerfstudio_round_trip_shared_intrinsics(tmp_path):
    cams = random_cameras()
    path = write_nerfstudio(tmp_path, cams)
    doc = json.loads(path.read_text())
    assert path.name == "transforms.json"
    assert [doc[k] for k in ("fl_x", "fl_y", "cx", "cy", "w", "h")] == [40.1, 41.3, 24.2, 15.9, 48, 32]
    assert doc["frames"][0]["file_path"] == "images/frame_00001.png"
    assert "fl_x" not in doc["frames"][1]
    back = read_nerfstudio(path)
    assert back.cameras.equals(cams, atol=1e-9)
    assert back.file_paths == ["images/frame_00001.png", "images/frame_00002.png", "images/frame_00003.png"]


def test_nerfstudio_round_trip_per_frame_intrinsics(tmp_path):
    cams = random_cameras(vary_intrinsics=True)
    write_nerfstudio(tmp_path / "t.json", cams, ["a.png", "b.png", "c.png"])
    doc = json.loads((tmp_path / "t.json").read_text())
    assert "fl_x" not in doc["frames"][0] and doc["frames"][2]["fl_x"] == cams.intrinsics[2, 0]
    back = read_nerfstudio(tmp_path / "t.json")
    assert back.cameras.equals(cams, atol=1e-9) and back.file_paths == ["a.png", "b.png", "c.png"]


def test_nerfstudio_matrix_is_opengl_camera_to_world(tmp_path):
    # OpenCV camera at (1, 2, 3) looking down world -z with y down: in OpenGL axes that
    # camera's y points up (world +y) and its z points back (world +z).
    c2w = np.eye(4)
    c2w[:3, :3] = np.diag([1.0, -1.0, -1.0])
    c2w[:3, 3] = [1.0, 2.0, 3.0]
    write_nerfstudio(tmp_path, Cameras.from_c2w([10.0, 10.0, 8.0, 6.0], c2w, 16, 12))
    matrix = json.loads((tmp_path / "transforms.json").read_text())["frames"][0]["transform_matrix"]
    assert matrix == [[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 2.0], [0.0, 0.0, 1.0, 3.0], [0.0, 0.0, 0.0, 1.0]]


def test_nerfstudio_camera_angle_x_and_defaults(tmp_path):
    doc = {"camera_angle_x": np.pi / 2, "w": 100, "h": 50, "frames": [{"file_path": "a", "transform_matrix": np.eye(4).tolist()}]}
    (tmp_path / "transforms.json").write_text(json.dumps(doc))
    k = read_nerfstudio(tmp_path).cameras.intrinsics[0]
    np.testing.assert_allclose(k, [50.0, 50.0, 50.0, 25.0], atol=1e-12)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["frames"][1].update(k1=0.1), "frames[1]: distortion `k1` = 0.1 is not supported"),
        (lambda d: d.update(camera_model="EQUIRECTANGULAR"), "camera_model 'EQUIRECTANGULAR' is not supported"),
        (lambda d: d["frames"][0].update(transform_matrix=[[1, 0, 0, 0]]), "frames[0]: `transform_matrix` must be 4x4, got shape [1, 4]"),
        (lambda d: d["frames"][2].update(w=10), "frames[2]: `w` = 10 differs from the top level (48)"),
        (lambda d: d.pop("h"), "top level needs `h`"),
        (lambda d: d.pop("fl_x"), "frames[0]: no `fl_x` in the frame or at the top level"),
        (lambda d: d.update(frames=[]), "non-empty `frames` list"),
    ],
)
def test_bad_transforms_name_the_field(tmp_path, change, message):
    path = write_nerfstudio(tmp_path, random_cameras())
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(NerfstudioFormatError) as err:
        read_nerfstudio(path)
    assert message in str(err.value)


def test_nerfstudio_nan_is_rejected(tmp_path):
    path = write_nerfstudio(tmp_path, random_cameras())
    path.write_text(path.read_text().replace('"fl_x": 40.1', '"fl_x": NaN', 1))
    with pytest.raises(NerfstudioFormatError, match="`fl_x` must be a finite number"):
        read_nerfstudio(path)


def test_nerfstudio_extra_keys_are_kept_but_cannot_replace_cameras(tmp_path):
    path = write_nerfstudio(tmp_path, random_cameras(1), extra={"ply_file_path": "points.ply"})
    assert json.loads(path.read_text())["ply_file_path"] == "points.ply"
    with pytest.raises(NerfstudioFormatError, match=r"extra keys \['fl_x'\] would overwrite"):
        write_nerfstudio(tmp_path, random_cameras(1), extra={"fl_x": 1.0})
