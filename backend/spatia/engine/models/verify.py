"""Check downloaded weights: every file readable, LFS blobs matching their sha256 names,
safetensors headers parseable."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from .registry import ModelPreset, find_source, get_preset

_SHA256_NAME = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class VerifyReport:
    preset: str
    present: bool
    files: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.present and not self.problems


def _sha256(path: Path, chunk: int = 1 << 24) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: Path) -> str | None:
    """None if the file checks out, else what is wrong with it."""
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        return f"{path}: missing or a broken link ({exc})"
    if _SHA256_NAME.match(target.name) and _sha256(target) != target.name:
        return f"{path}: content does not match its sha256 (corrupt or truncated download)"
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(target), framework="numpy") as fh:
                fh.keys()
        except Exception as exc:  # safetensors raises several error types for bad headers
            return f"{path}: not a readable safetensors file ({exc})"
    return None


def verify_preset(preset: ModelPreset | str) -> VerifyReport:
    preset = get_preset(preset) if isinstance(preset, str) else preset
    report = VerifyReport(preset.name, present=True)
    for source in preset.sources:
        folder = find_source(preset, source)
        if folder is None:
            report.present = False
            report.problems.append(f"{source.repo_id}: not downloaded")
            continue
        for path in sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink()):
            report.files += 1
            problem = verify_file(path)
            if problem:
                report.problems.append(problem)
    return report
