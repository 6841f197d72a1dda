"""The object-memory evaluation of one scene with moving objects: the world loop run twice along
the scene's path with the oracle, object memory on and off, each measured with
object_metrics.measure_objects against the ground truth.

The oracle hands the world the true instance masks of every clip, renumbered per clip with a
random permutation (the same permutations in both runs), so that following an object from clip
to clip is the world's own association. Both runs keep the moving objects out of the static
memory (the world masks every instance, remembered or not); only the "on" run remembers them.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from spatia.engine.models.oracle import FrameTable, OracleGenerator
from spatia.engine.update import UpdateSettings
from spatia.engine.world import GenerateSettings, World

from .groundtruth import SCENES, GroundTruth
from .trajectories import round_plan
from .object_metrics import RULE, UP, ghost_pixels, measure_objects

MODES = (("on", True), ("off", False))


def _round_records(world: World, records: list[dict]) -> list[dict]:
    """The rounds' round.json files, as the world wrote them."""
    return [json.loads((world.root / "rounds" / f"{r['round']:04d}" / "round.json").read_text()) for r in records]


def run_world(gt: GroundTruth, options, world_dir: Path, *, object_memory: bool, progress: bool = False):
    """One run of the world along the truth's path with the oracle; returns (world, round
    records, the oracle's renumberings, seconds)."""

    if world_dir.exists():
        shutil.rmtree(world_dir)
    cams = gt.cameras
    labels = {k: o.label for k, o in gt.objects.items()}
    oracle = OracleGenerator(FrameTable(cams, gt.rgb, gt.depth, gt.instances), instance_labels=labels,
                             renumber_seed=options.seed)
    settings = GenerateSettings(seed=options.seed, update_fps=gt.fps / options.keyframe_step,
                                update=UpdateSettings(align=options.align), object_memory=object_memory,
                                **round_plan(len(gt), getattr(SCENES.get(gt.scene), "rounds", None) or options.rounds))
    t0 = time.perf_counter()
    world = World.create(world_dir, width=cams.width, height=cams.height, fps=gt.fps, voxel_size=options.voxel_size)
    first_dynamic = gt.instances[0] > 0 if gt.instances is not None else None
    world.init_from_rgbd(gt.rgb[0], gt.depth[0], cams[0], dynamic=first_dynamic,
                         message="initialised from the ground-truth first frame (moving objects masked)")
    prompt = SCENES[gt.scene].prompt if gt.scene in SCENES else gt.scene
    if progress:
        from spatia.engine.progress import progress_bar

        update, close = progress_bar(desc=f"{gt.scene}: world loop, object memory {'on' if object_memory else 'off'}")
    else:
        update, close = None, lambda: None
    try:
        records = world.generate(gt.trajectory, [prompt], oracle, settings, progress=update)
    finally:
        close()
    return world, _round_records(world, records), oracle.renumberings, time.perf_counter() - t0


def _anchors(world: World) -> tuple[dict, np.ndarray]:
    """Each remembered object's anchor (its points' centroid in its own frame) and the world's up."""
    objects = world.objects()
    return {o.id: o.anchor for o in objects.objects}, np.asarray(objects.up, dtype=np.float64)


def evaluate_object_scene(gt: GroundTruth, options, out_dir: Path) -> dict:
    """Run the world with object memory on and off along `gt`'s path and measure each moving object."""
    if gt.instances is None or not gt.objects:
        raise ValueError(f"scene {gt.scene!r} has no moving objects to evaluate")
    out_dir = Path(out_dir)
    runs, images, per_frame = {}, {}, {}
    first_reentry = {}
    for mode, on in MODES:
        world, records, renumberings, loop_s = run_world(gt, options, out_dir / f"world-{mode}", object_memory=on,
                                                         progress=options.progress)
        t0 = time.perf_counter()
        anchors, up = _anchors(world) if on else ({}, np.array(UP))
        measured = measure_objects(gt.rgb, gt.instances, gt.objects, records, renumberings,
                                   world.round_conditioning, anchors, up=up, object_memory=on)
        for tid, m in measured["objects"].items():
            per_frame.setdefault(tid, {})[mode] = m.pop("per_frame")
            if m["reentry_frames"]:
                first_reentry[tid] = m["reentry_frames"][0]
        # the conditioning at each object's first re-entry frame, for the pictures
        shots = {}
        for tid, f in first_reentry.items():
            r = next(i for i, rec in enumerate(records) if rec["start"] + rec["overlap"] <= f < rec["end"])
            cond = world.round_conditioning(r)
            local = f - records[r]["start"]
            shots[tid] = {"rgb": cond.rgb[local], "object_ids": cond.object_ids[local], "hole": cond.hole[local]}
        images[mode] = shots
        runs[mode] = {
            **measured,
            "ghost": ghost_pixels(gt.instances, records, world.round_conditioning),
            "remembered_objects": len(anchors),
            "memory_points": len(world.memory()),
            "world_loop_s": loop_s,
            "measure_s": time.perf_counter() - t0,
            "world": str(world.root),
        }
    objects = {}
    for tid, truth in gt.objects.items():
        on, off = runs["on"]["objects"][tid], runs["off"]["objects"][tid]
        objects[tid] = {
            "label": truth.label,
            "reentry_frames": on["reentry_frames"],
            "reentry_events": on["reentry_events"],
            "position_error_m": {"on": on["position_error_m"], "off": off["position_error_m"]},
            "position_error_first_m": {"on": on["position_error_first_m"], "off": off["position_error_first_m"]},
            "mask_iou": {"on": on["mask_iou"], "off": off["mask_iou"]},
            "object_psnr_db": {"on": on["object_psnr_db"], "off": off["object_psnr_db"]},
            "id_changes": {"on": on["id_changes"], "off": off["id_changes"]},
            "assigned_ids": {"on": on["assigned_ids"], "off": off["assigned_ids"]},
            "tracks": {"on": on["tracks"], "off": off["tracks"]},
        }
    return {
        "summary": {"scene": gt.scene, "frames": len(gt), "size": f"{gt.cameras.width}x{gt.cameras.height}",
                    "objects": len(gt.objects), "swaps": {m: runs[m]["swaps"] for m, _ in MODES},
                    "ghost_share": {m: runs[m]["ghost"]["share"] for m, _ in MODES}},
        "objects": objects,
        "runs": {m: {k: v for k, v in r.items() if k != "objects"} for m, r in runs.items()},
        "rule": RULE,
        "per_frame": per_frame,
        "images": {"truth": gt.rgb, "instances": gt.instances, "first_reentry": first_reentry, "shots": images},
    }
