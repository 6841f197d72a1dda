"""Object memory that claims only what it has evidence for: a motion state carried across rounds
(a stop at a wall persists), hypotheses that cover a turn, a stop and a reversal while unseen,
uncertainty that stops an object being drawn, a new object rather than a poor fit, negative
evidence and the lifecycle, appearance that vetoes a swap, re-identification, registration of
large turns and finer points from a closer view."""

from dataclasses import replace

import numpy as np
import pytest

from object_scenes import H, W, cameras
from spatia.engine.objects import KeyViews, ObjectSet, ObjectStore, draw_objects, learn, predict, predict_all
from spatia.engine.objects.associate import associate, new_track, register_turns
from spatia.engine.objects.model import CROP_SIZE, Crop, ObjectTrack, rotation
from spatia.engine.objects.motion import CV, REVERSAL, STOPPED, TURN, draw_limit, fit_state, size_limit
from spatia.engine.objects.observe import Observation, bhattacharyya, colour_histogram, region_histograms
from spatia.engine.objects.tracking import LOST_EVIDENCE, carry, empty_places

UP = np.array([0.0, 0.0, 1.0])
FPS = 8.0
RED, BLUE, GREEN, GREY = (200, 30, 30), (30, 40, 200), (30, 170, 40), (120, 120, 120)


def car_points(size=(1.6, 0.8, 0.6), step=0.1, front=RED, back=BLUE):
    """A box's surface, its front half (+x) one colour and its back another: its heading is
    seen in its colours even where its shape is symmetric."""
    half = np.array(size) / 2
    g = [np.arange(-h, h + 1e-9, step) for h in half]
    pts = np.stack(np.meshgrid(*g, indexing="ij"), axis=-1).reshape(-1, 3)
    pts = pts[(np.abs(np.abs(pts) - half) < 1e-6).any(axis=1)]
    rgb = np.where(pts[:, :1] > 0, front, back).astype(np.uint8)
    return pts.astype(np.float32), rgb


def person_points(legs=GREY, shirt=RED, head=(220, 170, 140), step=0.05):
    """A 0.5 x 0.4 x 1.75 m column: legs, shirt and head bands of its own colours."""
    half = np.array([0.25, 0.2, 0.875])
    g = [np.arange(-h, h + 1e-9, step) for h in half]
    pts = np.stack(np.meshgrid(*g, indexing="ij"), axis=-1).reshape(-1, 3)
    pts = pts[(np.abs(np.abs(pts) - half) < 1e-6).any(axis=1)]
    z = pts[:, 2] + half[2]
    rgb = np.where((z < 0.85)[:, None], legs, np.where((z < 1.5)[:, None], shirt, head)).astype(np.uint8)
    return pts.astype(np.float32), rgb


def make_track(object_id, points, frames, positions, headings=None, label="car", spacing=0.1):
    xyz, rgb = points
    frames = np.asarray(frames, np.int64)
    headings = np.zeros(len(frames)) if headings is None else np.asarray(headings, float)
    t = ObjectTrack(id=object_id, label=label, xyz=xyz, rgb=rgb, key_frame=frames,
                    key_position=np.asarray(positions, float), key_heading=headings,
                    appearance=colour_histogram(rgb), spacing=spacing, regions=region_histograms(xyz, rgb, UP))
    t = t.with_seen(frames)
    seen_whole = Crop(int(frames[-1]), 1.0, np.zeros((CROP_SIZE, CROP_SIZE, 3), np.uint8), np.ones((CROP_SIZE, CROP_SIZE), bool))
    return replace(t, motion=fit_state(t, FPS, UP), crops=(seen_whole,))


def straight(object_id=1, speed=1.0, frames=np.arange(0, 25, 2), start=(0.0, 0.0, 0.3), heading=0.0, **kw):
    d = np.array([np.cos(heading), np.sin(heading), 0.0])
    pos = np.asarray(start) + np.outer(np.asarray(frames) / FPS, d * speed)
    return make_track(object_id, kw.pop("points", None) or car_points(), frames, pos, np.full(len(frames), heading), **kw)


def seen_at(track, frame, position, heading, spacing=0.1, points=None, partial=False):
    xyz, rgb = points or (track.xyz, track.rgb)
    world = xyz.astype(np.float64) @ rotation(UP, heading).T + position
    return Observation(instance=0, frame=int(frame), xyz=world, rgb=rgb, spacing=spacing, crop=None, partial=partial)


# --- the state lives across rounds ------------------------------------------------------------------
def test_a_stop_at_a_wall_persists_into_the_next_round_through_the_store(tmp_path):
    car = straight(speed=1.0)  # at x = 3 at frame 24, heading for a wall at x = 5
    gy, gz = np.meshgrid(np.arange(-2, 2, 0.05), np.arange(0, 2, 0.05))
    wall = np.stack([np.full(gy.size, 5.0), gy.ravel(), gz.ravel()], axis=1)
    objects = ObjectSet(up=UP).replaced([car])
    first = predict_all(objects, np.arange(20, 60), FPS, obstacles=wall)[1]
    assert first.position[:, 0].max() + 0.8 < 5.0 + 0.05  # stopped before the wall
    # the round saw nothing: the state is carried to its end and saved
    learned = learn(objects, {1: first}, {}, {}, 0.05, FPS)
    assert learned.changed and learned.objects.get(1).motion.frame == 59
    store = ObjectStore(tmp_path / "objects")
    again = store.load(store.save(learned.objects, parent=None, memory_version=None))
    state = again.get(1).motion
    np.testing.assert_allclose(state.x, learned.objects.get(1).motion.x, atol=1e-5)
    # the next round starts where the last one left it: still at the wall, even where the memory
    # no longer holds the wall's points (nothing restarts from the last observation)
    second = predict_all(again, np.arange(55, 100), FPS)[1]
    assert second.position[:, 0].max() + 0.8 < 5.0 + 0.35
    np.testing.assert_allclose(second.position[0], first.position[-5], atol=0.05)
    # restarted from its last observation (x = 3 at frame 24, 1 m/s) it would be at x = 12 by frame 95
    assert second.position[-1, 0] < 5.0


# --- hypotheses -------------------------------------------------------------------------------------
@pytest.mark.parametrize("truth", ["turn", "stop", "reversal"])
def test_a_manoeuvre_while_unseen_is_found_by_a_hypothesis_and_keeps_the_id(truth):
    car = straight(speed=2.0)  # at x = 6 at frame 24, heading +x
    paths = predict_all(ObjectSet(up=UP).replaced([car]), np.arange(25, 57), FPS)
    t = (56 - 24) / FPS  # 4 s unseen
    if truth == "turn":  # round a corner: 90 degrees to the left over the first second, then straight
        pos, heading = np.array([6.0 + 1.27, 1.27 + 2.0 * (t - 1.0), 0.3]), np.pi / 2
    elif truth == "stop":
        pos, heading = np.array([6.5, 0.0, 0.3]), 0.0
    else:
        pos, heading = np.array([6.0 + 1.0 - 2.0 * (t - 1.0), 0.0, 0.3]), np.pi
    clip = {5: [seen_at(car, 56, pos, heading)]}
    assert associate([car], paths, clip, {5: "car"}, UP, FPS) == {5: 1}
    learned = learn(ObjectSet(up=UP).replaced([car]), paths, clip, {5: "car"}, 0.05, FPS)
    back = learned.objects.get(1)
    assert learned.instances == {5: 1}
    # registration measured the new heading (four starting headings, colours tell the ends apart)
    assert abs(np.angle(np.exp(1j * (back.key_heading[-1] - heading)))) < 0.15
    np.testing.assert_allclose(back.key_position[-1], pos, atol=0.15)


def test_a_walker_is_drawn_against_his_breadth_not_his_height():
    """A position error lies in the ground plane, so the drawing limit is a tenth of the object's
    size there. Against his height (1.75 m), a walker who turned round while unseen and was seen
    once again was drawn up to 0.75 m from where he walked (his breadth is 0.5 m)."""
    person = make_track(1, person_points(), [0, 2], [(0, 0, 0.9), (0.3, 0, 0.9)], label="person", spacing=0.05)
    assert draw_limit(person, UP) == pytest.approx(0.1)  # 0.05, a tenth of 0.5 m, raised to MIN_DRAW_SIGMA
    assert size_limit(person) == pytest.approx(0.175)  # the lifecycle still measures against his height
    drawn_frames = 0
    for seed in range(12):
        rng = np.random.default_rng(seed)
        turn = 3.0 + 11.0 * rng.uniform(0.2, 0.8)  # seen 3 s, unseen 11 s, turned round in between

        def at(t):
            return np.array([1.2 * (t if t <= turn else 2 * turn - t), 0.0, 0.9])

        frames = [*range(0, 24, 2), 112]  # seen again once, at 14 s
        positions = [at(f / FPS) + np.r_[rng.normal(0.0, 0.03, 2), 0.0] for f in frames]
        walker = make_track(1, person_points(), frames, positions, label="person", spacing=0.05)
        ahead = np.arange(113, 145)
        path = predict(walker, ahead, FPS, UP)
        error = np.linalg.norm(path.position[:, :2] - np.array([at(f / FPS)[:2] for f in ahead]), axis=1)
        assert np.all(error[path.drawn] < 0.4), seed
        drawn_frames += int(path.drawn.sum())
    assert drawn_frames > 0  # still drawn right after he is seen


def test_uncertainty_grows_with_time_unseen_and_stops_the_drawing():
    person = straight(speed=1.4, label="person", points=person_points())
    path = predict(person, np.arange(25, 25 + int(15 * FPS)), FPS, UP)
    assert np.all(np.diff(path.sigma) > 0)
    limit = draw_limit(person, UP)
    assert path.drawn[0] and not path.drawn[-1]
    # seen only cut by the image's edge (no whole view, no crop), or in a single keyframe: never drawn
    assert not predict(replace(person, crops=()), path.frames, FPS, UP).drawn.any()
    assert not predict(replace(person, status="tentative"), path.frames, FPS, UP).drawn.any()
    assert np.all(path.drawn == (path.sigma <= limit))
    # drawn: nothing of it reaches the conditioning where it is not drawn
    cams = cameras([0.0] * len(path.frames), position=(-6.0, 0.0, 1.0))
    rgb = np.zeros((len(cams), H, W, 3), np.uint8)
    depth, hole = np.zeros((len(cams), H, W), np.float32), np.ones((len(cams), H, W), bool)
    ids = draw_objects(rgb, depth, hole, [person], {1: path}, cams, UP)
    drawn_frames = ids.reshape(len(cams), -1).any(axis=1)
    assert drawn_frames[0] and not (drawn_frames & ~path.drawn).any()


# --- negative evidence and the lifecycle ---------------------------------------------------------------
def _views(frames, yaw, depth_value, *, position=(0.0, -8.0, 1.0)):
    cams = cameras([yaw] * len(frames), position=position)
    depth = np.full((len(frames), H, W), depth_value, np.float32)
    return KeyViews(cams, depth, np.zeros((len(frames), H, W), np.int32), np.asarray(frames, np.int64))


def test_a_place_seen_empty_loses_belief_and_a_hidden_one_does_not():
    car = straight(speed=0.5)  # near x = 1.5 .. 2.5 over the round, y = 0; the camera looks at it from y = -8
    objects = ObjectSet(up=UP).replaced([car])
    frames = np.arange(25, 41)
    path = predict_all(objects, frames, FPS)[1]
    keys = np.array([28, 32, 36, 40])
    pos, head = path.hypotheses[:2]
    at = np.searchsorted(path.frames, keys)
    # the camera sees through where the car should be: the depth lies 20 m away
    seen = _views(keys, 90.0, 20.0)
    empty = empty_places(car, pos[at], head[at], seen, UP)
    assert empty[:, CV].all()
    # something nearer (2 m from the camera) hides its place: no evidence either way
    hidden = _views(keys, 90.0, 2.0)
    assert not empty_places(car, pos[at], head[at], hidden, UP).any()
    # looking away: nothing said
    away = _views(keys, -90.0, 20.0)
    assert not empty_places(car, pos[at], head[at], away, UP).any()
    lost = carry(car, path, seen, UP, FPS)
    assert lost.motion.evidence < LOST_EVIDENCE and lost.status == "lost"
    kept = carry(car, path, hidden, UP, FPS)
    assert kept.motion.evidence == pytest.approx(1.0) and kept.status == "confirmed"
    # a lost object is not drawn in the next round
    nxt = predict_all(ObjectSet(up=UP).replaced([lost]), np.arange(41, 50), FPS)[1]
    assert nxt.source == "lost" and not nxt.drawn.any()


def test_lifecycle_tentative_confirmed_lost_retired_and_reidentified():
    first = seen_at(straight(), 0, np.array([0.0, 0.0, 0.3]), 0.0)
    t = new_track(1, "car", [first], UP, 0.05, FPS)
    assert t.status == "tentative"
    t = new_track(1, "car", [first, seen_at(t, 2, np.array([0.25, 0.0, 0.3]), 0.0)], UP, 0.05, FPS)
    assert t.status == "confirmed"
    car = straight(speed=1.0)
    objects = ObjectSet(up=UP).replaced([car])
    # unseen for a minute and more: retired, held, never drawn
    long = predict_all(objects, np.arange(25, 25 + int(70 * FPS)), FPS)[1]
    gone = carry(car, long, None, UP, FPS)
    assert gone.status == "retired"
    objects = objects.replaced([gone])
    paths = predict_all(objects, np.arange(600, 620), FPS)
    assert paths[1].source == "retired" and not paths[1].drawn.any()
    # it comes back near where it was last seen, looking the same: its old id; seen in one keyframe
    # it is tentative (where it is, not how it moves now), in two confirmed again
    back = {3: [seen_at(car, 610, np.array([20.0, 3.0, 0.3]), 0.0)]}
    learned = learn(objects, paths, back, {3: "car"}, 0.05, FPS)
    assert learned.instances == {3: 1} and learned.objects.get(1).status == "tentative"
    back[3].append(seen_at(car, 612, np.array([20.2, 3.0, 0.3]), 0.0))
    learned = learn(objects, paths, back, {3: "car"}, 0.05, FPS)
    assert learned.instances == {3: 1} and learned.objects.get(1).status == "confirmed"
    # a car of other colours there is a new object
    other = {3: [seen_at(car, 610, np.array([20.0, 3.0, 0.3]), 0.0, points=car_points(front=GREEN, back=GREEN))]}
    assert learn(objects, paths, other, {3: "car"}, 0.05, FPS).instances == {3: 2}


# --- appearance vetoes ---------------------------------------------------------------------------------
def test_two_people_in_different_shirts_who_swap_places_keep_their_ids():
    red = straight(1, speed=0.0, label="person", points=person_points(shirt=RED), start=(0.0, 0.0, 0.875))
    blue = straight(2, speed=0.0, label="person", points=person_points(shirt=BLUE), start=(1.2, 0.0, 0.875))
    objects = ObjectSet(up=UP).replaced([red, blue])
    paths = predict_all(objects, np.arange(25, 60), FPS)
    # unseen, they swapped places: the instance where red should be wears blue
    clip = {7: [seen_at(blue, 56, red.key_position[-1], 0.0)], 8: [seen_at(red, 56, blue.key_position[-1], 0.0)]}
    assert associate([red, blue], paths, clip, {7: "person", 8: "person"}, UP, FPS) == {7: 2, 8: 1}
    # alone where red should be, blue is not taken for red however close
    only = {7: [seen_at(blue, 56, red.key_position[-1], 0.0)]}
    assert associate([red], {1: paths[1]}, only, {7: "person"}, UP, FPS) == {7: None}


# --- registration and detail ---------------------------------------------------------------------------
@pytest.mark.parametrize("turn", [np.pi / 2, np.pi, -np.pi / 2])
def test_registration_measures_a_large_turn(turn):
    from scipy.spatial import cKDTree

    car = straight()
    pos = np.array([4.0, 0.5, 0.3])
    obs = seen_at(car, 30, pos, turn)
    p, h, fit = register_turns(car, obs, pos + 0.3, 0.0, UP, cKDTree(car.xyz))
    assert fit > 0.9 and abs(np.angle(np.exp(1j * (h - turn)))) < 0.05
    np.testing.assert_allclose(p, pos, atol=0.05)


def test_a_closer_view_refines_the_points():
    coarse = straight(points=car_points(step=0.2), spacing=0.2)
    objects = ObjectSet(up=UP).replaced([coarse])
    paths = predict_all(objects, np.arange(25, 30), FPS)
    pos, _ = paths[1].at([26])
    close = seen_at(coarse, 26, pos[0], 0.0, spacing=0.05, points=car_points(step=0.05))
    out = learn(objects, paths, {4: [close]}, {4: "car"}, 0.05, FPS).objects.get(1)
    assert out.spacing == pytest.approx(0.05)
    assert len(out.xyz) > 4 * len(coarse.xyz)
    # a farther view than before changes nothing of its detail
    far = seen_at(coarse, 26, pos[0], 0.0, spacing=0.4)
    again = learn(objects, paths, {4: [far]}, {4: "car"}, 0.05, FPS).objects.get(1)
    assert again.spacing == pytest.approx(0.2) and len(again.xyz) == len(coarse.xyz)


def test_the_hypotheses_are_the_four_motions_and_weigh_what_they_saw():
    car = straight(speed=2.0)
    assert car.motion.best() == CV
    stopped = make_track(1, car_points(), np.arange(0, 25, 2), np.tile([1.0, 0.0, 0.3], (13, 1)))
    assert stopped.motion.best() == STOPPED
    # a car going round a circle of radius 4 at 2 m/s is best explained by the turn
    a = np.arange(0, 25, 2) / FPS * 0.5
    circle = make_track(1, car_points(), np.arange(0, 25, 2), np.stack([4 * np.sin(a), 4 - 4 * np.cos(a), np.full_like(a, 0.3)], 1),
                        a)
    assert circle.motion.best() == TURN
    assert abs(circle.motion.x[TURN, 4] - 0.5) < 0.1
    assert {CV, TURN, STOPPED, REVERSAL} == {0, 1, 2, 3}


def test_an_object_seen_again_after_a_while_distrusts_its_old_motion():
    from spatia.engine.objects.associate import REACQUIRE_SPEED, reacquire
    from spatia.engine.objects.motion import INITIAL_WEIGHTS

    car = straight(speed=2.0)
    again = reacquire(car.motion)
    moving = [CV, TURN, REVERSAL]
    np.testing.assert_allclose(again.p[moving, 2, 2] - car.motion.p[moving, 2, 2], REACQUIRE_SPEED ** 2)
    assert again.p[STOPPED, 2, 2] == car.motion.p[STOPPED, 2, 2]
    np.testing.assert_allclose(again.mu, 0.5 * car.motion.mu + 0.5 * INITIAL_WEIGHTS)
    # absorbed a few frames later it keeps its motion; seen again 3 s later, its old motion counts less
    soon = seen_at(car, 28, car.key_position[-1] + [0.5, 0, 0], 0.0)
    late = seen_at(car, 48, car.key_position[-1] + [3.0, 0, 0], 0.0)
    from spatia.engine.objects.associate import absorb

    a = absorb(car, [soon], None, UP, voxel=0.05, fps=FPS).motion
    b = absorb(car, [late], None, UP, voxel=0.05, fps=FPS).motion
    assert b.p[CV, 2, 2] > a.p[CV, 2, 2]


def test_a_car_seen_once_after_turning_round_unseen_is_not_drawn_where_it_stood():
    """One pose after a long absence cannot tell a parked car from one driving off, and "stopped"
    is then its likeliest hypothesis: it is tentative again, not drawn, until a second keyframe
    says how it moves (drawn, it stood where it was seen while it drove off, up to a metre away).
    Seen again a moment later it is drawn, where it goes."""
    from spatia.engine.objects.associate import absorb

    points = car_points(size=(4.2, 1.8, 1.4), step=0.2)
    drawn_again = 0
    for seed in range(8):
        rng = np.random.default_rng(seed)
        turn = 3.0 + 11.0 * rng.uniform(0.2, 0.8)  # seen 3 s at 2 m/s, unseen 11 s, turned round in between

        def at(t):
            return np.array([2.0 * (t if t <= turn else 2 * turn - t), 0.0, 0.7])

        frames = np.arange(0, 25, 2)
        car = make_track(1, points, frames, [at(f / FPS) + np.r_[rng.normal(0.0, 0.03, 2), 0.0] for f in frames],
                         spacing=0.2)
        back = 24 + 88
        car = absorb(car, [seen_at(car, back, at(back / FPS), np.pi, spacing=0.2)], None, UP, voxel=0.05, fps=FPS)
        assert car.status == "tentative"
        ahead = np.arange(back + 1, back + 33)
        assert not predict(car, ahead, FPS, UP).drawn.any()
        # a moment later it is seen again: now how it moves is known, and it is drawn where it goes
        car = absorb(car, [seen_at(car, back + 2, at((back + 2) / FPS), np.pi, spacing=0.2)], None, UP,
                     voxel=0.05, fps=FPS)
        assert car.status == "confirmed"
        path = predict(car, ahead[2:], FPS, UP)
        error = np.linalg.norm(path.position[:, :2] - np.array([at(f / FPS)[:2] for f in ahead[2:]]), axis=1)
        assert np.all(error[path.drawn] < 0.42), (seed, error[path.drawn])
        drawn_again += int(path.drawn.sum())
    assert drawn_again > 0


def test_a_new_object_entering_from_the_side_takes_its_frame_from_its_first_whole_view():
    """A car driving in from the image's side is seen first as a fragment (its front): the object's
    frame and first pose come from its first whole view, so the whole views that follow register
    to the car, not to a fragment they would slide along and turn on."""
    xyz, rgb = car_points()
    speed = 3.0
    pose = lambda f: np.array([speed * f / FPS, 0.0, 0.3])  # noqa: E731
    front = xyz[:, 0] > 0.5
    fragment = Observation(instance=3, frame=0, xyz=xyz[front].astype(np.float64) + pose(0), rgb=rgb[front],
                           spacing=0.1, crop=None, partial=True)
    whole = [Observation(instance=3, frame=f, xyz=xyz.astype(np.float64) + pose(f), rgb=rgb, spacing=0.1, crop=None)
             for f in (2, 4, 6)]
    t = new_track(1, "car", [fragment, *whole], UP, 0.05, FPS)
    assert list(t.key_frame) == [2, 4, 6]
    assert 0 in t.frames_seen()  # the fragment still counts as seen
    moved = t.key_position - t.key_position[0]
    np.testing.assert_allclose(moved, [pose(f) - pose(2) for f in (2, 4, 6)], atol=0.05)
    assert np.abs(np.angle(np.exp(1j * t.key_heading))).max() < 0.05


def test_an_object_seen_only_in_part_places_that_part_on_its_first_whole_view():
    """A car seen only as a fragment (cut by the image's side) and seen whole later: the fragment
    finds its place on the whole view (the whole view registered to the fragment would slide and
    turn), in the frame the fragment gave it; later views register to the whole car."""
    from spatia.engine.objects.associate import absorb

    xyz, rgb = car_points()
    pose = lambda f: np.array([3.0 * f / FPS, 0.0, 0.3])  # noqa: E731
    front = xyz[:, 0] > 0.5
    fragment = Observation(instance=3, frame=0, xyz=xyz[front].astype(np.float64) + pose(0), rgb=rgb[front],
                           spacing=0.1, crop=None, partial=True)
    t = new_track(1, "car", [fragment], UP, 0.05, FPS)
    assert not t.crops
    whole = [Observation(instance=3, frame=f, xyz=xyz.astype(np.float64) + pose(f), rgb=rgb, spacing=0.1,
                         crop=Crop(f, 1.0, np.zeros((CROP_SIZE, CROP_SIZE, 3), np.uint8), np.ones((CROP_SIZE, CROP_SIZE), bool)))
             for f in (20, 22)]
    seen = absorb(t, whole, None, UP, voxel=0.05, fps=FPS)
    assert list(seen.key_frame) == [0, 20, 22]
    offset = xyz[front].mean(axis=0)  # the object's origin, in the car's own frame
    np.testing.assert_allclose(seen.key_position[1:], [pose(f) + offset for f in (20, 22)], atol=0.1)  # a spacing
    assert np.abs(np.angle(np.exp(1j * seen.key_heading))).max() < 0.05
    assert len(seen.xyz) > 2 * len(t.xyz)  # the rest of the car joined its points


def test_two_look_alikes_who_walk_past_each_other_while_lost_are_reidentified_by_their_motion():
    """Two people who look the same walk past each other while unseen, long enough to be lost:
    each comes back nearer the other's last place, and each is re-identified where its own motion
    puts it, not where the other was last seen."""
    look = person_points(shirt=RED)
    a = straight(1, speed=-1.0, label="person", points=look, start=(3.0, 0.0, 0.875), frames=np.arange(0, 17, 2))
    b = straight(2, speed=1.0, label="person", points=look, start=(-3.0, 1.4, 0.875), frames=np.arange(0, 17, 2))
    objects = ObjectSet(up=UP).replaced([replace(a, status="lost"), replace(b, status="lost")])
    paths = predict_all(objects, np.arange(17, 60), FPS)
    assert paths[1].source == "lost" and paths[2].source == "lost"
    t = 56 / FPS
    clip = {7: [seen_at(a, 56, np.array([3.0 - t, 0.0, 0.875]), 0.0)],  # a, now near b's last place
            8: [seen_at(b, 56, np.array([-3.0 + t, 1.4, 0.875]), 0.0)]}
    assert associate(list(objects.objects), paths, clip, {7: "person", 8: "person"}, UP, FPS) == {7: 1, 8: 2}


def test_a_fragment_reidentifies_a_lost_object_only_where_its_motion_puts_it():
    """A view cut by the image's edge shows part of a shirt and no height bands to veto a stranger:
    it re-identifies a lost walker where one of his hypotheses puts him, not anywhere he could
    have got to (a stranger's half seen 2 m off his way took his id, and he came back whole a
    moment later as a new object). Seen whole there, the walker is re-identified."""
    walker = straight(1, speed=1.0, label="person", points=person_points(shirt=RED), start=(0.0, 0.0, 0.875))
    objects = ObjectSet(up=UP).replaced([replace(walker, status="lost")])
    paths = predict_all(objects, np.arange(25, 60), FPS)
    ahead = paths[1].position[56 - 25]  # straight on, where he is most likely now (7 m)
    xyz, rgb = person_points(shirt=(200, 60, 40))  # another red shirt, seen in part: its left half
    half = xyz[:, 0] < 0

    def fragment(place):
        return seen_at(walker, 56, place, 0.0, points=(xyz[half], rgb[half]), partial=True)

    def match(obs):
        return associate([objects.get(1)], paths, {4: [obs]}, {4: "person"}, UP, FPS)

    off_his_way = np.array([5.0, 0.5, 0.875])
    assert match(fragment(off_his_way)) == {4: None}
    assert match(fragment(ahead)) == {4: 1}
    assert match(seen_at(walker, 56, off_his_way, 0.0)) == {4: 1}


def test_a_shade_across_a_colour_bins_edge_is_still_the_same_shirt():
    """The same shirt a shade darker (another light, or a few pixels at low resolution) whose red
    crosses a histogram bin's edge: the histograms share each colour between neighbouring bins,
    so the person keeps its id instead of being vetoed as someone else."""
    person = straight(1, speed=1.0, label="person", points=person_points(shirt=(130, 60, 60)), start=(0.0, 0.0, 0.875))
    objects = ObjectSet(up=UP).replaced([person])
    paths = predict_all(objects, np.arange(25, 33), FPS)
    pos, heading = paths[1].at([32])
    darker = seen_at(person, 32, pos[0], heading[0], points=person_points(shirt=(125, 58, 58)))
    assert bhattacharyya(colour_histogram(np.array([[130, 60, 60]], np.uint8)), colour_histogram(np.array([[125, 58, 58]], np.uint8))) < 0.2
    assert associate([person], paths, {4: [darker]}, {4: "person"}, UP, FPS) == {4: 1}


def test_a_walker_seen_for_a_moment_is_predicted_walking_not_parked():
    """Three registered poses over half a second of a slow walker (0.4 m/s, points 10 cm apart):
    registration places it to about a tenth of its point spacing, so the filter learns it walks
    and predicts it there two seconds later, instead of taking the step for noise and parking it."""
    walker = straight(1, speed=0.4, label="person", points=person_points(), frames=np.arange(0, 6, 2),
                      start=(0.0, 0.0, 0.875), spacing=0.1)
    path = predict(walker, np.arange(6, 23), FPS, UP)
    assert path.source == "motion"
    assert abs(path.position[-1][0] - 0.4 * 22 / FPS) < 0.15


def test_an_instance_seen_only_as_a_fragment_at_the_side_becomes_no_object_until_seen_whole():
    """A car seen only in part at the image's side gives no frame and no pose to trust: it makes
    no object (the memory still keeps it out); seen whole, or cut only at the top or bottom of a
    level camera, it does."""
    xyz, rgb = car_points()
    at = np.array([2.0, 0.0, 0.3])
    front = xyz[:, 0] > 0.0
    fragment = Observation(instance=3, frame=4, xyz=xyz[front].astype(np.float64) + at, rgb=rgb[front], spacing=0.1,
                           crop=None, partial=True)
    empty = ObjectSet(up=UP)
    assert learn(empty, {}, {3: [fragment]}, {3: "car"}, 0.05, FPS).objects.objects == ()
    cut = replace(fragment, cut_vertically=True)
    assert learn(empty, {}, {3: [cut]}, {3: "car"}, 0.05, FPS).instances == {3: 1}
    whole = Observation(instance=3, frame=6, xyz=xyz.astype(np.float64) + at, rgb=rgb, spacing=0.1, crop=None)
    made = learn(empty, {}, {3: [fragment, whole]}, {3: "car"}, 0.05, FPS)
    assert made.instances == {3: 1} and list(made.objects.get(1).key_frame) == [6]


def test_a_look_alike_within_the_likeliest_hypothesis_gate_but_fitting_poorly_is_a_new_object():
    """A walker goes on unseen; someone in a shirt a shade different (as alike as two views of one
    person) comes into view 2 m to the side of where it should be, within reach of its unlikely
    hypotheses and of the wide spread between them. It is someone else: the walker is most likely
    just where its straight-on hypothesis has it, unseen; pairing it would swap the two."""
    walker = straight(1, speed=1.3, label="person", points=person_points(shirt=RED), start=(0.0, 0.0, 0.875),
                      frames=np.arange(0, 17, 2))
    paths = predict_all(ObjectSet(up=UP).replaced([walker]), np.arange(17, 60), FPS)
    ahead = 2.6 + 1.3 * (40 - 16) / FPS  # where walking on puts it at frame 40
    other = person_points(shirt=(185, 45, 40))
    assert bhattacharyya(colour_histogram(other[1]), walker.appearance) < 0.3  # a look-alike
    clip = {7: [seen_at(walker, 40, np.array([ahead - 0.5, -2.0, 0.875]), 0.0, points=other)]}
    assert associate([walker], paths, clip, {7: "person"}, UP, FPS) == {7: None}
    # just past the straight-on hypothesis' gate, but within HOLD_SIGMA of it: its motion need not
    # have changed, so the look-alike is not re-identified with it either
    clip = {7: [seen_at(walker, 40, np.array([ahead, -2.2, 0.875]), 0.0, points=other)]}
    assert associate([walker], paths, clip, {7: "person"}, UP, FPS) == {7: None}
    # the walker itself, where walking on puts it, is still found
    clip = {8: [seen_at(walker, 40, np.array([ahead + 0.3, 0.1, 0.875]), 0.0)]}
    assert associate([walker], paths, clip, {8: "person"}, UP, FPS) == {8: 1}


@pytest.mark.parametrize("pure", [False, True])
def test_a_pure_straight_on_state_goes_straight_on_while_the_mixed_one_lags(pure, monkeypatch):
    """Unseen for 11 s, the straight-on hypothesis of a walker at 0.35 m/s: kept pure it is where
    walking on puts it; mixed with the others (stops, turns round), it falls behind."""
    from spatia.engine.objects import motion

    monkeypatch.setattr(motion, "PURE_STRAIGHT", pure)
    state = motion.initial_state(0, (0.0, 0.0, 0.8), 0.0, UP, "person", 0.03)
    for frame in range(2, 25, 2):
        state = motion.observe_pose(state, frame, (0.35 * frame / FPS, 0.0, 0.8), 0.0, UP, FPS, 0.03)
    seen = state.x[CV, :2] + state.x[CV, 2:4] * 88 / FPS
    later = motion.advance(state, 24 + 88, FPS)
    lag = np.linalg.norm(later.x[CV, :2] - seen)
    assert (lag < 1e-6) if pure else (lag > 0.2)
    assert later.best() == CV


def test_the_pure_straight_on_place_keeps_the_gate_mixing_gives_it(monkeypatch):
    """What the other hypotheses allow for still widens the straight-on hypothesis' spread, about
    its own place: association's gates around it are no tighter than the mixed filter's (a tighter
    one let a look-alike crossing a walker's path be taken for it)."""
    from spatia.engine.objects import motion

    spreads = {}
    for pure in (False, True):
        monkeypatch.setattr(motion, "PURE_STRAIGHT", pure)
        state = motion.initial_state(0, (0.0, 0.0, 0.8), 0.0, UP, "person", 0.03)
        for frame in range(2, 25, 2):
            state = motion.observe_pose(state, frame, (0.35 * frame / FPS, 0.0, 0.8), 0.0, UP, FPS, 0.03)
        later = motion.advance(state, 24 + 40, FPS)
        spreads[pure] = float(np.trace(later.p[CV, :2, :2]))
    assert spreads[True] >= spreads[False]
