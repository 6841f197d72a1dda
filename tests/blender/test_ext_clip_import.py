"""A clip's import into the scene: its PNG frames behind the camera and in the sequencer, in
steps that each decode at most one frame (one step per timer tick in the interface).

Needs only bpy and the extension (no torch, no `spatia`): runs under bpy 4.2, 4.5 and 5.0."""

import os
import struct
import zlib

import pytest

pytestmark = pytest.mark.bpy


def _png(path, value: int, size=(6, 8)) -> None:
    """A small grey RGB PNG (written here so the test needs no image library)."""
    h, w = size
    raw = b"".join(b"\x00" + bytes([value]) * (3 * w) for _ in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def frames_on_disk(folder, start, end):
    """Files NNNNNN.png for video frames [start, end), frame i a grey of value i."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(start, end):
        _png(folder / f"{i:06d}.png", i)
        names.append(f"{i:06d}.png")
    return names


@pytest.fixture
def fresh():
    bpy = pytest.importorskip("bpy")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(camera)
    scene.camera = camera
    yield bpy, scene, camera
    from spatia_blender import clip_import

    clip_import.queue.clear()


def shown_file(bpy, background, frame):
    """The file the camera background reads at scene `frame`, or None where the clip is not shown."""
    bpy.context.scene.frame_set(frame)
    user = background.image_user
    if not (user.frame_start <= frame < user.frame_start + user.frame_duration) or not background.show_background_image:
        return None
    return os.path.basename(background.image.filepath_from_user(image_user=user))


def test_each_tick_runs_one_step_and_decodes_at_most_one_frame(fresh, tmp_path):
    bpy, scene, camera = fresh
    from spatia_blender import clip_import, compat

    names = frames_on_disk(tmp_path / "frames", 10, 91)  # 81 frames, the video's frames 10-90
    frames = clip_import.clip_frames("Spatia j1", str(tmp_path / "frames"), names, 11)
    steps = clip_import.ClipImport(scene.name, camera.name, frames, retire=True).steps()
    queue, done = clip_import.StepQueue(), []
    queue.add(steps, on_done=lambda: done.append(True))
    assert queue.pending == len(steps) == 3 and not done  # nothing ran yet: the timer runs it

    decodes, made = [], []
    while queue.pending:
        before = clip_import.decodes
        queue.tick()
        decodes.append(clip_import.decodes - before)
        editor = scene.sequence_editor
        made.append((len(camera.data.background_images), 0 if editor is None else len(compat.strips(editor))))
    assert len(decodes) == 3 and max(decodes) <= clip_import.DECODES_PER_STEP and sum(decodes) == 1
    assert made == [(1, 0), (1, 1), (1, 1)] and done == [True]  # the background, then the strip, then retiring
    assert queue.tick() is None  # nothing left: the timer ends
    # no movie was opened (Blender decodes a movie's first frame when it loads one)
    assert len(bpy.data.movieclips) == 0 and bpy.data.images["Spatia j1"].source == "SEQUENCE"
    assert [s.type for s in compat.strips(scene.sequence_editor)] == ["IMAGE"]
    queue.clear()


def test_the_clip_is_shown_at_its_frames_behind_the_camera_and_in_the_sequencer(fresh, tmp_path):
    bpy, scene, camera = fresh
    from spatia_blender import clip_import, compat

    names = frames_on_disk(tmp_path / "frames", 7, 19)
    result = clip_import.import_clip(scene, camera, clip_import.clip_frames("Spatia j2", str(tmp_path / "frames"), names, 30))
    background, strip, image = result["background"], result["strip"], result["image"]
    assert image.source == "SEQUENCE" and background.source == "IMAGE" and background.image == image
    assert camera.data.show_background_images and background.show_background_image and background.alpha == 1.0
    # scene frame 30 + k shows video frame 7 + k, and nothing outside the clip's 12 frames
    for k in (0, 1, 5, 11):
        assert shown_file(bpy, background, 30 + k) == f"{7 + k:06d}.png"
    assert shown_file(bpy, background, 29) is None and shown_file(bpy, background, 42) is None
    assert strip.type == "IMAGE" and strip.channel == clip_import.STRIP_CHANNEL
    assert (strip.frame_final_start, strip.frame_final_duration) == (30, 12)
    assert [e.filename for e in strip.elements] == names
    assert os.path.samefile(bpy.path.abspath(strip.directory), tmp_path / "frames")
    assert compat.strips(scene.sequence_editor)["Spatia j2"] == strip
    # importing the same clip again replaces it rather than adding a second one
    clip_import.import_clip(scene, camera, clip_import.clip_frames("Spatia j2", str(tmp_path / "frames"), names, 30))
    assert len(camera.data.background_images) == 1 and len(compat.strips(scene.sequence_editor)) == 1


def test_a_later_clip_takes_over_from_its_first_frame(fresh, tmp_path):
    bpy, scene, camera = fresh
    from spatia_blender import clip_import, compat

    def add(name, start, end):
        folder = tmp_path / name / "frames"
        clip = clip_import.clip_frames(name, str(folder), frames_on_disk(folder, start, end), 1 + start)
        return clip_import.import_clip(scene, camera, clip, retire=True)

    first, second = add("Spatia a", 0, 20), add("Spatia b", 20, 28)  # one after the other: both shown
    assert shown_file(bpy, first["background"], 6) == "000005.png"
    assert shown_file(bpy, second["background"], 25) == "000024.png"
    # the world regenerated from video frame 10: the first clip ends there, the second is retired
    third = add("Spatia c", 10, 16)
    assert (first["background"].image_user.frame_duration, first["strip"].frame_final_end) == (10, 11)
    assert not second["background"].show_background_image and second["strip"].mute
    assert shown_file(bpy, first["background"], 10) == "000009.png" and shown_file(bpy, first["background"], 11) is None
    assert shown_file(bpy, third["background"], 11) == "000010.png"
    assert not first["strip"].mute and not third["strip"].mute
    assert len(compat.strips(scene.sequence_editor)) == 3  # earlier clips stay, for comparison


def test_a_movie_clip_of_an_older_file_stays_shown_until_a_clip_covers_its_frames(fresh, tmp_path):
    bpy, scene, camera = fresh
    from spatia_blender import clip_import

    names = frames_on_disk(tmp_path / "f", 0, 4)
    (one,) = frames_on_disk(tmp_path / "m", 0, 1)
    movie = bpy.data.movieclips.load(str(tmp_path / "m" / one))  # a one-frame clip at frame 1
    assert movie.frame_duration == 1
    movie.name, movie.frame_start = "Spatia old", 1
    background = camera.data.background_images.new()
    background.source, background.clip = "MOVIE_CLIP", movie
    clip_import.import_clip(scene, camera, clip_import.clip_frames("Spatia b", str(tmp_path / "f"), names[1:], 2), retire=True)
    assert background.show_background_image  # frame 1 is still its own
    clip_import.import_clip(scene, camera, clip_import.clip_frames("Spatia c", str(tmp_path / "f"), names, 1), retire=True)
    assert not background.show_background_image


def test_bad_frames_are_refused_with_the_reason(tmp_path):
    pytest.importorskip("bpy")
    from spatia_blender import clip_import

    names = frames_on_disk(tmp_path / "f", 0, 3)
    with pytest.raises(ValueError, match="no frames"):
        clip_import.clip_frames("Spatia x", str(tmp_path / "f"), [], 1)
    with pytest.raises(ValueError, match="one after another"):
        clip_import.clip_frames("Spatia x", str(tmp_path / "f"), [names[0], names[2]], 1)
    with pytest.raises(ValueError, match="no frame number"):
        clip_import.clip_frames("Spatia x", str(tmp_path / "f"), ["cover.png"], 1)
    os.remove(tmp_path / "f" / names[1])
    with pytest.raises(FileNotFoundError, match="000001.png"):
        clip_import.clip_frames("Spatia x", str(tmp_path / "f"), names, 1)


def test_a_failing_step_ends_its_job_alone_and_a_loaded_file_drops_the_queue(fresh):
    bpy = fresh[0]
    from spatia_blender import clip_import

    ran, errors, done = [], [], []

    def boom():
        raise RuntimeError("the strip cannot be made")

    queue = clip_import.StepQueue()
    queue.add([("a", lambda: ran.append("a")), ("b", boom), ("c", lambda: ran.append("c"))],
              on_done=lambda: done.append(1), on_error=errors.append)
    queue.add([("d", lambda: ran.append("d"))], on_done=lambda: done.append(2))
    while queue.pending:
        queue.tick()
    assert ran == ["a", "d"] and done == [2] and [str(e) for e in errors] == ["the strip cannot be made"]
    with pytest.raises(RuntimeError, match="cannot be made"):
        queue.add([("b", boom)], blocking=True)

    queue.add([("e", lambda: ran.append("e"))])
    bpy.ops.wm.read_factory_settings(use_empty=True)  # the timer goes with the file it was for
    queue.add([("f", lambda: ran.append("f"))])
    while queue.pending:
        queue.tick()
    assert ran == ["a", "d", "f"]
    queue.clear()


def test_round_frames_are_the_rounds_new_frames(tmp_path):
    pytest.importorskip("bpy")
    from spatia_blender import clip_import

    frames_on_disk(tmp_path / "world" / "frames", 0, 25)
    clip = clip_import.round_frames(tmp_path / "world", {"round": 1, "start": 12, "end": 25, "overlap": 5}, 1)
    assert clip.name == "Spatia round 1" and clip.files == tuple(clip_import.frame_files(17, 25))
    assert (clip.frame_start, clip.frame_end, clip.first_number) == (18, 26, 17)
    with pytest.raises(FileNotFoundError, match="missing"):  # a world folder without its frames
        clip_import.round_frames(tmp_path / "elsewhere", {"round": 1, "start": 12, "end": 25, "overlap": 5}, 1)
