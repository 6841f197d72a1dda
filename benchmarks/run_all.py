"""Run every benchmark of the project, each in its own process, and gather one JSON report
plus a Markdown table (benchmarks/results/summary.json and summary.md).

    ./dev.sh bench            full sizes (minutes on a 2-core CPU)
    ./dev.sh bench --quick    small sizes, for a smoke run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from harness import RESULTS_DIR, machine  # noqa: E402


def discover() -> list[Path]:
    return sorted(p for p in HERE.glob("bench_*.py"))


def flatten(record: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in record.items():
        if key in ("machine", "benchmark", "unix_time"):
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        elif isinstance(value, (int, float, str, bool)) or value is None:
            out[name] = value
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--only", nargs="*", help="benchmark names (e.g. render fusion)")
    parser.add_argument("--collect", action="store_true", help="run nothing: gather the results already written")
    args, extra = parser.parse_known_args(argv)
    scripts = [p for p in discover() if not args.only or p.stem.removeprefix("bench_") in args.only]
    summary = {"machine": machine(), "quick": args.quick, "results": {}, "failed": []}
    if args.collect:
        scripts = []
        for result in sorted(RESULTS_DIR.glob("*.json")):
            if result.stem != "summary":
                summary["results"][result.stem] = json.loads(result.read_text())
    for script in scripts:
        name = script.stem.removeprefix("bench_")
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        cmd = [sys.executable, str(script)] + (["--quick"] if args.quick else []) + extra
        proc = subprocess.run(cmd)
        if proc.returncode != 0:
            summary["failed"].append(name)
            continue
        for result in RESULTS_DIR.glob("*.json"):
            if result.stat().st_mtime >= time.time() - (time.perf_counter() - t0) - 1 and result.stem != "summary":
                summary["results"][result.stem] = json.loads(result.read_text())
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "summary.json").write_text(json.dumps(summary, indent=2))
    lines = [f"Machine: {summary['machine']}", "", "| benchmark | metric | value |", "| --- | --- | --- |"]
    for name, record in summary["results"].items():
        for key, value in flatten(record).items():
            if isinstance(value, float):
                value = f"{value:.4g}"
            lines.append(f"| {name} | {key} | {value} |")
    (RESULTS_DIR / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if summary["failed"]:
        print(f"failed: {', '.join(summary['failed'])}", file=sys.stderr)
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
