"""Spatial-consistency evaluation: run the world loop along a scene's closed-loop path with a
generator, then measure it against the Blender ground truth.

Measured per scene:
- closed loop: the generated revisit frame against the generated start frame, and both
  against the ground truth (PSNR, SSIM, match accuracy); the final memory rendered at the
  revisit against the ground truth; what two unrelated ground-truth views score, for scale;
- per round: the memory's points against ground-truth surface points of every frame seen so
  far (accuracy, completeness, precision/recall/F-score at thresholds, Chamfer), the memory
  projection the generator was given against the ground truth (PSNR, SSIM, depth error),
  memory size, and how much of the retrieved reference frames truly overlaps the round;
- per frame: coverage of the visible surfaces by the memory before the frame was generated
  and by the final memory, and the generated frame against the ground truth.

With the oracle generator the "generated" frames are the renders themselves, so the numbers
isolate the memory pipeline (initialisation, alignment, fusion, carving, retrieval).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spatia.engine import metrics
from spatia.engine.models import PRESETS, get_depth_estimator, get_generator
from spatia.engine.models.base import DepthEstimator, VideoGenerator
from spatia.engine.models.oracle import FrameTable, OracleGenerator
from spatia.engine.models.preview import PreviewGenerator
from spatia.engine.render import render_memory
from spatia.engine.update import UpdateSettings
from spatia.engine.world import GenerateSettings, World

from .groundtruth import SCENES, GroundTruth, get_scene, render_ground_truth
from .trajectories import round_plan

# The generators `spatia generate` knows (the registry's presets), plus the oracle: the ground
# truth's own renders, which only an evaluation has.
GENERATORS = ("oracle", *sorted(p.name for p in PRESETS.values() if p.role == "generator"))
ORACLE_MEASURES = ("the memory pipeline: the oracle returns the ground-truth renders, so generated frames equal "
                   "the truth by construction and are not scored; measured are the memory's geometry, its coverage "
                   "and the memory rendered at the revisit against the truth")
GENERATOR_MEASURES = ("the generator and the memory: generated revisit vs generated start and vs the truth, the "
                      "memory's geometry, its coverage and the memory rendered at the revisit against the truth")


@dataclass
class EvalOptions:
    scenes: list[str] = field(default_factory=lambda: ["room"])
    generator: str = "oracle"
    width: int = 256
    height: int = 144
    frames: int = 48
    rounds: int = 4
    samples: int = 16
    voxel_size: float = 0.02
    keyframe_step: int = 2  # every n-th new frame updates the memory
    thresholds: tuple[float, ...] = (0.02, 0.05, 0.10)
    gt_voxel: float = 0.01  # ground-truth surface points are thinned to one per cell of this size
    align: bool = True  # fit each new depth map to the memory (off: trust the generator's depth as is)
    depth: str | None = None  # depth estimator for generators that return no depth
    out: Path = Path("out/eval")
    cache_dir: Path | None = None
    seed: int = 0
    progress: bool = True

    @classmethod
    def quick(cls, **overrides) -> EvalOptions:
        """Tiny and fast: 96x64, 25 frames, 3 rounds, 4 samples."""
        return cls(**{"width": 96, "height": 64, "frames": 25, "rounds": 3, "samples": 4, **overrides})

    def validate(self) -> None:
        for name in self.scenes:
            get_scene(name)
        moving = [name for name in self.scenes if get_scene(name).has_objects]
        if moving and self.generator != "oracle":
            raise ValueError(f"scenes with moving objects ({', '.join(moving)}) are evaluated with the oracle "
                             f"generator only (its instance masks are the ground truth's), not {self.generator!r}")
        if self.frames < 3:
            raise ValueError(f"--frames must be at least 3, got {self.frames}")
        if self.rounds < 1 or self.rounds > self.frames // 2:
            raise ValueError(f"--rounds must be in [1, {self.frames // 2}] for {self.frames} frames, got {self.rounds}")
        if self.keyframe_step < 1:
            raise ValueError(f"keyframe step must be >= 1, got {self.keyframe_step}")
        if self.voxel_size <= 0 or self.gt_voxel <= 0:
            raise ValueError("voxel sizes must be positive")


# --- generators ------------------------------------------------------------------------------
def check_generator(name: str, depth: str | None = None) -> tuple[VideoGenerator | None, DepthEstimator | None]:
    """Build the named generator (None for the oracle, built per scene) and a depth estimator
    for generators that need one; raise ModelUnavailable before any rendering if either
    cannot run here."""
    if name == "oracle":
        return None, None
    if name == "preview":
        gen = PreviewGenerator()
        gen.check_available()
        return gen, None
    if name not in GENERATORS:
        raise ValueError(f"unknown generator {name!r}; choose one of {', '.join(GENERATORS)} (the names "
                         "`spatia generate` takes, and oracle)")
    gen = get_generator(name)
    gen.check_available()
    estimator = get_depth_estimator(depth or "depth-pro")
    estimator.check_available()
    return gen, estimator


# --- ground-truth helpers --------------------------------------------------------------------
def true_overlap(gt: GroundTruth, query: int, reference: int, *, tolerance: float = 0.05) -> float:
    """Share of the `reference` frame's surface pixels that the `query` camera truly sees
    (in its image and not hidden, by the ground-truth depth), in [0, 1]."""
    points = gt.points([reference])
    if len(points) == 0:
        return 0.0
    uv, z = gt.cameras[query].project(points)
    uv, z = uv[0], z[0]
    h, w = gt.depth.shape[1:]
    inside = (z > 1e-6) & (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
    u = np.clip(uv[:, 0].astype(np.int64), 0, w - 1)
    v = np.clip(uv[:, 1].astype(np.int64), 0, h - 1)
    seen = gt.depth[query][v, u]
    visible = inside & (seen > 0) & (np.abs(seen - z) <= tolerance * np.maximum(seen, 1.0))
    return float(visible.mean())


def _render(memory, cameras):
    out = render_memory(memory, cameras)
    depth = np.nan_to_num(out.depth.cpu().numpy(), posinf=0.0).astype(np.float32)
    return out.rgb.cpu().numpy(), depth, out.mask.cpu().numpy()


def _image_scores(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None, *, match: bool = True) -> dict:
    scores = {"psnr_db": metrics.psnr(a, b, mask), "ssim": metrics.ssim(a, b, mask)}
    if match:
        scores["match"] = metrics.match_accuracy(a, b).as_dict()
    return scores


# --- one scene -------------------------------------------------------------------------------
def evaluate_scene(gt: GroundTruth, generator: VideoGenerator, options: EvalOptions, out_dir: Path, *,
                   depth_estimator: DepthEstimator | None = None) -> dict:
    """Run the world along the ground truth's path with `generator` and measure it (see module doc)."""
    prompt = SCENES[gt.scene].prompt if gt.scene in SCENES else gt.scene
    out_dir = Path(out_dir)
    world_dir = out_dir / "world"
    if world_dir.exists():
        shutil.rmtree(world_dir)
    n, cams = len(gt), gt.cameras
    plan = round_plan(n, options.rounds)
    settings = GenerateSettings(seed=options.seed, update_fps=gt.fps / options.keyframe_step,
                                update=UpdateSettings(align=options.align), **plan)

    t0 = time.perf_counter()
    world = World.create(world_dir, width=cams.width, height=cams.height, fps=gt.fps, voxel_size=options.voxel_size)
    world.init_from_rgbd(gt.rgb[0], gt.depth[0], cams[0], message="initialised from the ground-truth first frame")
    if options.progress:
        from spatia.engine.progress import progress_bar

        update, close = progress_bar(desc=f"{gt.scene}: world loop")
    else:
        update, close = None, lambda: None
    try:
        records = world.generate(gt.trajectory, [prompt], generator, settings, depth_estimator=depth_estimator,
                                 progress=update)
    finally:
        close()
    loop_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    generated = world.frames(range(n))
    surfaces = gt.depth > 0
    thresholds = options.thresholds

    # Per round: memory geometry, the projection the generator saw, memory size, references.
    loaded: dict[int, object] = {}

    def memory(version: int):  # each version is read once: a round's output is the next one's input
        if version not in loaded:
            if len(loaded) > 2:
                loaded.clear()
            loaded[version] = world.memory(version)
        return loaded[version]

    init_version = world.state["initial_memory_version"]
    init_memory = memory(init_version)
    rounds = [{
        "round": "init",
        "frames_seen": 1,
        "memory_version": init_version,
        "memory_points": len(init_memory),
        "memory_bytes": init_memory.nbytes,
        "memory_bytes_on_disk": world.store.nbytes_on_disk(init_version),
        "geometry": metrics.geometry_scores(init_memory.xyz.cpu().numpy(), gt.points([0], options.gt_voxel), thresholds),
    }]
    before_coverage = np.full(n, np.nan)
    projection_psnr = np.full(n, np.nan)
    for record in records:
        memory_in = memory(record["memory_version_in"])
        memory_out = memory(record["memory_version_out"])
        new = np.arange(record["start"] + record["overlap"], record["end"])
        proj_rgb, proj_depth, known = _render(memory_in, cams[new])
        before_coverage[new] = metrics.coverage_fraction(known, surfaces[new])
        judged = known & surfaces[new]
        projection_psnr[new] = [metrics.psnr(proj_rgb[i], gt.rgb[f], judged[i]) for i, f in enumerate(new)]
        projection = {
            "psnr_db": metrics.psnr(proj_rgb, gt.rgb[new], judged),
            "ssim": float(np.nanmean([metrics.ssim(proj_rgb[i], gt.rgb[f], judged[i]) if judged[i].any() else np.nan
                                      for i, f in enumerate(new)])) if judged.any() else float("nan"),
            "depth": metrics.depth_errors(proj_depth, gt.depth[new], judged),
            "coverage": float(np.nanmean(before_coverage[new])),
        }
        refs = record["references"]
        queries = new[np.linspace(0, len(new) - 1, min(len(new), 6)).round().astype(int)]
        ref_overlap = [max(true_overlap(gt, int(q), int(r)) for q in queries) for r in refs]
        past = np.arange(0, max(record["start"], 0))
        best = sorted((max(true_overlap(gt, int(q), int(p)) for q in queries) for p in past[::2]), reverse=True)
        rounds.append({
            "round": record["round"],
            "start": record["start"],
            "end": record["end"],
            "frames_seen": int(record["end"]),
            "memory_version": record["memory_version_out"],
            "memory_points": len(memory_out),
            "memory_bytes": memory_out.nbytes,
            "memory_bytes_on_disk": world.store.nbytes_on_disk(record["memory_version_out"]),
            "geometry": metrics.geometry_scores(memory_out.xyz.cpu().numpy(),
                                                gt.points(range(record["end"]), options.gt_voxel), thresholds),
            "projection_vs_truth": projection,
            "references": refs,
            "reference_true_overlap": float(np.mean(ref_overlap)) if refs else None,
            "best_possible_reference_overlap": float(np.mean(best[: len(refs)])) if refs and best else None,
            "timings": record["timings"],
        })

    # Final memory along the whole path, and each generated frame against the truth.
    final = world.memory()
    final_rgb, final_depth, final_known = _render(final, cams)
    final_coverage = metrics.coverage_fraction(final_known, surfaces)
    frame_psnr = [metrics.psnr(generated[i], gt.rgb[i]) for i in range(n)]
    frame_ssim = [metrics.ssim(generated[i], gt.rgb[i]) for i in range(n)]

    # Closed loop: the last pose is the first one.
    start, revisit = 0, n - 1
    unrelated = int(np.argmin([true_overlap(gt, 0, j) + true_overlap(gt, j, 0) for j in range(1, n - 1)])) + 1
    judged = final_known[revisit] & surfaces[revisit]
    closed_loop = {
        "start_frame": start,
        "revisit_frame": revisit,
        "pose_difference": float(np.abs(cams.w2c[revisit] - cams.w2c[start]).max()),
        "generated_revisit_vs_generated_start": _image_scores(generated[revisit], generated[start]),
        "generated_revisit_vs_truth": _image_scores(generated[revisit], gt.rgb[revisit]),
        "generated_start_vs_truth": _image_scores(generated[start], gt.rgb[start]),
        "memory_at_revisit_vs_truth": {
            **_image_scores(final_rgb[revisit], gt.rgb[revisit], judged, match=False),
            "coverage": float(final_coverage[revisit]),
            "depth": metrics.depth_errors(final_depth[revisit], gt.depth[revisit], judged),
        },
        "unrelated_truth_baseline": {"frame": unrelated, **_image_scores(gt.rgb[unrelated], gt.rgb[start])},
    }
    last = rounds[-1]["geometry"]
    oracle = isinstance(generator, OracleGenerator)
    revisit_scores = {key: (None if oracle else value) for key, value in {
        "revisit_psnr_db": closed_loop["generated_revisit_vs_generated_start"]["psnr_db"],
        "revisit_ssim": closed_loop["generated_revisit_vs_generated_start"]["ssim"],
        "revisit_match_accuracy": closed_loop["generated_revisit_vs_generated_start"]["match"]["accuracy"],
        "revisit_vs_truth_psnr_db": closed_loop["generated_revisit_vs_truth"]["psnr_db"],
    }.items()}
    summary = {
        "scene": gt.scene,
        "generator": getattr(generator, "name", type(generator).__name__),
        "measures": ORACLE_MEASURES if oracle else GENERATOR_MEASURES,
        "frames": n,
        "rounds": len(records),
        "size": f"{cams.width}x{cams.height}",
        **revisit_scores,  # None with the oracle: identical to the truth by construction
        "memory_at_revisit_psnr_db": closed_loop["memory_at_revisit_vs_truth"]["psnr_db"],
        "memory_at_revisit_coverage": closed_loop["memory_at_revisit_vs_truth"]["coverage"],
        "memory_points": rounds[-1]["memory_points"],
        "memory_accuracy_median_m": last["accuracy_median_m"],
        "memory_completeness_median_m": last["completeness_median_m"],
        "memory_chamfer_m": last["chamfer_m"],
        **{f"memory_fscore_{k}": v["fscore"] for k, v in last["thresholds"].items()},
        "mean_final_coverage": float(np.nanmean(final_coverage)),
        "world_loop_s": loop_s,
        "measure_s": time.perf_counter() - t0,
    }
    return {
        "summary": summary,
        "settings": {**plan, "update_fps": settings.update_fps, "voxel_size": options.voxel_size,
                     "keyframe_step": options.keyframe_step, "samples": gt.samples,
                     "align": options.align},
        "closed_loop": closed_loop,
        "rounds": rounds,
        "per_frame": {
            "coverage_before_generation": before_coverage.tolist(),
            "coverage_final_memory": final_coverage.tolist(),
            "memory_projection_psnr_db": projection_psnr.tolist(),
            "generated_vs_truth_psnr_db": frame_psnr,
            "generated_vs_truth_ssim": frame_ssim,
        },
        "images": {  # for the report's side-by-side pictures; not written to JSON
            "generated_start": generated[start], "generated_revisit": generated[revisit],
            "truth_start": gt.rgb[start], "truth_revisit": gt.rgb[revisit], "memory_revisit": final_rgb[revisit],
            "generated": generated, "truth": gt.rgb,
        },
        "world": str(world_dir),
    }


def run_eval(options: EvalOptions) -> dict:
    """Evaluate every scene in `options`, write report.json, report.md and pictures to
    options.out, and return the report (without the pictures' pixels)."""
    from .report import write_report

    options.validate()
    generator, estimator = check_generator(options.generator, options.depth)  # fail before any rendering
    out = Path(options.out)
    results = {}
    for name in options.scenes:
        gt = render_ground_truth(name, SCENES[name].frames or options.frames, options.width, options.height,
                                 samples=options.samples,
                                 cache_dir=options.cache_dir, progress=options.progress)
        if SCENES[name].has_objects:
            from .object_runner import evaluate_object_scene

            results[name] = evaluate_object_scene(gt, options, out / name)
            continue
        gen = generator if generator is not None else OracleGenerator(FrameTable(gt.cameras, gt.rgb, gt.depth))
        results[name] = evaluate_scene(gt, gen, options, out / name, depth_estimator=estimator)
    return write_report(results, options, out)


__all__ = [
    "GENERATORS",
    "SCENES",
    "EvalOptions",
    "check_generator",
    "evaluate_scene",
    "round_plan",
    "run_eval",
    "true_overlap",
]
