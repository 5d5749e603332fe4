"""Where did the memory go? Compare two tracemalloc snapshots of one ``strangler serve``.

``STRANGLER_TRACEMALLOC_DIR`` makes ``serve`` write ``<pid>-<n>.snap`` files
(``strangler/operate/memtrace.py``); ``bench/chaos.py --tracemalloc-dir`` sets it for a
soak. Given a directory, this compares, for each process, the snapshot a quarter of the
way through with its last (the first quarter is warm-up: pools, caches and the interned
code fill up); given two files, those two. It prints the lines of code whose live
allocations grew most, then the call stacks behind the largest growth.

    python bench/memdiff.py DIR [--top 15]
    python bench/memdiff.py OLD.snap NEW.snap
"""

from __future__ import annotations

import argparse
import tracemalloc
from collections import defaultdict
from pathlib import Path


def compare(old: Path, new: Path, top: int) -> None:
    a = tracemalloc.Snapshot.load(str(old))
    b = tracemalloc.Snapshot.load(str(new))
    total_a = sum(s.size for s in a.statistics("filename"))
    total_b = sum(s.size for s in b.statistics("filename"))
    print(
        f"\n== {old.name} -> {new.name}: "
        f"traced {total_a / 2**20:.1f} MB -> {total_b / 2**20:.1f} MB"
    )
    print(f"-- top {top} lines by growth")
    for stat in b.compare_to(a, "lineno")[:top]:
        frame = stat.traceback[0]
        print(
            f"{stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks  "
            f"{stat.size / 1024:9.1f} KiB now  {frame.filename}:{frame.lineno}"
        )
    print(f"-- top {min(top, 5)} call stacks by growth")
    for stat in b.compare_to(a, "traceback")[: min(top, 5)]:
        print(f"{stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks")
        for line in stat.traceback.format(most_recent_first=True)[::2]:
            print(f"      {line.strip()}")


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("paths", nargs="+", type=Path, help="a snapshot directory, or two .snap files")
    p.add_argument("--top", type=int, default=15)
    args = p.parse_args()
    if len(args.paths) == 2:
        compare(args.paths[0], args.paths[1], args.top)
        return
    by_pid: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(args.paths[0].glob("*.snap")):
        by_pid[path.name.split("-")[0]].append(path)
    for pid, snaps in sorted(by_pid.items()):
        if len(snaps) < 3:
            print(f"pid {pid}: {len(snaps)} snapshot(s), too few to compare")
            continue
        compare(snaps[len(snaps) // 4], snaps[-1], args.top)


if __name__ == "__main__":
    main()
