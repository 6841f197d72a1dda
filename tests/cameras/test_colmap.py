import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from spatia.cameras import Cameras
from spatia.formats.colmap import ColmapFormatError, read_colmap_text, write_colmap_text

pycolmap = pytest.importorskip("pycolmap")


def sample_cameras(n=4, width=65, height=47):
    c2w = np.tile(np.eye(4), (n, 1, 1))
    c2w[:, :3, :3] = Rotation.random(n, random_state=3).as_matrix()
    c2w[:, :3, 3] = np.random.default_rng(3).normal(size=(n, 3))
    k = np.array([[60.0, 61.5, 32.5, 23.5]] * n)
    k[-1] = [70.25, 70.25, 30.0, 20.0]  # a second intrinsics -> a second COLMAP camera
    return Cameras.from_c2w(k, c2w, width, height)


def cam_from_world(image) -> np.ndarray:
    pose = image.cam_from_world() if callable(image.cam_from_world) else image.cam_from_world
    return np.vstack([pose.matrix(), [0.0, 0.0, 0.0, 1.0]])


def test_pycolmap_pixel_convention_matches_ours():
    # COLMAP's default principal point is the image centre W/2, H/2 (odd sizes give .5):
    # its origin is the top-left corner of the top-left pixel, as ours.
    cam = pycolmap.Camera.create_from_model_id(1, pycolmap.CameraModelId.PINHOLE, 50.0, 65, 47)
    assert (cam.principal_point_x, cam.principal_point_y) == (32.5, 23.5)
    # And projection adds no half-pixel offset: it equals Cameras.project with the same numbers.
    cam.params = [50.0, 55.0, 32.5, 23.5]
    ours = Cameras([50.0, 55.0, 32.5, 23.5], np.eye(4), 65, 47)
    points = np.array([[0.0, 0.0, 2.0], [0.4, -0.2, 2.0], [-1.0, 0.5, 4.0]])
    uv, _ = ours.project(points)
    np.testing.assert_allclose(cam.img_from_cam(points), uv[0], atol=1e-12)
    assert uv[0, 1].tolist() == [50.0 * 0.2 + 32.5, 55.0 * -0.1 + 23.5]


def test_round_trip_is_identical(tmp_path):
    cams = sample_cameras()
    points = np.array([[0.0, 1.0, 2.0], [-1.5, 0.25, 3.0]])
    colors = np.array([[255, 0, 10], [1, 2, 3]], dtype=np.uint8)
    write_colmap_text(tmp_path, cams, ["b.png", "a.png", "c.png", "d.png"], points, colors)
    model = read_colmap_text(tmp_path)
    assert model.cameras.equals(cams, atol=1e-9)
    assert model.image_names == ["b.png", "a.png", "c.png", "d.png"]  # image-id order, not name order
    assert np.array_equal(model.points, points)
    assert model.colors.dtype == np.uint8 and model.colors.tolist() == colors.tolist()
    camera_lines = [line for line in (tmp_path / "cameras.txt").read_text().splitlines() if not line.startswith("#")]
    assert camera_lines == ["1 PINHOLE 65 47 60.0 61.5 32.5 23.5", "2 PINHOLE 65 47 70.25 70.25 30.0 20.0"]


def test_images_txt_line_is_w2c_quaternion_and_translation(tmp_path):
    # A 90 degree turn about z: w2c rotation quaternion (w, x, y, z) = (cos 45, 0, 0, sin 45).
    w2c = np.eye(4)
    w2c[:3, :3] = [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    w2c[:3, 3] = [1.0, 2.0, 3.0]
    write_colmap_text(tmp_path, Cameras([10.0, 10.0, 8.0, 6.0], w2c, 16, 12), ["x.png"])
    data = [line for line in (tmp_path / "images.txt").read_text().split("\n") if not line.startswith("#")]
    fields = data[0].split()
    np.testing.assert_allclose([float(v) for v in fields[1:5]], [np.sqrt(0.5), 0, 0, np.sqrt(0.5)], atol=1e-15)
    assert fields[5:] == ["1.0", "2.0", "3.0", "1", "x.png"]
    assert data[1] == ""  # empty POINTS2D line
    assert (tmp_path / "points3D.txt").read_text().splitlines()[-1] == "# Number of points: 0"


def test_pycolmap_reads_what_we_write(tmp_path):
    cams = sample_cameras()
    write_colmap_text(tmp_path, cams, points=[[1.0, 2.0, 3.0]], colors=[[9, 8, 7]])
    rec = pycolmap.Reconstruction(str(tmp_path))
    assert sorted(rec.images) == [1, 2, 3, 4]
    for i in range(len(cams)):
        image = rec.images[i + 1]
        assert image.name == f"frame_{i:05d}.png"
        np.testing.assert_allclose(cam_from_world(image), cams.w2c[i], atol=1e-9, rtol=0)
        camera = rec.cameras[image.camera_id]
        assert camera.model_name == "PINHOLE" and (camera.width, camera.height) == (65, 47)
        np.testing.assert_allclose(camera.params, cams.intrinsics[i], atol=1e-9, rtol=0)
    (point,) = rec.points3D.values()
    assert point.xyz.tolist() == [1.0, 2.0, 3.0] and point.color.tolist() == [9, 8, 7]


def test_we_read_what_pycolmap_writes(tmp_path):
    cams = sample_cameras()
    rec = pycolmap.Reconstruction()
    for i in range(len(cams)):
        rec.add_camera_with_trivial_rig(
            pycolmap.Camera.create_from_model_id(i + 1, pycolmap.CameraModelId.PINHOLE, 1.0, cams.width, cams.height)
        )
        rec.cameras[i + 1].params = cams.intrinsics[i]
        image = pycolmap.Image(name=f"img{i}.jpg", camera_id=i + 1, image_id=10 - i)  # ids in reverse
        rec.add_image_with_trivial_frame(image, pycolmap.Rigid3d(cams.w2c[i, :3]))
    rec.add_point3D(np.array([0.5, -0.5, 2.0]), pycolmap.Track(), np.array([1, 2, 3], dtype=np.uint8))
    rec.write_text(str(tmp_path))
    model = read_colmap_text(tmp_path)
    # Sorted by image id: 7, 8, 9, 10 are frames 3, 2, 1, 0.
    assert model.image_names == ["img3.jpg", "img2.jpg", "img1.jpg", "img0.jpg"]
    assert model.cameras.equals(cams[::-1], atol=1e-9)
    assert model.points.tolist() == [[0.5, -0.5, 2.0]] and model.colors.tolist() == [[1, 2, 3]]


def write_files(folder, cameras_txt, images_txt="1 1 0 0 0 0 0 0 1 a.png\n\n"):
    (folder / "cameras.txt").write_text(cameras_txt)
    (folder / "images.txt").write_text(images_txt)
    return folder


@pytest.mark.parametrize(
    "line, expected",
    [
        ("1 SIMPLE_PINHOLE 64 48 50 32 24", [50, 50, 32, 24]),
        ("1 SIMPLE_RADIAL 64 48 50 32 24 0", [50, 50, 32, 24]),
        ("1 RADIAL 64 48 50 32 24 0 0", [50, 50, 32, 24]),
        ("1 OPENCV 64 48 50 51 32 24 0 0 0 0", [50, 51, 32, 24]),
    ],
)
def test_undistorted_models_are_read_as_pinhole(tmp_path, line, expected):
    model = read_colmap_text(write_files(tmp_path, line + "\n"))
    assert model.cameras.intrinsics.tolist() == [expected]
    assert model.cameras.w2c.tolist() == [np.eye(4).tolist()]
    assert model.points.shape == (0, 3)  # no points3D.txt


@pytest.mark.parametrize(
    "cameras_txt, images_txt, message",
    [
        ("# c\n1 OPENCV 64 48 50 51 32 24 0.1 0 0 0\n", None, "cameras.txt:2: OPENCV camera has non-zero distortion (k1=0.1"),
        ("1 FISHEYE 64 48 50 32 24\n", None, "cameras.txt:1: camera model FISHEYE is not supported"),
        ("1 PINHOLE 64 48 50 51 32\n", None, "cameras.txt:1: PINHOLE takes 4 parameters (fx fy cx cy), got 3"),
        ("1 PINHOLE 64 48 50 nan 32 24\n", None, "cameras.txt:1: non-finite camera parameter"),
        ("1 PINHOLE 64 48 50 50 32 24\n", "# h\n\n1 1 0 0 0 0 0 a.png\n\n", "images.txt:3: expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME"),
        ("1 PINHOLE 64 48 50 50 32 24\n", "1 2 0 0 0 0 0 0 1 a.png\n\n", "images.txt:1: quaternion (QW QX QY QZ) has norm 2.000000"),
        ("1 PINHOLE 64 48 50 50 32 24\n", "1 1 0 0 0 0 0 0 7 a.png\n\n", "images.txt:1: camera id 7 is not in cameras.txt"),
        ("1 PINHOLE 64 48 50 50 32 24\n2 PINHOLE 32 24 50 50 16 12\n", "1 1 0 0 0 0 0 0 1 a.png\n\n2 1 0 0 0 0 0 0 2 b.png\n\n", "images have different sizes"),
    ],
)
def test_bad_models_are_rejected_naming_the_line(tmp_path, cameras_txt, images_txt, message):
    write_files(tmp_path, cameras_txt, *([images_txt] if images_txt else []))
    with pytest.raises(ColmapFormatError) as err:
        read_colmap_text(tmp_path)
    assert message in str(err.value)


def test_points2d_line_is_consumed_even_when_not_empty(tmp_path):
    images = "1 1 0 0 0 0 0 0 1 a.png\n10.5 20.5 -1 3.0 4.0 7\n2 1 0 0 0 1 0 0 1 b.png\n\n"
    model = read_colmap_text(write_files(tmp_path, "1 PINHOLE 64 48 50 50 32 24\n", images))
    assert model.image_names == ["a.png", "b.png"]
    assert model.cameras.w2c[1, :3, 3].tolist() == [1.0, 0.0, 0.0]


def test_writer_rejects_names_colmap_cannot_hold(tmp_path):
    with pytest.raises(ColmapFormatError, match="contains whitespace"):
        write_colmap_text(tmp_path, sample_cameras(1), ["my image.png"])
    with pytest.raises(ColmapFormatError, match="2 image names for 1 cameras"):
        write_colmap_text(tmp_path, sample_cameras(1), ["a.png", "b.png"])
    assert not (tmp_path / "cameras.txt").exists()
