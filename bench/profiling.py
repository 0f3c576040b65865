"""Sample the service and a worker with py-spy while the end-to-end load runs.

py-spy attaches to a running process by pid and records its Python stacks without
changing the code. Its raw output has one collapsed stack per line, then a sample
count. This module sums it into two tables, each as a share of all samples: the
functions the samples were in (self time), and taskgate's own functions on the
stack (inclusive time). Samples include threads waiting in epoll or on a queue, so
a large share for ``select`` means that process was often idle.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.harness import LOG_DIR, BenchmarkError

SAMPLE_RATE_HZ = 200


@dataclass
class Profile:
    """The summed samples of one process."""

    name: str
    samples: int
    self_share: list[tuple[str, float]]
    inclusive_share: list[tuple[str, float]]

    def lines(self, top: int = 16) -> list[str]:
        lines = [f"{self.name}: {self.samples} samples at {SAMPLE_RATE_HZ} Hz"]
        lines.append("  taskgate functions on the stack (inclusive):")
        lines += [f"    {share:5.1%}  {frame}" for frame, share in self.inclusive_share[:top]]
        lines.append("  running (self):")
        lines += [f"    {share:5.1%}  {frame}" for frame, share in self.self_share[:top]]
        return lines


def py_spy_binary() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise BenchmarkError("py-spy is not installed; `pip install py-spy` to profile")
    return found


def start_recording(name: str, pid: int, seconds: float) -> tuple[subprocess.Popen, Path]:
    """Start py-spy on `pid` for `seconds`; return the recorder and its output path."""
    output = LOG_DIR / f"profile-{name}.txt"
    recorder = subprocess.Popen(
        [
            py_spy_binary(),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            str(SAMPLE_RATE_HZ),
            "--format",
            "raw",
            "--output",
            str(output),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return recorder, output


def finish_recording(name: str, recorder: subprocess.Popen, output: Path) -> Profile:
    """Wait for py-spy to finish and sum its samples."""
    _, errors = recorder.communicate(timeout=120)
    if recorder.returncode != 0 or not output.exists():
        raise BenchmarkError(f"py-spy on {name} failed: {errors.decode(errors='replace')[-500:]}")
    return summarize(name, output.read_text())


PROJECT_FOLDERS = ("queue_server/", "workers/", "policy/")


def frame_name(frame: str) -> str:
    """Shorten ``function (/long/path/pkg/module.py:line)`` to ``function (pkg/module.py)``."""
    function, _, location = frame.partition(" (")
    path = location.rstrip(")").rsplit(":", 1)[0]
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    else:
        for folder in PROJECT_FOLDERS:
            if folder in path:
                path = folder + path.split(folder, 1)[1]
                break
    return f"{function} ({path})" if path else function


def is_project_frame(name: str) -> bool:
    return any(f"({folder}" in name for folder in PROJECT_FOLDERS)


def summarize(name: str, raw: str) -> Profile:
    self_counts: Counter[str] = Counter()
    inclusive_counts: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame_name(frame) for frame in stack.split(";")]
        total += count
        self_counts[frames[-1]] += count
        for frame in set(frames):
            if is_project_frame(frame):
                inclusive_counts[frame] += count
    if total == 0:
        raise BenchmarkError(f"py-spy recorded no samples of {name}")

    def shares(counts: Counter[str]) -> list[tuple[str, float]]:
        return [(frame, count / total) for frame, count in counts.most_common()]

    return Profile(name, total, shares(self_counts), shares(inclusive_counts))
