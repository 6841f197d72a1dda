"""Diffusion generators: pipeline overhead on CPU; the real-size Spatia transformer on CUDA.

    python benchmarks/bench_generator.py [--quick]          CPU: tiny pipelines, overhead outside the transformer
    python benchmarks/bench_generator.py --gpu [--quick]    also, on CUDA: the 5B Spatia transformer (random
                                                            weights) at 1248x704, 81 frames: s/step with and
                                                            without CFG, peak VRAM per VRAM mode, MFU

CPU: a few denoising steps of the tiny random-weight `spatia` and `wan-vace` pipelines through
the VideoGenerator interface; time inside the transformer is measured with forward hooks, the
rest (text encoder, VAE encode/decode, scheduler, glue) is the overhead.

GPU: each VRAM mode runs in its own process (fresh peak-memory counters, no leftover hooks).
FLOPs are counted analytically (`transformer_flops`): matmuls only, 2 per multiply-add. The
model FLOPs utilisation is achieved FLOP/s over the GPU's dense bf16 peak. Writes
benchmarks/results/generator.json (generator_quick.json with --quick).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
from spatia.cameras import Cameras
from spatia.engine.models import GenerationRequest
from spatia.engine.models.gpu import RuntimeOptions
from spatia.engine.models.spatia.config import (
    CONTROL_IN_CHANNELS,
    CONTROL_LAYERS,
    TI2V_5B_TRANSFORMER,
)
from spatia.engine.models.spatia.transformer import transformer_flops

# Dense bf16 tensor-core peaks (FLOP/s), by device-name substring.
BF16_PEAK = {"H200": 989.4e12, "H100 PCIe": 756.0e12, "H100": 989.4e12, "A100": 312.0e12, "L40S": 362.0e12,
             "RTX 4090": 165.2e12}


# --- CPU: tiny pipelines ---------------------------------------------------------------------------
class TransformerTimer:
    """Wall time spent inside a module's forward calls (pre/post hooks)."""

    def __init__(self, module: torch.nn.Module):
        self.seconds, self.calls, self._t0 = 0.0, 0, 0.0
        module.register_forward_pre_hook(self._start)
        module.register_forward_hook(self._stop)

    def _start(self, *args):
        self._t0 = time.perf_counter()

    def _stop(self, *args):
        self.seconds += time.perf_counter() - self._t0
        self.calls += 1

    def reset(self):
        self.seconds, self.calls = 0.0, 0


def tiny_request(frames: int, size: int, steps: int) -> GenerationRequest:
    rng = np.random.default_rng(0)
    img = lambda n: rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    return GenerationRequest(
        prompt="a room with a table", negative_prompt="blur", projection=img(frames),
        projection_depth=np.ones((frames, size, size), np.float32), hole_mask=rng.random((frames, size, size)) < 0.3,
        cameras=Cameras.look_at([[0, -3, 1]] * frames, [0, 0, 1], width=size, height=size),
        history=img(9), references=img(2), steps=steps, guidance=3.5,
    )


def bench_tiny(name: str, generator, transformer, request: GenerationRequest, repeat: int) -> dict:
    timer = TransformerTimer(transformer)
    generator.generate(request)  # warm-up (first-call allocations)
    totals, inside = [], []
    for _ in range(repeat):
        timer.reset()
        t0 = time.perf_counter()
        generator.generate(request)
        totals.append(time.perf_counter() - t0)
        inside.append(timer.seconds)
    total, transformer_s = float(np.median(totals)), float(np.median(inside))
    steps = request.steps
    return {
        "generator": name, "frames": request.num_frames, "size": list(request.size), "steps": steps,
        "transformer_calls_per_run": timer.calls, "total_s": total, "transformer_s": transformer_s,
        "per_step_total_s": total / steps, "per_step_transformer_s": transformer_s / steps,
        "overhead_s": total - transformer_s, "overhead_fraction": (total - transformer_s) / total,
    }


def cpu_section(quick: bool) -> list[dict]:
    from spatia.engine.models.spatia import SpatiaGenerator
    from spatia.engine.models.spatia.tiny import tiny_spatia_pipeline
    from spatia.engine.models.wan_vace import WanVaceGenerator, tiny_wan_vace_pipeline

    cpu = RuntimeOptions(device="cpu")
    steps, repeat = (2, 1) if quick else (4, 3)
    spatia = tiny_spatia_pipeline()
    vace = tiny_wan_vace_pipeline()
    return [
        bench_tiny("spatia (tiny)", SpatiaGenerator(pipeline=spatia, runtime=cpu), spatia.transformer,
                   tiny_request(17, 64, steps), repeat),
        bench_tiny("wan-vace (tiny)", WanVaceGenerator(pipeline=vace, runtime=cpu), vace.transformer,
                   tiny_request(17, 64, steps), repeat),
    ]


# --- GPU: the real-size transformer ----------------------------------------------------------------
def clip_shapes(frames: int, width: int, height: int, refs: int) -> dict:
    latent_frames = (frames - 1) // 4 + 1
    h, w = height // 16, width // 16
    per_frame = (h // 2) * (w // 2)
    return {"latent_frames": latent_frames, "latent_hw": [h, w], "tokens": (latent_frames + refs) * per_frame,
            "control_tokens": latent_frames * per_frame}


def flops_per_forward(shapes: dict) -> float:
    cfg = TI2V_5B_TRANSFORMER
    return transformer_flops(
        tokens=shapes["tokens"], control_tokens=shapes["control_tokens"], text_tokens=512,
        dim=cfg["num_attention_heads"] * cfg["attention_head_dim"], ffn_dim=cfg["ffn_dim"],
        num_layers=cfg["num_layers"], num_control_layers=len(CONTROL_LAYERS), in_channels=cfg["in_channels"],
        control_in_channels=CONTROL_IN_CHANNELS,
    )


def gpu_mode_run(mode: str, frames: int, width: int, height: int, refs: int, repeat: int) -> dict:
    """One VRAM mode, in this process: build the random 5B transformer, time forwards, peak VRAM."""
    from spatia.engine.models.spatia.transformer import SpatiaTransformer3DModel

    device = torch.device("cuda")
    dtype = torch.bfloat16
    build_on = device if mode in ("gpu", "fp8") else torch.device("cpu")
    t0 = time.perf_counter()
    torch.manual_seed(0)
    with build_on:
        model = SpatiaTransformer3DModel(**TI2V_5B_TRANSFORMER, control_layers=CONTROL_LAYERS,
                                         control_in_channels=CONTROL_IN_CHANNELS)
    model = model.to(dtype).eval()
    build_s = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    if mode == "fp8":
        model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype)
    elif mode == "group":
        model.enable_group_offload(onload_device=device, offload_device=torch.device("cpu"), offload_type="block_level",
                                   num_blocks_per_group=1, use_stream=True)
    elif mode == "sequential":
        model.enable_group_offload(onload_device=device, offload_device=torch.device("cpu"), offload_type="leaf_level",
                                   use_stream=True)
    shapes = clip_shapes(frames, width, height, refs)
    h, w = shapes["latent_hw"]
    g = torch.Generator(device).manual_seed(0)
    x = torch.randn(1, 48, refs + shapes["latent_frames"], h, w, device=device, dtype=dtype, generator=g)
    control = torch.randn(1, CONTROL_IN_CHANNELS, shapes["latent_frames"], h, w, device=device, dtype=dtype, generator=g)
    context = torch.randn(1, 512, 4096, device=device, dtype=dtype, generator=g)
    t = torch.full((1, refs + shapes["latent_frames"]), 500.0, device=device)
    t[:, : refs + 3] = 0.0

    def forward():
        with torch.no_grad():
            model(x, t, context, control_latents=control, num_reference_frames=refs, return_dict=False)

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    one = harness.timed(forward, repeat=repeat, warmup=1, sync=True)
    cfg_step = harness.timed(lambda: (forward(), forward()), repeat=max(1, repeat // 2), warmup=0, sync=True)
    flops = flops_per_forward(shapes)
    name = torch.cuda.get_device_name(0)
    peak = next((v for k, v in BF16_PEAK.items() if k in name), None)
    return {
        "mode": mode, "params": params, "build_s": build_s, **shapes, "reference_frames": refs,
        "s_per_step_no_cfg": one["median_s"], "s_per_step_cfg": cfg_step["median_s"],
        "peak_vram_mb": harness.cuda_peak_mb(), "flops_per_forward": flops,
        "achieved_tflops": flops / one["median_s"] / 1e12,
        "mfu": (flops / one["median_s"] / peak) if peak else None, "bf16_peak_tflops": peak / 1e12 if peak else None,
        "round_40_steps_cfg_flops": 80 * flops, "round_40_steps_cfg_s": 40 * cfg_step["median_s"],
    }


def gpu_section(quick: bool, modes: list[str]) -> list[dict]:
    frames, width, height = (17, 624, 352) if quick else (81, 1248, 704)
    results = []
    for mode in modes:
        for refs in ((0,) if quick or mode != "gpu" else (0, 7)):
            cmd = [sys.executable, __file__, "--gpu-child", mode, "--frames", str(frames), "--width", str(width),
                   "--height", str(height), "--refs", str(refs), "--repeat", "2" if quick else "4"]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                tail = (proc.stderr or proc.stdout)[-2000:]
                results.append({"mode": mode, "reference_frames": refs, "error": tail})
                print(f"[{mode}] failed:\n{tail}", file=sys.stderr)
                continue
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"[{mode}, {refs} refs] {results[-1]['s_per_step_cfg']:.2f} s/step (CFG), "
                  f"{results[-1]['peak_vram_mb']:.0f} MB peak", file=sys.stderr)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--gpu", action="store_true", help="also benchmark the real-size transformer on CUDA")
    parser.add_argument("--modes", default="gpu,fp8,group", help="VRAM modes: gpu, fp8, group, sequential")
    parser.add_argument("--gpu-child", help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=int, default=81, help=argparse.SUPPRESS)
    parser.add_argument("--width", type=int, default=1248, help=argparse.SUPPRESS)
    parser.add_argument("--height", type=int, default=704, help=argparse.SUPPRESS)
    parser.add_argument("--refs", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=4, help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()
    if args.gpu_child:
        record = gpu_mode_run(args.gpu_child, args.frames, args.width, args.height, args.refs, args.repeat)
        print(json.dumps(record))
        return

    record = {"cpu_tiny_pipelines": cpu_section(args.quick)}
    if args.gpu and torch.cuda.is_available():
        record["gpu_transformer_5b"] = gpu_section(args.quick, [m.strip() for m in args.modes.split(",") if m.strip()])
    elif args.gpu:
        record["gpu_transformer_5b"] = "skipped: no CUDA device"
    harness.write("generator_quick" if args.quick else "generator", record)


if __name__ == "__main__":
    main()
