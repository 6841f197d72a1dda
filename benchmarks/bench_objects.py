"""Object memory over a long shot: three look-alike cars drive round circles while the camera
pans back and forth, so each leaves the view and comes back again and again. Per round: the
time object memory adds (prediction, drawing, observing, associating), the whole round's time,
the objects file's size, how many objects the world holds (three, if no car is re-invented),
how often a car's id changed (given another's, or re-invented), and the prediction error where a
car is seen (its anchor carried by the predicted pose against the truth). Then the time to draw
three cars into an 81-frame round at 1248x704.

The street is built of points and rendered by the memory's own renderer (exact depth and
instance masks, ids renumbered every clip), the same scene the object tests use.

    .venv/bin/python benchmarks/bench_objects.py [--rounds 30] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "objects"))
from object_scenes import FPS, H, W, Circler, Street, StreetOracle, trajectory  # noqa: E402

from harness import write  # noqa: E402
from spatia.engine.objects import rotation  # noqa: E402
from spatia.engine.world import GenerateSettings, World  # noqa: E402

UP = np.array([0.0, 0.0, 1.0])

PAN_PERIOD = 96  # frames: the camera pans away and back once in this many frames
ROUNDS = dict(first_round_frames=25, round_frames=17, overlap=5)


def street() -> Street:
    colours = [((200, 30, 30), (240, 220, 60)), ((190, 40, 40), (235, 215, 70)), ((205, 35, 25), (240, 210, 55))]
    movers = [Circler("car", (x, 6.5, 0.3), (0.0, 0.0, 0.0), colours=c, radius=1.5, speed=0.5, phase=p)
              for x, c, p in zip((-3.5, 0.0, 3.5), colours, (0.0, 2.1, 4.2))]
    return Street(movers, building=((8.0, 14.0, 0.0), (11.0, 17.0, 4.0)))


def run(rounds: int) -> dict:
    frames = ROUNDS["first_round_frames"] + (rounds - 1) * (ROUNDS["round_frames"] - ROUNDS["overlap"])
    yaws = 90.0 + 55.0 * np.sin(2 * np.pi * np.arange(frames) / PAN_PERIOD)
    scene = street()
    traj = trajectory(yaws)
    world = World.create(Path(tempfile.mkdtemp(prefix="bench-objects-")) / "world", width=W, height=H, fps=FPS,
                         voxel_size=0.05)
    rgb, depth, ids = scene.frames([0], traj.cameras[:1])
    world.init_from_rgbd(rgb[0], depth[0], traj.cameras[:1], dynamic=ids[0] > 0)
    oracle = StreetOracle(scene, seed=1)
    settings = GenerateSettings(**ROUNDS)
    per_round, owner = [], {}
    id_changes = 0
    for r in range(rounds):
        end = ROUNDS["first_round_frames"] + r * (ROUNDS["round_frames"] - ROUNDS["overlap"])
        t = time.perf_counter()
        record = world.generate(traj[:end], ["a street"], oracle, settings)[0]
        wall = time.perf_counter() - t
        perm = oracle.perms[-1]
        for k in range(len(scene.movers)):
            object_id = record["instances"].get(str(int(perm[k + 1])))
            if object_id is None:
                continue
            if k in owner and owner[k] != object_id:
                id_changes += 1  # a car given another car's id, or re-invented as a new object
            owner[k] = object_id
        errors = []
        for entry in record["objects"]:
            if not (entry["observed"] and entry["predicted"] and entry["source"] == "motion"):
                continue
            mover = next((k for k, i in owner.items() if i == entry["id"]), None)
            if mover is None:
                continue
            track = world.objects().get(entry["id"])
            truth = scene.movers[mover]
            # compare through the track's anchor c: T_pred(f) c against T_true(f) T_true(f0)^-1 T_obs(f0) c
            c, f0 = track.anchor, int(track.key_frame[0])
            anchor0 = track.key_position[0] + rotation(UP, track.key_heading[0]) @ c
            body = rotation(UP, -truth.heading(f0)) @ (anchor0 - truth.position(f0))  # in the truth's body frame
            seen = np.array(entry["observed"]["frames"])
            keep = np.isin(entry["predicted"]["frames"], seen)
            position = np.array(entry["predicted"]["position"])[keep]
            heading = np.array(entry["predicted"]["heading"])[keep]
            predicted = position + np.einsum("fij,j->fi", rotation(UP, heading), c)
            real = truth.position(seen) + np.einsum("fij,j->fi", rotation(UP, truth.heading(seen)), body)
            errors.extend(np.linalg.norm(predicted - real, axis=1).tolist())
        version = world.objects_version
        per_round.append({
            "round": r, "wall_s": round(wall, 3), "objects_s": round(record["timings"]["objects_s"], 4),
            "total_s": round(record["timings"]["total_s"], 3), "objects": len(world.objects()),
            "objects_file_kb": round(world.object_store.path(version).stat().st_size / 1024, 1) if version else 0,
            "prediction_error_m": round(float(np.median(errors)), 3) if errors else None,
        })
        print(per_round[-1], flush=True)
    late = per_round[len(per_round) // 2:]
    return {
        "rounds": rounds, "frames": frames, "size": f"{W}x{H}", "id_changes": id_changes,
        "objects_at_end": len(world.objects()),
        "objects_s_round2": per_round[min(2, rounds - 1)]["objects_s"],
        "objects_s_last": per_round[-1]["objects_s"],
        "objects_s_median_second_half": float(np.median([p["objects_s"] for p in late])),
        "objects_share_of_round": float(np.median([p["objects_s"] / p["total_s"] for p in late])),
        "objects_file_kb_last": per_round[-1]["objects_file_kb"],
        "objects_versions": len(world.object_store.versions()),
        "objects_disk_mb": round(sum(f.stat().st_size for f in world.object_store.root.rglob("*") if f.is_file()) / 2**20, 2),
        "prediction_error_m_median": float(np.median([p["prediction_error_m"] for p in per_round
                                                       if p["prediction_error_m"] is not None] or [np.nan])),
        "per_round": per_round,
    }


def draw_cost(frames: int = 81, width: int = 1248, height: int = 704) -> dict:
    """Drawing three 4 m cars (5,000 points each, driving) into the projection of a round at
    spatia-5b's size, as the world does before every round."""
    from spatia.cameras import Cameras
    from spatia.engine.objects import ObjectSet, ObjectTrack, draw_objects, predict_all

    rng = np.random.default_rng(0)
    eye = np.stack([np.linspace(0, 2, frames), np.zeros(frames), np.full(frames, 1.5)], axis=1)
    cams = Cameras.look_at(eye, eye + [0, 8, -0.5], up=(0, 0, 1), width=width, height=height, fov_x_deg=60)
    tracks = []
    for i in range(3):
        xyz = (rng.random((5000, 3)) * [4, 1.8, 1.4] - [2, 0.9, 0.7]).astype(np.float32)
        tracks.append(ObjectTrack(id=i + 1, label="car", xyz=xyz, rgb=rng.integers(0, 255, (5000, 3), dtype=np.uint8),
                                  key_frame=np.array([0, 8]), key_position=np.array([[-3 + 3 * i, 8, 0.7], [-2 + 3 * i, 8, 0.7]]),
                                  key_heading=np.zeros(2), appearance=np.full(64, 1 / 64, np.float32), spacing=0.05))
    objects = ObjectSet(up=UP, next_id=4, objects=tuple(tracks))
    paths = predict_all(objects, np.arange(9, 9 + frames), 24.0)
    rgb = np.zeros((frames, height, width, 3), np.uint8)
    depth = np.full((frames, height, width), 50.0, np.float32)
    hole = np.zeros((frames, height, width), bool)
    t = time.perf_counter()
    ids = draw_objects(rgb, depth, hole, list(objects.objects), paths, cams, UP)
    seconds = time.perf_counter() - t
    return {"draw_frames": frames, "draw_size": f"{width}x{height}", "draw_s": round(seconds, 3),
            "draw_ms_per_frame": round(1000 * seconds / frames, 1), "draw_object_pixels": round(float((ids > 0).mean()), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="6 rounds")
    args = parser.parse_args()
    result = {**run(6 if args.quick else args.rounds), **draw_cost()}
    path = write("objects", result)
    summary = {k: v for k, v in result.items() if k != "per_round"}
    print(summary)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
