"""The GPU check (benchmarks/gpu_check.sh): its tiny CPU dry run end to end, its refusal without
CUDA, its time guard and failure recording; and the random-weight spatia-5b it builds."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from spatia.engine.models.spatia.random_init import (
    SPATIA_5B,
    TINY,
    initial_std,
    materialise,
    parameter_count,
    random_spatia_pipeline,
    random_spatia_transformer,
)

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def run_check(*args, hide_gpu: bool = False, timeout: float = 300):
    env = dict(os.environ, SPATIA_PYTHON=sys.executable)
    env.pop("SPATIA_WHEELS", None)
    if hide_gpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return subprocess.run([str(SCRIPT), *args], check=False, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_cpu_dry_run_writes_every_section_with_numbers_and_records_what_failed(tmp_path):
    """The dry run end to end, with two VRAM modes that cannot run on the CPU put first: fp8
    storage with half a second (less than its process takes to start), so it is killed, and
    model offload, which needs CUDA; every section after them still runs."""
    out = tmp_path / "check.json"
    proc = run_check("--cpu-dry-run", "--out", str(out), "--modes", "gpu-fp8,model-tiled,gpu",
                     "--budget", "generator/gpu-fp8=0.5")
    assert proc.returncode == 1, proc.stdout + proc.stderr  # not every section passed
    record = json.loads(out.read_text())
    assert record["kind"] == "cpu-dry-run" and record["device"] == "cpu"
    sections = record["sections"]
    assert list(sections) == ["tests", "render", "memory/on-device", "generator/gpu-fp8", "generator/model-tiled",
                              "generator/gpu"]

    fp8 = sections["generator/gpu-fp8"]
    assert fp8["status"] == "timeout" and "budget" in fp8["error"] and "result" not in fp8
    offload = sections["generator/model-tiled"]
    assert offload["status"] == "failed" and "needs a CUDA device" in offload["error"]
    assert offload["presets"] == ["24gb"]

    passed = {name: entry for name, entry in sections.items() if name not in ("generator/gpu-fp8", "generator/model-tiled")}
    for name, entry in passed.items():
        assert entry["status"] == "ok", (name, entry.get("error"))
        assert positive(entry["seconds"]) and entry["seconds"] <= entry["budget_s"]
        assert entry["result"]["summary"] in proc.stdout  # the table

    tests = sections["tests"]["result"]
    assert tests["failed"] == tests["errors"] == 0
    assert tests["skipped"] >= 1 and tests["passed"] == 0  # the CUDA tests, skipped on the CPU
    assert "tests/test_render.py" in tests["files"]

    render = sections["render"]["result"]
    for key in ("zbuffer_s_per_frame", "zbuffer_depth_only_s_per_frame", "control_s_per_frame",
                "control_voxel_downsample_s", "zbuffer_coverage", "control_covered"):
        assert positive(render[key]), key
    assert render["points"] >= 10_000 and render["width"] == 96

    memory = sections["memory/on-device"]["result"]
    for key in ("view_index_s", "retrieval_s", "update_s", "view_index_round_s"):
        assert positive(memory[key]), key
    stats = memory["update_stats"]
    assert stats["points_added"] > 0 and stats["reobserved_pixels"] > 0  # the unknown half of the floor comes in
    assert memory["update_points_after"] == memory["memory_points"] + stats["points_added"] - stats["carved"]
    assert memory["retrieved"]  # past frames share the room with the targets

    generator = sections["generator/gpu"]["result"]
    assert generator["components"] == "tiny" and generator["steps"] == 3
    for key in ("build_s", "placement_s", "step_s", "round_s", "control_render_s", "decode_s"):
        assert positive(generator[key]), key
    assert generator["round_40_steps_estimate_s"] == pytest.approx(generator["round_s"] + 37 * generator["step_s"])
    assert generator["output_frames"] == [9, 32, 64, 3]
    assert generator["params"]["transformer"] == parameter_count(random_spatia_transformer(TINY["transformer"], "meta",
                                                                                           torch.float32))
    assert out.with_suffix(".log").is_file()


def test_without_cuda_and_without_a_dry_run_it_stops_at_once_with_one_line(tmp_path):
    out = tmp_path / "check.json"
    proc = run_check("--out", str(out), hide_gpu=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0] and "--cpu-dry-run" in lines[0]
    assert not out.exists()


@pytest.mark.parametrize("args, named", [
    (("--only", "render,warp"), "warp"),
    (("--modes", "gpu,huge"), "huge"),
    (("--budget", "render=soon"), "render=soon"),
])
def test_bad_arguments_are_named(args, named):
    proc = run_check("--cpu-dry-run", *args, timeout=60)
    assert proc.returncode == 2 and named in proc.stderr and proc.stdout == ""


def test_full_size_components_have_the_published_sizes():
    """Built on the meta device (no memory): Wan2.2-TI2V-5B's DiT is 5.0B parameters (plus 1.4B
    for Spatia's 8 control blocks), UMT5-XXL's encoder 5.68B, the Wan2.2 VAE 0.70B."""
    pipe = random_spatia_pipeline(SPATIA_5B, device="meta")
    transformer = pipe.transformer
    base = sum(p.numel() for n, p in transformer.named_parameters() if not n.startswith("control_"))
    assert base == pytest.approx(5.0e9, rel=0.01)
    assert len(transformer.control_blocks) == 8
    assert parameter_count(pipe.text_encoder) == pytest.approx(5.68e9, rel=0.01)
    assert parameter_count(pipe.vae) == pytest.approx(0.705e9, rel=0.01)
    assert all(p.is_meta and p.dtype == torch.bfloat16 for p in transformer.parameters())
    # the components fit together: latents, control latents (projection + score), text states
    z_dim = pipe.vae.config.z_dim
    assert transformer.config.in_channels == transformer.config.out_channels == z_dim == 48
    assert transformer.control_patch_embedding.in_channels == 2 * z_dim
    assert transformer.config.text_dim == pipe.text_encoder.config.d_model == 4096
    assert pipe.size_multiple == 32 and pipe.temporal_factor == 4


def test_materialise_fills_every_parameter_on_the_device_deterministically():
    model = random_spatia_transformer(TINY["transformer"], "cpu", torch.float32, seed=3)
    again = random_spatia_transformer(TINY["transformer"], "cpu", torch.float32, seed=3)
    other = random_spatia_transformer(TINY["transformer"], "cpu", torch.float32, seed=4)
    named = dict(model.named_parameters())
    assert not any(p.is_meta for p in named.values()) and not any(b.is_meta for b in model.buffers())
    for name, param in named.items():
        assert torch.equal(param, dict(again.named_parameters())[name]), name
        assert torch.isfinite(param).all(), name
        if param.dim() == 1:
            assert torch.all(param == (1.0 if name.endswith("weight") else 0.0)), name
    assert not torch.equal(named["blocks.0.ffn.net.0.proj.weight"], dict(other.named_parameters())["blocks.0.ffn.net.0.proj.weight"])
    ffn = named["blocks.0.ffn.net.0.proj.weight"]  # [32, 24]: fan-in 24
    assert ffn.std().item() == pytest.approx(initial_std(ffn.shape), rel=0.15)
    assert initial_std((32, 24)) == pytest.approx(24 ** -0.5)


def test_a_tied_embedding_stays_tied_and_a_parked_pipeline_sits_on_the_park_device():
    pipe = random_spatia_pipeline(TINY, device="cpu", dtype=torch.float32, park_device="cpu")
    encoder = pipe.text_encoder
    assert encoder.shared.weight is encoder.encoder.embed_tokens.weight
    assert {p.device.type for p in pipe.transformer.parameters()} == {"cpu"}
    # a module made partly for real keeps what it had
    linear = torch.nn.Linear(4, 2)
    before = linear.weight.clone()
    materialise(linear, "cpu", torch.float32)
    assert torch.equal(linear.weight, before)


def test_tiny_sizes_are_the_test_models_sizes():
    from spatia.engine.models.spatia.tiny import tiny_spatia_pipeline

    tiny = tiny_spatia_pipeline()
    mine = random_spatia_pipeline(TINY, device="cpu", dtype=torch.float32)
    for name in ("transformer", "text_encoder", "vae"):
        theirs = dict(getattr(tiny, name).named_parameters())
        ours = dict(getattr(mine, name).named_parameters())
        assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}, name
