"""The parts of object memory one by one: the store refuses what was altered, the motion model
(parked, damped, stopped by walls, overridden by a path), association's gates, registration,
instance splitting, directions, compositing, and what generators are handed."""

from dataclasses import replace

import numpy as np
import pytest

from object_scenes import Mover, Street, cameras
from spatia.cameras import Cameras
from spatia.engine.models import GenerationRequest
from spatia.engine.models.segment import UserMasks
from spatia.engine.models.spatia.generator import MAX_REFERENCES, control_inputs, with_object_references
from spatia.engine.objects import (
    Direction,
    ObjectDirectionError,
    ObjectSet,
    ObjectStore,
    ObjectStoreError,
    apply_directions,
    associate,
    draw_objects,
    observe,
    predict,
    register,
    rotation,
    split_components,
)
from spatia.engine.objects.associate import new_track
from spatia.engine.objects.model import CROP_SIZE, Crop, ObjectTrack
from spatia.engine.objects.motion import draw_limit, interpolate
from spatia.engine.objects.observe import colour_histogram

UP = np.array([0.0, 0.0, 1.0])
FPS = 8.0


def box(size=(1.6, 0.8, 0.6), step=0.1):
    half = np.array(size) / 2
    g = [np.arange(-h, h + 1e-9, step) for h in half]
    pts = np.stack(np.meshgrid(*g, indexing="ij"), axis=-1).reshape(-1, 3)
    surface = (np.abs(np.abs(pts) - half) < 1e-6).any(axis=1)
    return pts[surface].astype(np.float32)


def track(object_id=1, frames=(0, 8, 16), start=(0.0, 0.0, 0.3), velocity=(1.0, 0.0, 0.0), label="car",
          colour=(200, 30, 30)):
    xyz = box()
    frames = np.array(frames, np.int64)
    position = np.asarray(start) + np.outer(frames / FPS, velocity)
    rgb = np.tile(np.array(colour, np.uint8), (len(xyz), 1))
    crop = Crop(frame=int(frames[-1]), score=10.0, rgb=np.full((CROP_SIZE, CROP_SIZE, 3), 200, np.uint8),
                mask=np.ones((CROP_SIZE, CROP_SIZE), bool))
    hist = colour_histogram(rgb)
    return ObjectTrack(id=object_id, label=label, xyz=xyz, rgb=rgb, key_frame=frames, key_position=position,
                       key_heading=np.zeros(len(frames)), appearance=hist, spacing=0.1, crops=(crop,)).with_seen(frames)


# --- the store ----------------------------------------------------------------------------------
def test_store_round_trips_and_refuses_an_altered_or_truncated_file(tmp_path):
    objects = ObjectSet(up=UP, next_id=3, objects=(track(1), track(2, label="person", colour=(20, 20, 220))))
    store = ObjectStore(tmp_path / "objects")
    version = store.save(objects, parent=None, memory_version=4, message="test")
    loaded, meta = ObjectStore(tmp_path / "objects").load_with_meta(version)
    assert meta["memory_version"] == "4" and loaded.next_id == 3 and loaded.ids() == [1, 2]
    for a, b in zip(objects.objects, loaded.objects):
        np.testing.assert_array_equal(a.xyz, b.xyz)
        np.testing.assert_array_equal(a.key_position, b.key_position)
        np.testing.assert_array_equal(a.seen, b.seen)
        np.testing.assert_array_equal(a.crops[0].rgb, b.crops[0].rgb)
        assert (a.label, a.condition, a.reference) == (b.label, b.condition, b.reference)
    path = store.path(version)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x40  # one bit of a crop pixel
    path.write_bytes(bytes(data))
    with pytest.raises(ObjectStoreError, match=r"v000001\.safetensors: content sha256 mismatch"):
        ObjectStore(tmp_path / "objects").load(version)
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(ObjectStoreError, match=r"v000001\.safetensors: (file is truncated|cannot be read)"):
        ObjectStore(tmp_path / "objects").load(version)
    with pytest.raises(ObjectStoreError, match="object version 9 does not exist"):
        store.load(9)


# --- the motion model ---------------------------------------------------------------------------
def test_a_parked_object_stays_and_a_moving_one_travels_with_growing_uncertainty():
    parked = track(velocity=(0.05, 0.0, 0.0), frames=np.arange(0, 17, 2))
    path = predict(parked, np.arange(16, 60), FPS, UP)
    assert path.source == "parked"
    np.testing.assert_allclose(path.position[:, :2], np.tile(parked.key_position[-1][:2], (44, 1)), atol=0.1)
    moving = track(velocity=(1.0, 0.0, 0.0), frames=np.arange(0, 17, 2))
    path = predict(moving, np.arange(17, 80), FPS, UP)
    assert path.source == "motion"
    # the most likely hypothesis goes on at its velocity
    np.testing.assert_allclose(path.position[:8, 0], moving.key_position[-1][0] + np.arange(1, 9) / FPS, atol=0.05)
    # the uncertainty grows the longer it is unseen: drawn at first, not after a long while
    assert np.all(np.diff(path.sigma) > 0)
    assert path.drawn[0] and not path.drawn[-1]
    assert path.sigma[path.drawn].max() <= draw_limit(moving, UP) < path.sigma[~path.drawn].min()
    # one badly registered pose does not stop it
    noisy = replace(moving, key_frame=np.array([0, 2, 4, 6, 8]), key_heading=np.zeros(5),
                    key_position=np.array([[0, 0, .3], [.25, 0, .3], [.5, 0, .3], [.75, 0, .3], [1.5, 0.05, .3]]))
    assert predict(noisy, np.array([16]), FPS, UP).source == "motion"


def test_the_motion_model_stops_at_the_memorys_surfaces():
    moving = track(velocity=(1.0, 0.0, 0.0))  # at x = 2 at frame 16, heading for a wall at x = 4
    gy, gz = np.meshgrid(np.arange(-2, 2, 0.05), np.arange(0, 2, 0.05))
    wall = np.stack([np.full(gy.size, 4.0), gy.ravel(), gz.ravel()], axis=1)
    ground = np.stack([*np.meshgrid(np.arange(0, 8, 0.1), np.arange(-2, 2, 0.1)), np.zeros((40, 80))], -1).reshape(-1, 3)
    frames = np.arange(17, 120)
    free = predict(moving, frames, FPS, UP, obstacles=ground)
    blocked = predict(moving, frames, FPS, UP, obstacles=np.concatenate([wall, ground]))
    assert free.position[-1, 0] > 5  # the ground alone does not stop it
    front = blocked.position[:, 0] + 0.8  # the box's leading face
    assert front.max() < 4.0 + 0.05 and front.max() > 3.5  # it stops right before the wall
    assert np.all(np.diff(blocked.position[:, 0]) >= -0.01)  # and stays there, however long
    assert np.ptp(blocked.position[20:, 0]) < 0.15


def test_an_artist_path_is_interpolated_held_and_turns_the_short_way():
    t = track()
    path = ((20, 30), np.array([[0, 0, 0.3], [2, 0, 0.3]]), np.array([3.0, -3.0]))
    out = predict(t, np.array([10, 20, 25, 30, 40]), FPS, UP, path=path)
    assert out.source == "path"
    np.testing.assert_allclose(out.position[:, 0], [0, 0, 1, 2, 2])
    # from 3 rad to -3 rad the short way is through pi, not through 0
    assert abs(abs(out.heading[2]) - np.pi) < 1e-9
    np.testing.assert_allclose(interpolate([0], [[1, 2, 3]], [0.5], [5, 9])[0], [[1, 2, 3]] * 2)


# --- association and registration ----------------------------------------------------------------
def _obs_of(t: ObjectTrack, frames, position_offset=(0, 0, 0)):
    """Observations of a track seen whole at its (offset) poses."""
    from spatia.engine.objects.observe import Observation

    out = []
    for f in frames:
        p, h = interpolate(t.key_frame, t.key_position, t.key_heading, [f])
        xyz = t.xyz @ rotation(UP, h[0]).T + p[0] + position_offset
        out.append(Observation(instance=0, frame=int(f), xyz=xyz, rgb=t.rgb, spacing=0.1, crop=None))
    return out


def test_association_uses_prediction_appearance_and_labels():
    a = track(1, start=(0, 0, 0.3), velocity=(1, 0, 0))
    b = track(2, start=(0, 3, 0.3), velocity=(-1, 0, 0))
    paths = {t.id: predict(t, np.arange(16, 40), FPS, UP) for t in (a, b)}
    later = lambda t: replace(t, key_frame=np.array([32]), key_position=paths[t.id].at([32])[0], key_heading=np.zeros(1))
    clip = {7: _obs_of(later(b), [32]), 9: _obs_of(later(a), [32])}
    assert associate([a, b], paths, clip, {7: "car", 9: "car"}, UP, FPS) == {7: 2, 9: 1}
    assert associate([a, b], paths, clip, {7: "person", 9: "car"}, UP, FPS) == {7: None, 9: 1}  # labels differ
    far = {7: _obs_of(later(a), [32], position_offset=(5, 0, 0))}
    # beyond every hypothesis' gate but within reach, looking the same: re-identified
    assert associate([a, b], paths, far, {}, UP, FPS) == {7: 1}
    farther = {7: _obs_of(later(a), [32], position_offset=(60, 0, 0))}
    assert associate([a, b], paths, farther, {}, UP, FPS) == {7: None}  # beyond reach: a new object
    blue = {7: [replace(o, rgb=np.tile(np.array([20, 20, 230], np.uint8), (len(o.rgb), 1)))
                for o in _obs_of(later(a), [32])]}
    assert associate([a, b], paths, blue, {}, UP, FPS) == {7: None}  # looks nothing like it


def test_registration_recovers_a_shift_and_a_turn_from_a_partial_view():
    t = track()
    truth_p, truth_h = np.array([3.0, 1.0, 0.3]), 0.3
    seen = t.xyz[t.xyz[:, 1] < -0.35]  # one long side only
    xyz = seen.astype(np.float64) @ rotation(UP, truth_h).T + truth_p
    p, h, fit = register(t, xyz, truth_p + [0.45, -0.2, 0.0], truth_h - 0.1, UP)
    np.testing.assert_allclose(p, truth_p, atol=0.05)
    assert abs(h - truth_h) < 0.03 and fit > 0.95
    assert register(t, xyz + [0, 0, 3.0], truth_p, truth_h, UP)[2] < 0.5  # nothing like it: a poor fit


def test_new_tracks_take_their_origin_from_the_first_view_and_observe_instances_from_renders():
    street = Street([Mover("car", (-1.0, 6.0, 0.3), (0.0, 0.0, 0.0))])
    cams = cameras([90.0, 90.0])
    rgb, depth, ids = street.frames([0, 1], cams)
    clip = observe(rgb, depth, cams, [0, 1], ids, UP)
    assert list(clip) == [1] and len(clip[1]) == 2 and not clip[1][0].partial
    made = new_track(4, "car", clip[1], UP, 0.05)
    np.testing.assert_allclose(made.key_position[0], clip[1][0].centroid)
    assert made.key_heading[0] == 0 and made.best_crop() is not None
    assert np.allclose(made.key_position[1], made.key_position[0], atol=0.03)  # parked: same pose again
    # cut by the image's edge: seen, but no pose and no crop from it
    edge = Street([Mover("car", (-3.2, 6.0, 0.3), (0.0, 0.0, 0.0))])
    rgb, depth, ids = edge.frames([0], cams[:1])
    assert observe(rgb, depth, cams[:1], [0], ids, UP)[1][0].partial


def test_components_keep_their_ids_while_they_move_less_than_their_size():
    masks = np.zeros((3, 20, 30), bool)
    for f in range(3):
        masks[f, 2:8, 2 + f:8 + f] = True
        masks[f, 12:18, 20 - f:26 - f] = True
    ids = split_components(masks)
    left, right = ids[:, 4, 5], ids[:, 14, 22]
    assert len(set(left)) == 1 and len(set(right)) == 1 and left[0] != right[0] and 0 not in (left[0], right[0])


def test_integer_user_masks_are_instances_and_plain_ones_are_split():
    frames = np.zeros((2, 10, 10, 3), np.uint8)
    labelled = np.zeros((2, 10, 10), np.int32)
    labelled[:, 1:4, 1:4], labelled[:, 6:9, 6:9] = 7, 9
    ids, _ = UserMasks(labelled).segment_instances(frames)
    np.testing.assert_array_equal(ids, labelled)
    ids, _ = UserMasks(labelled > 0).segment_instances(frames)
    assert len(np.unique(ids[0])) == 3 and ids[0, 2, 2] == ids[1, 2, 2] != ids[0, 7, 7]


# --- directions ------------------------------------------------------------------------------------
def test_directions_forget_copy_and_switch():
    objects = ObjectSet(up=UP, next_id=3, objects=(track(1), track(2)))
    copy = Direction(id=5, path_frames=(30,), path_position=((1.0, 2.0, 0.3),), path_heading=(0.5,), copy_of=1)
    out = apply_directions(objects, [copy, Direction(id=2, condition=False)], forget=[1])
    assert out.ids() == [2, 5] and out.next_id == 6
    assert out.get(2).condition is False and out.get(5).condition is True
    np.testing.assert_array_equal(out.get(5).key_position, [[1.0, 2.0, 0.3]])
    np.testing.assert_array_equal(out.get(5).xyz, objects.get(1).xyz)
    with pytest.raises(ObjectDirectionError, match="cannot forget objects \\[8\\]"):
        apply_directions(objects, [], forget=[8])
    with pytest.raises(ObjectDirectionError, match="object 6 is not remembered"):
        apply_directions(objects, [Direction(id=6)])
    with pytest.raises(ObjectDirectionError, match="id is taken"):
        apply_directions(objects, [replace(copy, id=2)])


# --- compositing and what generators get --------------------------------------------------------------
def test_objects_replace_farther_memory_pixels_and_fill_holes_but_hide_behind_nearer_ones():
    """A car drawn into a projection with a near wall on the left, a far wall in the middle and a
    hole on the right: hidden behind the near wall, drawn over the far one, filling the hole; a second car
    behind it is hidden by it; drawing over cropped, batched windows matches one frame at a time."""
    cams = cameras([90.0, 95.0])
    rgb = np.full((2, 64, 96, 3), 50, np.uint8)
    depth = np.zeros((2, 64, 96), np.float32)
    depth[:, :, :44], depth[:, :, 44:52] = 2.0, 20.0
    hole = depth == 0
    car, behind = track(1, frames=(0,), start=(0.0, 6.0, 0.3)), track(2, frames=(0,), start=(0.0, 8.0, 0.3))
    paths = {t.id: predict(t, np.array([0, 1]), FPS, UP) for t in (car, behind)}
    def fresh():
        d = np.zeros((2, 64, 96), np.float32)
        d[:, :, :44], d[:, :, 44:52] = 2.0, 20.0
        return np.full((2, 64, 96, 3), 50, np.uint8), d, d == 0

    alone = draw_objects(*fresh(), [behind], paths, cams, UP)
    ids = draw_objects(rgb, depth, hole, [car, behind], paths, cams, UP)
    assert 0 < (ids == 2).sum() < (alone == 2).sum()  # partly hidden by the nearer car
    np.testing.assert_array_equal(ids == 1, draw_objects(*fresh(), [car], paths, cams, UP) == 1)
    drawn = ids[0] == 1
    assert drawn[:, 44:52].any() and drawn[:, 52:].any() and not drawn[:, :44].any()
    assert (rgb[0][drawn] != 50).any(axis=-1).all() and not hole[0][drawn].any()
    assert np.all((depth[0][drawn] > 5) & (depth[0][drawn] < 7))
    one_by_one = np.zeros_like(ids)
    for f in range(2):
        r, d, h = (a[f:f + 1] for a in fresh())
        single = {t.id: predict(t, np.array([f]), FPS, UP) for t in (car, behind)}
        one_by_one[f] = draw_objects(r, d, h, [car, behind], single, cams[f:f + 1], UP)[0]
    np.testing.assert_array_equal(ids, one_by_one)


def _request(frames=3, **kwargs):
    cams = Cameras.look_at([[0, -3, 1]] * frames, [0, 0, 1], width=32, height=32)
    return GenerationRequest(prompt="p", projection=np.zeros((frames, 32, 32, 3), np.uint8),
                             projection_depth=np.zeros((frames, 32, 32), np.float32),
                             hole_mask=np.ones((frames, 32, 32), bool), cameras=cams, **kwargs)


def test_requests_check_object_points_and_references():
    with pytest.raises(ValueError, match="come together"):
        _request(frame_points_xyz=[np.zeros((0, 3), np.float32)] * 3)
    with pytest.raises(ValueError, match=r"one entry per frame \(3\)"):
        _request(frame_points_xyz=[np.zeros((0, 3), np.float32)], frame_points_rgb=[np.zeros((0, 3), np.uint8)])
    with pytest.raises(ValueError, match=r"frame_points_xyz\[1\] must be finite"):
        _request(frame_points_xyz=[np.zeros((0, 3), np.float32), np.full((1, 3), np.nan, np.float32),
                                   np.zeros((0, 3), np.float32)], frame_points_rgb=[np.zeros((0, 3), np.uint8)] * 3)
    with pytest.raises(ValueError, match="start_frame must be an integer >= 0"):
        _request(start_frame=-1)
    with pytest.raises(ValueError, match="object_references must be uint8"):
        _request(object_references=np.zeros((1, 8, 8, 3), np.float32))


def test_spatia_draws_object_points_into_their_frames_only_and_fills_free_reference_slots():
    rng = np.random.default_rng(0)
    static = (rng.random((500, 3)) * [4, 0.1, 2] + [-2, 3, 0]).astype(np.float32)
    car = (rng.random((300, 3)) * 0.4 + [-0.2, 1.0, 0.8]).astype(np.float32)
    empty = np.zeros((0, 3), np.float32)
    base = dict(points_xyz=static, points_rgb=np.full((500, 3), 90, np.uint8))
    with_car = _request(**base, frame_points_xyz=[empty, car, empty],
                        frame_points_rgb=[np.zeros((0, 3), np.uint8), np.full((300, 3), 250, np.uint8),
                                          np.zeros((0, 3), np.uint8)])
    plain = _request(**base)
    video, score, info = control_inputs(with_car)
    video0, score0, _ = control_inputs(plain)
    assert info["control_object_frames"] == 1
    np.testing.assert_array_equal(video[[0, 2]], video0[[0, 2]])
    assert (video[1] != video0[1]).any() and video[1].max() > 200 and video0[1].max() < 120
    crops = np.full((3, 8, 8, 3), 17, np.uint8)
    refs = with_object_references(_request(references=np.zeros((5, 32, 32, 3), np.uint8), object_references=crops))
    assert len(refs) == MAX_REFERENCES and (refs[5:] == 17).any() and (refs[5:] == 255).any()
    assert with_object_references(_request(object_references=crops)).shape == (3, 32, 32, 3)


def test_a_shots_object_directions_become_world_settings_in_video_frames():
    from spatia.formats.shot import ShotSpec
    from spatia.engine.settings import shot_settings

    frames = [{"frame": 101 + i, "intrinsics": [50, 50, 16, 16], "w2c": np.eye(4).tolist()} for i in range(3)]
    spec = ShotSpec.model_validate({
        "name": "s", "width": 32, "height": 32, "fps": 8, "frames": frames, "prompts": ["p"],
        "objects": [{"id": 4, "path": [{"frame": 111, "position": [1, 2, 0], "heading": 0.5}], "reference": False},
                    {"id": 9, "copy_of": 4, "path": [{"frame": 101, "position": [0, 0, 0]}]}],
        "forget_objects": [2], "object_memory": True})
    settings = shot_settings(spec, seed=3)
    first, copy = settings.object_directions
    assert first.path_frames == (10,) and first.path_position == ((1.0, 2.0, 0.0),) and first.reference is False
    assert copy.copy_of == 4 and copy.path_frames == (0,)
    assert settings.forget_objects == (2,) and settings.seed == 3 and settings.object_memory
    with pytest.raises(ValueError, match="both directed and forgotten"):
        ShotSpec.model_validate({**spec.model_dump(by_alias=True), "forget_objects": [4]})
    with pytest.raises(ValueError, match="give it a path"):
        ShotSpec.model_validate({**spec.model_dump(by_alias=True), "objects": [{"id": 9, "copy_of": 4}]})


def test_versions_share_the_blobs_of_unchanged_objects_and_refuse_an_altered_or_missing_one(tmp_path):
    from spatia.engine.objects.store import snapshot_bytes
    from spatia.engine.objects.store import parse_snapshot as parse_objects

    car, person = track(1), replace(track(2, label="person", colour=(20, 20, 220)), crops=())
    store = ObjectStore(tmp_path / "objects")
    store.save(ObjectSet(up=UP, next_id=3, objects=(car, person)), parent=None, memory_version=1)
    blobs = sorted((tmp_path / "objects" / "blobs").iterdir())
    assert len(blobs) == 4  # points and crops of each
    moved = car.with_keys([24], [[3.0, 0.0, 0.3]], [0.0])  # seen again: new pose, same points and crops
    store.save(ObjectSet(up=UP, next_id=3, objects=(moved, person)), parent=1, memory_version=2)
    assert sorted((tmp_path / "objects" / "blobs").iterdir()) == blobs  # nothing new written
    assert store.path(2).stat().st_size < 8_000 < sum(b.stat().st_size for b in blobs)
    np.testing.assert_array_equal(ObjectStore(tmp_path / "objects").load(2).get(1).key_frame, [0, 8, 16, 24])
    # a standalone copy (a download) reads without the store
    alone, _ = parse_objects(snapshot_bytes(store.load(2)))
    np.testing.assert_array_equal(alone.get(2).xyz, person.xyz)
    # the store's own file names its blobs: read alone it says where its points are
    with pytest.raises(ObjectStoreError, match="load it through its store"):
        parse_objects(store.path(2).read_bytes(), "v000002.safetensors")
    blob = blobs[0]
    data = bytearray(blob.read_bytes())
    data[-3] ^= 0x10
    blob.write_bytes(bytes(data))
    with pytest.raises(ObjectStoreError, match=rf"v000002\.safetensors: .*blobs/{blob.name}"):
        ObjectStore(tmp_path / "objects").load(2)
    blob.unlink()
    with pytest.raises(ObjectStoreError, match=rf"blob blobs/{blob.name} is missing"):
        ObjectStore(tmp_path / "objects").load(1)
