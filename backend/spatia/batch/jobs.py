"""Which shots a batch runs, under which names, and the content key that says a shot is done.

A shot's key hashes everything its outputs depend on: the .blend's bytes, the batch options
that change the result (generator override, samples, resolution), the presets and the code
(spatia and spatia_blender sources). A world reused from the shot's settings is checked
separately (its world.json hash is in the shot's report), since finding it needs the .blend
opened.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from spatia import __version__

SHOTS_DIR = "shots"
SUMMARY = "summary.json"
REPORT = "report.json"
LOG = "log.txt"
PARTIAL_PREFIX = "."
REPORT_SCHEMA = "spatia.batch.shot"
PROGRESS_PREFIX = "@@spatia-batch-progress"  # worker stderr lines carrying {"fraction", "stage"}
RESOLUTIONS = ("scene", "quality")


class BatchError(ValueError):
    """The batch cannot start (missing shot files, clashing names, bad options)."""


@dataclass(frozen=True)
class BatchOptions:
    generator: str | None = None  # None: each shot's own setting
    samples: int | None = None  # Cycles samples of the first-frame render; None: the quality preset's
    resolution: str = "scene"  # "scene": the .blend's render size; "quality": the preset's pixel count
    worlds_dir: str | None = None  # where worlds named in shot settings are looked up (after the .blend's folder)
    blender: str | None = None  # a Blender binary to run each shot in; None: the bpy module

    def __post_init__(self):
        if self.resolution not in RESOLUTIONS:
            raise BatchError(f"resolution must be one of {', '.join(RESOLUTIONS)}, got {self.resolution!r}")
        if self.samples is not None and self.samples < 1:
            raise BatchError(f"samples must be at least 1, got {self.samples}")

    def output_affecting(self) -> dict:
        """The options that change a shot's outputs (the Blender binary and worlds folder only locate things)."""
        return {"generator": self.generator, "samples": self.samples, "resolution": self.resolution}


@dataclass(frozen=True)
class ShotJob:
    """One shot: what the worker process is told. Paths are absolute strings."""

    name: str
    source: str  # the .blend as found
    blend: str  # the .blend the worker opens (the source, or a copy on a remote machine)
    stage_dir: str
    key: str
    options: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "ShotJob":
        return cls(**json.loads(text))


def find_shots(paths) -> list[Path]:
    """.blend files from arguments that are files or folders (a folder: its *.blend, sorted)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            blends = sorted(p for p in path.glob("*.blend") if p.is_file())
            if not blends:
                raise BatchError(f"{path}: no .blend files in this folder")
            found += blends
        elif path.is_file():
            if path.suffix.lower() != ".blend":
                raise BatchError(f"{path}: not a .blend file")
            found.append(path)
        else:
            raise BatchError(f"{path}: no such file or folder")
    if not found:
        raise BatchError("no shots given")
    return [p.resolve() for p in found]


def shot_names(blends: list[Path]) -> list[str]:
    """Output folder names: the file names without .blend; two shots may not share one."""
    names = [p.stem for p in blends]
    seen: dict[str, Path] = {}
    for name, path in zip(names, blends):
        if name.startswith(PARTIAL_PREFIX):
            raise BatchError(f"{path}: shot file names may not start with {PARTIAL_PREFIX!r}")
        if name in seen:
            raise BatchError(f"two shots would write to {SHOTS_DIR}/{name}/: {seen[name]} and {path}; rename one")
        seen[name] = path
    return names


def sha256_file(path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _tree_digest(root: Path, patterns: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    files = sorted({p for pattern in patterns for p in root.rglob(pattern) if p.is_file() and "__pycache__" not in p.parts})
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def code_version() -> str:
    """The package version plus a hash of the sources that produce a shot's outputs."""
    import spatia
    import spatia_blender

    parts = [_tree_digest(Path(module.__file__).parent, ("*.py",)) for module in (spatia, spatia_blender)]
    return f"{__version__}+{hashlib.sha256(''.join(parts).encode()).hexdigest()[:12]}"


def presets_digest() -> str:
    from spatia.formats.presets import find_presets_dir

    return _tree_digest(find_presets_dir(), ("*.json",))[:16]


def shot_key(blend: Path, options: BatchOptions, code: str, presets: str) -> str:
    digest = hashlib.sha256()
    digest.update(sha256_file(blend).encode())
    digest.update(json.dumps({"options": options.output_affecting(), "code": code, "presets": presets},
                             sort_keys=True).encode())
    return digest.hexdigest()


def shot_dir(out: Path, name: str) -> Path:
    return Path(out) / SHOTS_DIR / name


def stage_dir(out: Path, name: str) -> Path:
    return Path(out) / SHOTS_DIR / f"{PARTIAL_PREFIX}{name}.partial"
