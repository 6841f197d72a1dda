"""The GPU check: what a CUDA machine does with this project, measured in one run of a few minutes.

    benchmarks/gpu_check.sh                      on a CUDA machine (exits 2 at once without one)
    benchmarks/gpu_check.sh --cpu-dry-run        the same sections at tiny sizes on the CPU
    benchmarks/gpu_check.sh --only render,generator --modes gpu,model-tiled --out results.json

Sections, in this order, each in its own process under its own time budget (a section that
overruns is killed and reported as a timeout; one that fails is reported with its error; the
others run either way), all inside a total budget (9.5 minutes by default):
- tests:      the test suite's CUDA-marked tests (`pytest -m cuda` over the test files that mark any);
- render:     the z-buffer renderer (`render`) and spatia-5b's control render (`render_control`,
              with its voxel downsampling) of a few million memory points into 81 frames of 1248x704;
- memory:     one round's memory work with a memory of a few million points: the view index
              of the past frames, reference retrieval for the round's 81 targets, the memory
              update from its 12 keyframes (align, weigh, carve, fuse) and the view index of its
              new frames; memory/on-device with the memory's tensors on the GPU, memory/world
              with them in host memory as the world keeps them, every render on the GPU;
- generator/MODE: spatia-5b at full size with random weights, made directly on the GPU in bf16
              (spatia.engine.models.spatia.random_init; nothing is downloaded), placed by the VRAM
              mode (every spatia-5b setting of presets/vram.json, plus fp8 storage on the GPU), then
              one round through SpatiaGenerator (control render, prompt and VAE encodes, a few
              denoising steps with guidance, decode): seconds per denoising step, the round, the
              round at 40 steps (the measured round plus the missing steps at the measured rate)
              and peak VRAM (torch.cuda.max_memory_allocated).

Writes one JSON (benchmarks/results/gpu_check.json; gpu_check_cpu_dry_run.json for a dry run;
or --out), rewritten after every section, with every child's output in a .log beside it, and
prints a short table. Exit status: 0 when every section passed, 1 when one failed or ran out of
time, 2 when there is no CUDA device and no dry run was asked for.

The dry run runs the same code at tiny sizes (the test models' sizes, 10,000 points, 96x64) on
the CPU, hiding any GPU from the sections; only the VRAM mode that needs no CUDA ("gpu", on the
CPU) runs there unless --modes asks for others.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from xml.etree import ElementTree

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

DEFAULT_TOTAL_BUDGET_S = 570.0  # under 10 minutes, start-up and the table included

# Sizes of the CUDA run and of the dry run. A round: 81 frames, 9 of them history, 7 references.
SIZES = {
    "cuda": {
        "render": {"points": 3_000_000, "frames": 81, "width": 1248, "height": 704, "repeat": 2},
        "memory": {"points": 3_000_000, "width": 1248, "height": 704, "history_frames": 240, "round_frames": 81,
                   "history": 9},
        "generator": {"components": "spatia-5b", "frames": 81, "width": 1248, "height": 704, "history": 9,
                      "references": 7, "steps": 3, "points": 3_000_000},
    },
    "cpu-dry-run": {
        "render": {"points": 10_000, "frames": 3, "width": 96, "height": 64, "repeat": 1},
        "memory": {"points": 10_000, "width": 96, "height": 64, "history_frames": 24, "round_frames": 17, "history": 5},
        "generator": {"components": "tiny", "frames": 9, "width": 64, "height": 32, "history": 5, "references": 1,
                      "steps": 3, "points": 10_000},
    },
}

# Seconds each section may take (a section also stops at the total budget).
BUDGETS = {"tests": 120.0, "render": 90.0, "memory": 90.0, "generator": 120.0}
DRY_RUN_BUDGETS = {"tests": 90.0, "render": 60.0, "memory": 60.0, "generator": 90.0}  # a busy small CPU
SECTIONS = ("tests", "render", "memory", "generator")
FULL_ROUND_STEPS = 40  # spatia-5b's sampling steps
UPDATE_FPS, INDEX_FPS, FPS = 4.0, 6.0, 24.0  # the world's keyframe and view-index grids


class CheckError(Exception):
    """Bad arguments for the check; the message says which."""


# --- VRAM modes ------------------------------------------------------------------------------------
def vram_checks() -> dict[str, dict]:
    """name -> RuntimeOptions settings and the VRAM presets that use them: every distinct
    spatia-5b setting of presets/vram.json, largest card first, plus fp8 storage on the GPU. Read
    as plain JSON (the presets' own schema lives in spatia.formats.presets and its tests), so
    the check starts on a machine without the service's packages."""
    data = json.loads((ROOT / "presets" / "vram.json").read_text())
    presets = sorted((p for p in data["presets"] if p.get("gb") and "spatia-5b" in p.get("modes", {})),
                     key=lambda p: -p["gb"])
    checks: dict[str, dict] = {}
    for preset in presets:
        mode = preset["modes"]["spatia-5b"]
        setting = {"vram_mode": mode["vram_mode"], "vae_tiling": bool(mode.get("vae_tiling", False)),
                   "fp8_storage": bool(mode.get("fp8_storage", False))}
        name = setting["vram_mode"] + ("-tiled" if setting["vae_tiling"] else "") + ("-fp8" if setting["fp8_storage"] else "")
        entry = checks.setdefault(name, {"settings": setting, "presets": []})
        entry["presets"].append(preset["name"])
    if "gpu" in checks and "gpu-fp8" not in checks:
        ordered = {}
        for name, entry in checks.items():
            ordered[name] = entry
            if name == "gpu":
                ordered["gpu-fp8"] = {"settings": {"vram_mode": "gpu", "vae_tiling": False, "fp8_storage": True},
                                      "presets": []}
        checks = ordered
    return checks


# --- shared scene ----------------------------------------------------------------------------------
def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _reset_peak(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak_mb(device: str) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None


def _clock(device: str) -> float:
    _sync(device)
    return time.perf_counter()


def box_room_depth(cameras, lo, hi):
    """Exact z-depth [F,H,W] float32 and colours [F,H,W,3] uint8 of the inside of the box [lo, hi]
    seen by cameras inside it (the faces bench_render's room points lie on), checker-coloured."""
    import numpy as np

    lo, hi = np.asarray(lo, np.float32), np.asarray(hi, np.float32)
    depths, colours = [], []
    for f in range(len(cameras)):
        fx, fy, cx, cy = cameras.intrinsics[f]
        c2w = cameras.c2w[f]
        u = (np.arange(cameras.width, dtype=np.float32) + 0.5 - cx) / fx
        v = (np.arange(cameras.height, dtype=np.float32) + 0.5 - cy) / fy
        rays = np.stack(np.broadcast_arrays(u[None, :], v[:, None], np.float32(1)), -1) @ c2w[:3, :3].T.astype(np.float32)
        origin = c2w[:3, 3].astype(np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.maximum((lo - origin) / rays, (hi - origin) / rays).min(-1)  # rays have camera z = 1
        points = origin + rays * t[..., None]
        checker = (np.floor(points * 2).astype(np.int64).sum(-1) & 1).astype(np.float32)
        colours.append((60 + 120 * checker[..., None] + 60 * points / hi).clip(0, 255).astype(np.uint8))
        depths.append(t.astype(np.float32))
    return np.stack(depths), np.stack(colours)


# --- sections (each runs in its own process) -------------------------------------------------------
def section_render(sizes: dict, device: str) -> dict:
    import bench_render

    xyz, rgb, spacing = bench_render.room_points(sizes["points"])
    cameras = bench_render.turning_cameras(sizes["frames"], sizes["width"], sizes["height"])
    zbuffer = bench_render.measure(xyz, rgb, cameras, spacing, device, repeat=sizes["repeat"])
    control = bench_render.measure_control(xyz, rgb, cameras, device, repeat=sizes["repeat"])
    return {
        "points": len(xyz), "frames": len(cameras), "width": cameras.width, "height": cameras.height,
        "zbuffer_s_per_frame": zbuffer["seconds_per_frame"],
        "zbuffer_depth_only_s_per_frame": zbuffer["depth_only_seconds_per_frame"],
        "zbuffer_one_pixel_s_per_frame": zbuffer["one_pixel_splats_seconds_per_frame"],
        "zbuffer_coverage": zbuffer["coverage"], "zbuffer_peak_vram_mb": zbuffer.get("cuda_peak_mb"),
        "control_s_per_frame": control["seconds_per_frame"], "control_voxel_downsample_s": control["voxel_downsample_s"],
        "control_points_after_downsample": control["points_after_downsample"], "control_covered": control["covered"],
        "control_peak_vram_mb": control.get("cuda_peak_mb"),
        "summary": f"z-buffer {zbuffer['seconds_per_frame']:.4f} s/frame, control {control['seconds_per_frame']:.4f} "
                   f"s/frame ({len(xyz):,} points, {len(cameras)} x {cameras.width}x{cameras.height})",
    }


def section_memory(sizes: dict, device: str, memory_device: str) -> dict:
    """One round's memory stages; the memory's tensors on `memory_device`, every render on `device`."""
    import bench_render
    import numpy as np
    from spatia.engine.memory import RANK_GENERATED, SpatialMemory
    from spatia.engine.retrieval import retrieve_indexed
    from spatia.engine.update import UpdateSettings, update_memory
    from spatia.engine.view_index import ViewIndex, visible_ids

    width, height = sizes["width"], sizes["height"]
    xyz, rgb, spacing = bench_render.room_points(sizes["points"])
    # The memory knows the room but for half its floor, which the round's frames add.
    known = (xyz[:, 2] > 1e-3) | (xyz[:, 0] < 0.5 * bench_render.ROOM_SIZE[0])
    memory = SpatialMemory.from_points(xyz[known], rgb[known], voxel_size=spacing, rank=RANK_GENERATED,
                                       device=memory_device)
    history = bench_render.turning_cameras(sizes["history_frames"], width, height, turns=2.0)
    frames = sizes["round_frames"]
    targets = bench_render.turning_cameras(frames, width, height, turns=2.0 * frames / sizes["history_frames"], phase=0.13)
    new = np.arange(sizes["history"], frames)
    keys = new[new % round(FPS / UPDATE_FPS) == 0]
    depth, colours = box_room_depth(targets[keys], np.zeros(3), bench_render.ROOM_SIZE)
    past = np.arange(0, sizes["history_frames"], round(FPS / INDEX_FPS))

    _reset_peak(device)
    t0 = _clock(device)
    index = ViewIndex()
    index.add(past, visible_ids(memory.xyz, memory.point_id, history[past], device=device))
    index_s = _clock(device) - t0

    t0 = _clock(device)
    found = retrieve_indexed(index, memory.xyz, memory.point_id, targets, index.frames, k=7, scoring="reference",
                             device=device)
    retrieval_s = _clock(device) - t0

    settings = UpdateSettings(render_device=device)
    t0 = _clock(device)
    updated, _, stats = update_memory(memory, colours, depth, targets[keys], keys + sizes["history_frames"],
                                      settings=settings)
    update_s = _clock(device) - t0

    indexed = new[new % round(FPS / INDEX_FPS) == 0]
    t0 = _clock(device)
    index.add(indexed + sizes["history_frames"], visible_ids(updated.xyz, updated.point_id, targets[indexed],
                                                              device=device))
    index_round_s = _clock(device) - t0
    peak = _peak_mb(device)
    return {
        "memory_points": len(memory), "memory_device": str(memory.device), "render_device": device,
        "width": width, "height": height,
        "view_index_frames": len(past), "view_index_s": index_s, "view_index_s_per_frame": index_s / len(past),
        "retrieval_targets": frames, "retrieval_candidates": len(past), "retrieval_s": retrieval_s,
        "retrieved": [int(i) for i in found.indices],
        "update_keyframes": len(keys), "update_s": update_s, "update_s_per_keyframe": update_s / len(keys),
        "update_points_after": len(updated), "update_stats": {k: v for k, v in stats.as_dict().items() if k != "alignment"},
        "view_index_round_frames": len(indexed), "view_index_round_s": index_round_s,
        "peak_vram_mb": peak,
        "summary": f"update {update_s:.2f} s ({len(keys)} keyframes), retrieval {retrieval_s:.2f} s, view index "
                   f"{index_s:.2f} s ({len(past)} frames) + {index_round_s:.2f} s ({len(memory):,} points)",
    }


def section_generator(sizes: dict, device: str, mode: str, settings: dict) -> dict:
    import bench_render
    import numpy as np
    import torch

    # imported before the clock starts: build_s is the building
    from accelerate import init_empty_weights  # noqa: F401
    from diffusers import AutoencoderKLWan  # noqa: F401
    from spatia.engine.models import GenerationRequest
    from spatia.engine.models.gpu import RuntimeOptions
    from spatia.engine.models.spatia import SpatiaGenerator
    from spatia.engine.models.spatia.random_init import (
        SPATIA_5B,
        TINY,
        parameter_count,
        random_spatia_pipeline,
    )
    from transformers import PreTrainedTokenizerFast, UMT5EncoderModel  # noqa: F401

    components = SPATIA_5B if sizes["components"] == "spatia-5b" else TINY
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    _reset_peak(device)
    t0 = _clock(device)
    # Offloading modes keep the weights in host memory: each component goes there once made, so
    # the GPU only ever holds the largest one.
    park = "cpu" if settings["vram_mode"] != "gpu" else None
    pipe = random_spatia_pipeline(components, device=device, dtype=dtype, seed=0, park_device=park)
    build_s = _clock(device) - t0
    params = {name: parameter_count(getattr(pipe, name)) for name in ("transformer", "text_encoder", "vae")}
    build_peak = _peak_mb(device)
    print(f"built {sum(params.values()) / 1e9:.2f}B random parameters in {build_s:.1f} s", flush=True)

    runtime = RuntimeOptions(device=device, dtype=dtype, **settings)
    generator = SpatiaGenerator(pipeline=pipe, runtime=runtime)
    t0 = _clock(device)
    generator._pipeline()  # places the pipeline as the VRAM mode says (offload hooks, fp8 storage)
    placement_s = _clock(device) - t0
    resident = torch.cuda.memory_allocated() / 2**20 if device == "cuda" else None
    print(f"placed for VRAM mode {mode} in {placement_s:.1f} s", flush=True)

    frames, width, height = sizes["frames"], sizes["width"], sizes["height"]
    rng = np.random.default_rng(0)
    xyz, rgb, _ = bench_render.room_points(sizes["points"])
    cameras = bench_render.turning_cameras(frames, width, height)
    request = GenerationRequest(
        prompt="a room with a wooden floor and a table", projection=np.zeros((frames, height, width, 3), np.uint8),
        projection_depth=np.zeros((frames, height, width), np.float32),
        hole_mask=np.ones((frames, height, width), bool), cameras=cameras,
        history=rng.integers(0, 256, (sizes["history"], height, width, 3), dtype=np.uint8),
        references=rng.integers(0, 256, (sizes["references"], height, width, 3), dtype=np.uint8),
        steps=sizes["steps"], points_xyz=xyz, points_rgb=rgb, round_index=1,
    )
    marks: list[tuple[str, float]] = []

    def progress(fraction: float, stage: str) -> None:
        marks.append((stage, _clock(device)))
        print(f"{marks[-1][1] - t0:8.2f} s  {stage}", flush=True)

    _reset_peak(device)
    t0 = _clock(device)
    result = generator.generate(request, progress)
    round_s = _clock(device) - t0
    round_peak = _peak_mb(device)

    at = {stage: t for stage, t in marks}
    steps = [t for stage, t in marks if stage.startswith("denoising step")]
    warm = np.diff(steps)  # the first step also holds the encodes before it
    step_s = float(np.median(warm)) if len(warm) else None

    def between(start, end):
        return end - start if start is not None and end is not None else None

    encode_at = at.get("encoding prompt and conditions")
    control_render_s = between(at.get("rendering the control video"), encode_at)
    first_step_s = between(encode_at, steps[0] if steps else None)
    decode_s = between(steps[-1] if steps else None, at.get("done"))
    estimate = round_s + (FULL_ROUND_STEPS - len(steps)) * step_s if step_s is not None else None
    return {
        "vram_mode": mode, "runtime": settings, "dtype": str(dtype).removeprefix("torch."),
        "components": sizes["components"], "params": params, "frames": frames, "width": width, "height": height,
        "history_frames": sizes["history"], "reference_frames": sizes["references"], "control_points": len(xyz),
        "build_s": build_s, "build_peak_vram_mb": build_peak, "placement_s": placement_s,
        "resident_vram_after_placement_mb": resident,
        "steps": len(steps), "step_s": step_s, "step_s_all": [float(x) for x in warm],
        "control_render_s": control_render_s, "encode_and_first_step_s": first_step_s, "decode_s": decode_s,
        "round_s": round_s, f"round_{FULL_ROUND_STEPS}_steps_estimate_s": estimate, "round_peak_vram_mb": round_peak,
        "output_frames": list(result.frames.shape), "out_of_distribution": result.info.get("out_of_distribution"),
        "summary": (f"step {step_s:.3f} s (guidance on), round of {len(steps)} steps {round_s:.1f} s, "
                    f"~{estimate:.0f} s at {FULL_ROUND_STEPS}" if step_s is not None else f"round {round_s:.1f} s")
                   + (f", peak {round_peak / 1024:.1f} GiB" if round_peak is not None else ""),
    }


def run_child(args) -> int:
    """Run one section in this process and write its record to --child-out."""
    config = json.loads(args.child_config)
    device = config["device"]
    out = Path(args.child_out)
    try:
        if args.child == "render":
            record = section_render(config["sizes"], device)
        elif args.child == "memory":
            record = section_memory(config["sizes"], device, config["memory_device"])
        elif args.child == "generator":
            record = section_generator(config["sizes"], device, config["mode"], config["settings"])
        else:
            raise CheckError(f"unknown section {args.child!r}")
        if device == "cuda":
            import torch

            record["gpu"] = torch.cuda.get_device_name(0)
        status = 0
    except BaseException as exc:  # noqa: BLE001 - recorded, the parent reports it
        record = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]}
        status = 1
    out.write_text(json.dumps(record, default=str))
    return status


# --- the parent: guards, sections, report ----------------------------------------------------------
def guarded(cmd: list[str], budget: float, env: dict, log) -> tuple[str, float, int | None]:
    """Run cmd in its own process group for at most `budget` seconds; (status, seconds, returncode).
    status: ok, failed, or timeout (the whole group is killed)."""
    t0 = time.perf_counter()
    log.write(f"\n===== {' '.join(cmd)}\n")
    log.flush()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True)
    try:
        code = proc.wait(timeout=max(budget, 0.1))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return "timeout", time.perf_counter() - t0, None
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return ("ok" if code == 0 else "failed"), time.perf_counter() - t0, code


def log_tail(path: Path, chars: int = 3000) -> str:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - chars))
        return f.read().decode("utf-8", "replace")


def cuda_test_files() -> list[str]:
    """The test files that mark a test `cuda` (pytest -m cuda selects within them; collecting
    only these spares collecting the whole suite)."""
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py") if "mark.cuda" in p.read_text())


def parse_junit(path: Path) -> dict:
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    failures = []
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        outcome = next((child.tag for child in case if child.tag in ("failure", "error", "skipped")), None)
        if outcome is None:
            counts["passed"] += 1
        elif outcome == "skipped":
            counts["skipped"] += 1
        else:
            counts["failed" if outcome == "failure" else "errors"] += 1
            detail = next(child for child in case if child.tag == outcome)
            failures.append({"test": name, "message": (detail.get("message") or "")[:500]})
    return {**counts, "failures": failures}


class Check:
    def __init__(self, args, device: str):
        self.args = args
        self.device = device
        self.kind = "cuda" if device == "cuda" else "cpu-dry-run"
        self.sizes = SIZES[self.kind]
        self.budgets = {**(BUDGETS if device == "cuda" else DRY_RUN_BUDGETS), **args.budgets}
        self.deadline = time.perf_counter() + args.total_budget
        self.out = Path(args.out) if args.out else HERE / "results" / (
            "gpu_check.json" if device == "cuda" else "gpu_check_cpu_dry_run.json")
        self.log_path = self.out.with_suffix(".log")
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "backend"), str(ROOT), self.env.get("PYTHONPATH", "")])
        if device != "cuda":
            self.env["CUDA_VISIBLE_DEVICES"] = ""  # the dry run stays on the CPU even beside a GPU
            self.env.setdefault("OMP_NUM_THREADS", "1")  # tiny work: threads would only contend
        import harness

        self.record = {
            "check": "gpu_check", "kind": self.kind, "device": device, "machine": harness.machine(),
            "unix_time": time.time(), "total_budget_s": args.total_budget, "sizes": self.sizes,
            "missing_modules": missing_modules(), "sections": {},
        }

    def budget(self, section: str) -> float | None:
        """This section's budget, cut to what the total leaves; None when nothing is left."""
        left = self.deadline - time.perf_counter() - 2.0
        if left < 1.0:
            return None
        group = section.split("/")[0]
        return min(self.budgets.get(section, self.budgets.get(group, 60.0)), left)

    def save(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.record["wall_s"] = time.time() - self.record["unix_time"]
        tmp = self.out.with_name(self.out.name + ".tmp")
        tmp.write_text(json.dumps(self.record, indent=2, default=str))
        os.replace(tmp, self.out)

    def run_section(self, name: str, cmd: list[str], result_path: Path | None, log, finish=None) -> dict:
        """Run one guarded section and record it; `finish(entry)` may read its outputs first."""
        budget = self.budget(name)
        if budget is None:
            entry = {"status": "skipped", "reason": "the total time budget was spent", "seconds": 0.0}
        else:
            status, seconds, code = guarded(cmd, budget, self.env, log)
            log.flush()
            entry = {"status": status, "seconds": seconds, "budget_s": budget, "returncode": code}
            if result_path is not None and result_path.is_file() and result_path.stat().st_size:
                result = json.loads(result_path.read_text())
                if "error" in result:
                    entry["status"] = "failed"
                    entry["error"] = result["error"]
                    entry["traceback"] = result.get("traceback")
                else:
                    entry["result"] = result
            if status == "timeout":
                entry["error"] = f"did not finish within its budget of {budget:.1f} s; killed"
            if entry["status"] != "ok":
                entry["output_tail"] = log_tail(self.log_path)
                entry.setdefault("error", entry["output_tail"].strip().splitlines()[-1] if entry["output_tail"].strip()
                                 else f"exited with status {code}")
            if finish is not None:
                finish(entry)
        self.record["sections"][name] = entry
        self.save()
        line = entry.get("result", {}).get("summary") or entry.get("error") or entry.get("reason", "")
        print(f"[{name}] {entry['status']} in {entry['seconds']:.1f} s: {line.strip().splitlines()[-1] if line.strip() else ''}",
              flush=True)
        return entry

    def read_tests(self, entry: dict, junit: Path, files: list[str]) -> None:
        """The pytest section's counts; on a CUDA machine a skipped CUDA test is a failure."""
        if entry["status"] == "timeout" or not junit.is_file():
            return
        counts = {**parse_junit(junit), "files": files}
        ran = counts["passed"] + counts["failed"] + counts["errors"]
        counts["summary"] = (f"{counts['passed']} passed, {counts['failed']} failed, {counts['errors']} errors, "
                             f"{counts['skipped']} skipped")
        entry["result"] = counts
        if counts["failed"] or counts["errors"]:
            entry["status"], entry["error"] = "failed", counts["summary"]
        elif self.device == "cuda" and (counts["skipped"] or not ran):
            entry["status"], entry["error"] = "failed", "CUDA tests were skipped on a CUDA machine: " + counts["summary"]
        elif entry["status"] == "failed" and entry.get("returncode") not in (0, None):
            entry["error"] = f"pytest exited with status {entry['returncode']}"
        if entry["status"] == "ok":
            entry.pop("error", None)

    def child_cmd(self, section: str, out: Path, **extra) -> list[str]:
        config = {"device": self.device, "sizes": self.sizes[section], **extra}
        return [sys.executable, str(Path(__file__).resolve()), "--child", section, "--child-out", str(out),
                "--child-config", json.dumps(config)]

    def run(self, sections: list[str], modes: list[str]) -> int:
        self.save()
        checks = vram_checks()
        with open(self.log_path, "w") as log, tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
            for section in sections:
                if section == "tests":
                    junit = Path(tmp) / "tests.xml"
                    files = cuda_test_files()
                    if not files:
                        self.record["sections"]["tests"] = {"status": "failed", "seconds": 0.0,
                                                            "error": "no test file marks a test `cuda`"}
                        continue
                    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider",
                           f"--junitxml={junit}", *files]
                    self.run_section("tests", cmd, None, log, finish=lambda entry, junit=junit, files=files: self.read_tests(entry, junit, files))
                elif section == "generator":
                    for mode in modes:
                        result = Path(tmp) / f"generator-{mode}.json"
                        cmd = self.child_cmd("generator", result, mode=mode, settings=checks[mode]["settings"])
                        entry = self.run_section(f"generator/{mode}", cmd, result, log)
                        entry["presets"] = checks[mode]["presets"]
                        self.save()
                elif section == "memory":
                    # the memory on the GPU; and as the world keeps it, in host memory with renders on the GPU
                    variants = {"on-device": self.device, **({"world": "cpu"} if self.device == "cuda" else {})}
                    for variant, memory_device in variants.items():
                        result = Path(tmp) / f"memory-{variant}.json"
                        self.run_section(f"memory/{variant}", self.child_cmd("memory", result, memory_device=memory_device),
                                         result, log)
                else:
                    result = Path(tmp) / f"{section}.json"
                    self.run_section(section, self.child_cmd(section, result), result, log)
        self.save()
        print_table(self.record)
        print(f"wrote {self.out}")
        failed = [name for name, entry in self.record["sections"].items() if entry["status"] != "ok"]
        return 1 if failed else 0


def missing_modules() -> list[str]:
    import importlib.util

    needed = ("numpy", "scipy", "torch", "safetensors", "trimesh", "diffusers", "transformers", "accelerate",
              "tokenizers", "ftfy", "pytest", "hypothesis")
    return [name for name in needed if importlib.util.find_spec(name) is None]


def print_table(record: dict) -> None:
    rows = [("section", "status", "seconds", "figures")]
    for name, entry in record["sections"].items():
        figures = entry.get("result", {}).get("summary") or (entry.get("error") or entry.get("reason") or "").strip()
        figures = figures.splitlines()[-1] if figures else ""
        rows.append((name, entry["status"], f"{entry['seconds']:.1f}", figures[:110]))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    print(f"\nGPU check ({record['kind']}, {record['machine'].get('gpu') or record['machine'].get('cpu')})")
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-dry-run", action="store_true", help="tiny sizes on the CPU (no GPU needed or used)")
    parser.add_argument("--out", help="the JSON to write (default benchmarks/results/gpu_check.json)")
    parser.add_argument("--only", help=f"comma-separated sections (default all: {','.join(SECTIONS)})")
    parser.add_argument("--modes", help="comma-separated VRAM modes for the generator (default: all of "
                                        "presets/vram.json's spatia-5b settings plus gpu-fp8; the dry run: gpu)")
    parser.add_argument("--budget", action="append", metavar="NAME=SECONDS",
                        help="a section's time budget (tests, render, memory, generator or generator/MODE)")
    parser.add_argument("--total-budget", type=float, default=None,
                        help=f"seconds for the whole check (default {DEFAULT_TOTAL_BUDGET_S:.0f})")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    parser.add_argument("--child-config", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def parse_budgets(items) -> dict[str, float]:
    budgets = {}
    for item in items or ():
        name, _, seconds = item.partition("=")
        try:
            budgets[name] = float(seconds)
        except ValueError:
            raise CheckError(f"--budget takes NAME=SECONDS, got {item!r}") from None
        if name.split("/")[0] not in SECTIONS:
            raise CheckError(f"--budget names an unknown section {name!r}; known: {', '.join(SECTIONS)}")
    return budgets


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        return run_child(args)
    try:  # the arguments first: a mistake costs no torch import
        sections = [s.strip() for s in (args.only or ",".join(SECTIONS)).split(",") if s.strip()]
        unknown = [s for s in sections if s not in SECTIONS]
        if unknown:
            raise CheckError(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
        known = vram_checks()
        modes = [m.strip() for m in args.modes.split(",") if m.strip()] if args.modes else None
        unknown = [m for m in modes or () if m not in known]
        if unknown:
            raise CheckError(f"unknown VRAM mode(s) {', '.join(unknown)}; known: {', '.join(known)}")
        args.budgets = parse_budgets(args.budget)
    except CheckError as exc:
        print(f"gpu_check: {exc}", file=sys.stderr)
        return 2
    try:
        import torch
    except ImportError:
        print(f"gpu_check: torch is not installed for {sys.executable}; set SPATIA_PYTHON to the Python that has it",
              file=sys.stderr)
        return 2

    if args.cpu_dry_run:
        device = "cpu"
    elif torch.cuda.is_available():
        device = "cuda"
    else:
        built = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        print(f"gpu_check: no CUDA device (torch {torch.__version__}, {built}); run it on a CUDA machine, "
              "or pass --cpu-dry-run for the tiny CPU run", file=sys.stderr)
        return 2
    if args.total_budget is None:
        args.total_budget = DEFAULT_TOTAL_BUDGET_S
    modes = modes or (list(known) if device == "cuda" else ["gpu"])
    check = Check(args, device)
    if check.record["missing_modules"]:
        print(f"gpu_check: missing Python packages: {', '.join(check.record['missing_modules'])} "
              "(the sections that need them will fail)", file=sys.stderr)
    where = check.record["machine"].get("gpu") or check.record["machine"].get("cpu")
    print(f"gpu_check: {check.kind} on {where}, sections {', '.join(sections)}; VRAM modes {', '.join(modes)}; "
          f"writing {check.out}", flush=True)
    return check.run(sections, modes)


if __name__ == "__main__":
    sys.exit(main())
