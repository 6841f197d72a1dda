"""Every `spatia` subcommand with missing, empty, wrong-type, huge and hostile arguments: each
ends with exit status 2 and a one-line message naming the problem, never a traceback, and
nothing already on disk is changed."""

from __future__ import annotations

import json
import signal
import traceback
from pathlib import Path

import numpy as np
import pytest

from spatia.cli.main import main

WIDTH, HEIGHT = 32, 24


def _shot(folder: Path, **fields) -> dict:
    k = [30.0, 30.0, WIDTH / 2, HEIGHT / 2]
    eye = [[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]]
    shot = {"schema": "spatia.shot", "version": 1, "name": "s", "width": WIDTH, "height": HEIGHT, "fps": 24,
            "frames": [{"frame": 1, "intrinsics": k, "w2c": eye}, {"frame": 9, "intrinsics": k, "w2c": eye}],
            "prompts": ["a room"], "init": {"kind": "render", "image": "first.png", "depth": "depth.npy"},
            "rounds": {"first_round_frames": 5, "round_frames": 5, "overlap": 1}}
    shot.update(fields)
    return shot


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_files(tmp_path_factory.mktemp("sweep"))


def make_files(root: Path):
    """A folder of good and bad inputs, and a record of every byte in it."""
    from PIL import Image

    Image.fromarray(np.full((HEIGHT, WIDTH, 3), 128, np.uint8)).save(root / "first.png")
    depth = np.full((HEIGHT, WIDTH), 2.0, np.float32)
    np.save(root / "depth.npy", depth)
    np.save(root / "depth_nan.npy", np.full_like(depth, np.nan))
    np.save(root / "depth_negative.npy", -depth)
    np.save(root / "depth_int.npy", depth.astype(np.int32))
    np.save(root / "depth_small.npy", depth[:4, :4])
    (root / "depth_garbage.npy").write_bytes(b"\x93NUMPY garbage")
    (root / "depth.exr").write_bytes(b"not an exr")
    for name, shot in {
        "good": _shot(root),
        "nan_depth": _shot(root, init={"kind": "render", "image": "first.png", "depth": "depth_nan.npy"}),
        "negative_depth": _shot(root, init={"kind": "render", "image": "first.png", "depth": "depth_negative.npy"}),
        "int_depth": _shot(root, init={"kind": "render", "image": "first.png", "depth": "depth_int.npy"}),
        "small_depth": _shot(root, init={"kind": "render", "image": "first.png", "depth": "depth_small.npy"}),
        "garbage_depth": _shot(root, init={"kind": "render", "image": "first.png", "depth": "depth_garbage.npy"}),
        "exr_garbage": _shot(root, init={"kind": "render", "image": "first.png", "depth": "depth.exr"}),
        "txt_depth": _shot(root, init={"kind": "render", "image": "first.png", "depth": "first.png"}),
        "missing_image": _shot(root, init={"kind": "render", "image": "nope.png", "depth": "depth.npy"}),
        "hostile_path": _shot(root, init={"kind": "render", "image": "/dev/zero", "depth": "depth.npy"}),
        "prompts": _shot(root, prompts=["a", "b"], frames=[dict(_shot(root)["frames"][0], frame=n) for n in (1, 17)]),
        "generator": _shot(root, generator="nonsense"),
        "world": _shot(root, world="no/such/world", init=None),
    }.items():
        (root / f"{name}.json").write_text(json.dumps(shot))
    (root / "list.json").write_text("[1, 2]")
    (root / "broken.json").write_text('{"schema": ')
    (root / "huge_numbers.json").write_text(json.dumps(_shot(root, width=10**30, fps=1e308)))
    (root / "a_file").write_text("I am a file")
    (root / "empty").mkdir()
    (root / "not.blend").write_text("not a blend file")
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    return root, before


def cases(root: Path) -> list[tuple[list[str], str]]:
    """(argv, a word the message must contain)."""
    f = root / "a_file"
    s = lambda name: str(root / f"{name}.json")  # noqa: E731
    out = str(root / "out")  # never written: every case is refused before the output folder is made
    huge = str(10**30)
    return [
        # the top level
        ([], "command"),
        (["nonsense"], "invalid choice"),
        # demo
        (["demo", "--width", "abc"], "--width"),
        (["demo", "--width", "0"], "--width"),
        (["demo", "--width", "-5"], "--width"),
        (["demo", "--width", huge], "--width"),
        (["demo", "--height", "3"], "--height"),
        (["demo", "--rounds", "0"], "--rounds"),
        (["demo", "--rounds", "100000"], "--rounds"),
        (["demo", "--samples", "0"], "--samples"),
        (["demo", "--seed", "-1"], "--seed"),
        (["demo", "--out", str(f)], "not a folder"),
        (["demo", "--out", str(f / "sub")], "not a folder"),
        # generate
        (["generate"], "required"),
        (["generate", "--shot", s("good")], "--out"),
        (["generate", "--shot", "", "--out", out], "shot"),
        (["generate", "--case", "", "--out", out], "folder"),
        (["generate", "--shot", str(root / "missing.json"), "--out", out], "missing"),
        (["generate", "--shot", str(root / "empty"), "--out", out], "folder"),
        (["generate", "--shot", str(root / "list.json"), "--out", out], "JSON object"),
        (["generate", "--shot", str(root / "broken.json"), "--out", out], "malformed JSON"),
        (["generate", "--shot", str(root / "huge_numbers.json"), "--out", out], "width"),
        (["generate", "--shot", str(f), "--out", out], "malformed JSON"),
        (["generate", "--case", str(f), "--out", out], "not a folder"),
        (["generate", "--case", str(root / "empty"), "--out", out], "img.jpg"),
        (["generate", "--shot", s("nan_depth"), "--out", out], "no usable pixel"),
        (["generate", "--shot", s("negative_depth"), "--out", out], "negative"),
        (["generate", "--shot", s("int_depth"), "--out", out], "int32"),
        (["generate", "--shot", s("small_depth"), "--out", out], "but the shot is"),
        (["generate", "--shot", s("garbage_depth"), "--out", out], "depth_garbage.npy"),
        (["generate", "--shot", s("exr_garbage"), "--out", out], "OpenEXR"),
        (["generate", "--shot", s("txt_depth"), "--out", out], ".npy or .exr"),
        (["generate", "--shot", s("missing_image"), "--out", out], "does not exist"),
        (["generate", "--shot", s("hostile_path"), "--out", out], "init.image"),
        (["generate", "--shot", s("prompts"), "--out", out], "prompt"),
        (["generate", "--shot", s("generator"), "--out", out], "unknown generator"),
        (["generate", "--shot", s("world"), "--out", out], "world"),
        (["generate", "--shot", s("good"), "--out", str(f)], "not a folder"),
        (["generate", "--shot", s("good"), "--out", str(f / "sub")], "not a folder"),
        (["generate", "--shot", s("good"), "--out", out, "--generator", ""], "generator"),
        (["generate", "--shot", s("good"), "--out", out, "--generator", "nonsense"], "unknown generator"),
        (["generate", "--shot", s("good"), "--out", out, "--steps", "abc"], "--steps"),
        (["generate", "--shot", s("good"), "--out", out, "--steps", "0"], "--steps"),
        (["generate", "--shot", s("good"), "--out", out, "--seed", "-1"], "--seed"),
        (["generate", "--shot", s("good"), "--out", out, "--seed", huge], "--seed"),
        (["generate", "--shot", s("good"), "--out", out, "--vram", "nonsense"], "nonsense"),
        (["generate", "--shot", s("good"), "--out", out, "--retrieval", "x"], "--retrieval"),
        (["generate", "--case", str(root), "--out", out, "--server", "http://127.0.0.1:9"], "--server needs --shot"),
        (["generate", "--shot", s("good"), "--out", out, "--server", "not a url"], "URL"),
        (["generate", "--shot", s("good"), "--out", out, "--server", "ftp://127.0.0.1:9"], "URL"),
        # models
        (["models"], "required"),
        (["models", "download"], "required"),
        (["models", "download", "nonsense"], "nonsense"),
        (["models", "download", ""], "preset"),
        (["models", "verify", "nonsense"], "nonsense"),
        # cameras
        (["cameras", "convert", str(root / "missing"), out, "--to", "shot"], "missing"),
        (["cameras", "convert", str(f), out, "--to", "shot"], "camera format"),
        (["cameras", "convert", "", out, "--to", "shot"], "empty"),
        (["cameras", "convert", s("good"), out, "--to", "bogus"], "--to"),
        (["cameras", "convert", s("good"), str(root / "c.json"), "--to", "shot", "--fps", "0"], "--fps"),
        (["cameras", "convert", s("good"), str(root / "c.json"), "--to", "shot", "--fps", "nan"], "--fps"),
        (["cameras", "convert", s("good"), str(root / "c.json"), "--to", "shot", "--fps", "inf"], "--fps"),
        (["cameras", "convert", s("good"), str(f / "x.json"), "--to", "shot"], "a_file"),
        (["cameras", "convert", s("good"), str(f), "--to", "colmap"], "a_file"),
        (["cameras", "convert", s("good"), str(root / "empty"), "--to", "shot"], "empty"),
        # serve (refused before anything binds)
        (["serve", "--port", "abc"], "--port"),
        (["serve", "--port", "-1"], "--port"),
        (["serve", "--port", "70000"], "--port"),
        (["serve", "--workers", "0"], "--workers"),
        (["serve", "--max-upload-mb", "-1"], "--max-upload-mb"),
        (["serve", "--max-upload-mb", "nan"], "--max-upload-mb"),
        (["serve", "--max-json-mb", "inf"], "--max-json-mb"),
        (["serve", "--max-heavy-queries", "0"], "--max-heavy-queries"),
        (["serve", "--heavy-wait-s", "-1"], "--heavy-wait-s"),
        (["serve", "--data-dir", str(f)], "a_file"),
        (["serve", "--data-dir", ""], "--data-dir"),
        (["serve", "--data-dir", str(f / "sub")], "a_file"),
        (["serve", "--host", ""], "--host"),
        (["serve", "--allow-origin", "evil"], "origin"),
        # eval
        (["eval", "--scene", "nonsense"], "unknown scene"),
        (["eval", "--scene", ""], "scene"),
        (["eval", "--size", "0x0"], "--size"),
        (["eval", "--size", "100000x100000"], "--size"),
        (["eval", "--frames", "0"], "--frames"),
        (["eval", "--frames", huge], "--frames"),
        (["eval", "--rounds", "0"], "--rounds"),
        (["eval", "--samples", "0"], "--samples"),
        (["eval", "--voxel-size", "0"], "voxel"),
        (["eval", "--voxel-size", "nan"], "voxel"),
        (["eval", "--generator", ""], "generator"),
        (["eval", "--out", str(f)], "not a folder"),
        (["eval", "--cache", str(f)], "a_file"),
        # batch
        (["batch", "--out", out], "SHOTS"),
        (["batch", str(root / "missing.blend"), "--out", out], "missing.blend"),
        (["batch", str(root / "empty"), "--out", out], ".blend"),
        (["batch", str(root / "not.blend"), "--out", str(f)], "not a folder"),
        (["batch", str(root / "not.blend"), "--out", out, "--samples", "0"], "--samples"),
        (["batch", str(root / "not.blend"), "--out", out, "--ray-cpus", "-1"], "--ray-cpus"),
        (["batch", str(root / "not.blend"), "--out", out, "--blender", str(root / "no-blender")], "no-blender"),
        # objects
        (["objects", "list", str(root / "missing")], "missing"),
        (["objects", "list", str(f)], "a_file"),
        (["objects", "list", ""], "world"),
        (["objects", "show", str(root / "missing"), "abc"], "abc"),
        (["objects", "show", str(root / "missing"), "1.0"], "1.0"),
        (["objects", "show", str(root / "missing"), "-1"], "-1"),
        (["objects", "forget", str(root / "missing"), huge], huge[:8]),
    ]


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def test_every_subcommand_refuses_bad_arguments_with_a_message_and_no_traceback(files, capsys, monkeypatch):
    root, before = files
    import spatia.service.commands as service_commands

    def no_serving(*args, **kwargs):  # a serve case that gets this far was not refused: never bind a port
        raise AssertionError("spatia serve started with arguments it should have refused")

    monkeypatch.setattr(service_commands, "serve", no_serving)
    monkeypatch.chdir(root / "empty")  # relative defaults (out/demo, out/eval) land here, never in the checkout
    problems = []
    old = signal.signal(signal.SIGALRM, _alarm)
    try:
        for argv, word in cases(root):
            signal.alarm(60)
            try:
                try:
                    status = main(argv)
                except SystemExit as exit_:
                    status = exit_.code
            except _Timeout:
                problems.append(f"{argv}: still running after 60 s (the argument was not refused up front)")
                continue
            except BaseException as err:  # noqa: BLE001 - a traceback is exactly what the sweep looks for
                problems.append(f"{argv}: traceback {type(err).__name__}: {err}\n{traceback.format_exc(limit=-3)}")
                continue
            finally:
                signal.alarm(0)
            err = capsys.readouterr().err
            if status != 2:
                problems.append(f"{argv}: exit status {status!r}, expected 2 ({err.strip()[-200:]!r})")
            elif "Traceback" in err:
                problems.append(f"{argv}: printed a traceback")
            elif word.lower() not in err.lower():
                problems.append(f"{argv}: the message does not name {word!r}: {err.strip()[-300:]!r}")
    finally:
        signal.signal(signal.SIGALRM, old)
    after = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert after == before, "a refused command changed or added files"
    assert not problems, f"{len(problems)} of {len(cases(root))} cases:\n" + "\n".join(problems)
