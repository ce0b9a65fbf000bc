"""`python -m bench` (what `make bench` runs): every benchmark in turn, with defaults.

Each runs as its own process (`python -m bench.<name>`), one after another, so none
measures while another loads the machine; its JSON goes to stdout and its table to
stderr as usual. Options after `--` go to every benchmark (e.g. `-- --smoke`).

    python -m bench [--only ingest,send] [--json-dir bench/results] [-- --smoke]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCHMARKS = (
    "ingest",
    "send",
    "history",
    "ws",
    "faults",
    "campaigns",
    "webhooks",
    "chatguru",
    "reports",
)
"""In the order they run; a name without its bench/<name>.py is skipped."""

HERE = Path(__file__).resolve().parent


def available() -> list[str]:
    return [name for name in BENCHMARKS if (HERE / f"{name}.py").exists()]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", help="comma-separated benchmark names")
    parser.add_argument("--json-dir", type=Path, help="write <name>.json reports here")
    args = parser.parse_args(argv)
    names = available()
    if args.only:
        wanted = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            parser.error(f"unknown benchmark(s): {', '.join(unknown)}; have {', '.join(names)}")
        names = [name for name in names if name in wanted]
    failed = []
    began = time.monotonic()
    for name in names:
        extra = [*passthrough]
        if args.json_dir is not None:
            extra += ["--json-out", str(args.json_dir / f"{name}.json")]
        started = time.monotonic()
        print(f"### bench.{name}", file=sys.stderr, flush=True)
        code = subprocess.call([sys.executable, "-m", f"bench.{name}", *extra], cwd=HERE.parent)
        took = time.monotonic() - started
        print(f"### bench.{name}: exit {code} after {took:.0f} s", file=sys.stderr, flush=True)
        if code != 0:
            failed.append(name)
    total = time.monotonic() - began
    print(f"### all ({', '.join(names)}): {total:.0f} s", file=sys.stderr, flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
