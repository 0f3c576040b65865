"""Process management, timing and memory sampling shared by every benchmark.

Every process a benchmark starts is a `ManagedProcess`: it is stopped by its own pid
(SIGTERM, then SIGKILL after a grace period), never by name. Memory figures come from
Linux: `VmHWM` in /proc/<pid>/status is the peak resident set size over the process's
life, and `RssSampler` tracks the peak over one phase with psutil.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

LOG_DIR = Path(tempfile.mkdtemp(prefix="taskgate-bench-"))


class BenchmarkError(RuntimeError):
    """A benchmark could not run to the end; the message names the step that failed."""


@dataclass
class ManagedProcess:
    """A child process started by a benchmark, with its output in a log file."""

    name: str
    argv: Sequence[str]
    env: dict[str, str] | None = None
    process: subprocess.Popen | None = None
    log_path: Path | None = None

    @classmethod
    def python_module(
        cls, name: str, module: str, *args: str, env: dict[str, str] | None = None
    ) -> ManagedProcess:
        """Describe `python -m module args...` run with this interpreter."""
        return cls(name=name, argv=[sys.executable, "-m", module, *args], env=env)

    @property
    def pid(self) -> int:
        if self.process is None:
            raise BenchmarkError(f"{self.name} has not been started")
        return self.process.pid

    def start(self) -> ManagedProcess:
        self.log_path = LOG_DIR / f"{self.name}-{time.monotonic_ns()}.log"
        environment = {**os.environ, **(self.env or {})}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                list(self.argv),
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check_running(self) -> None:
        """Raise with the tail of the log when the process has exited."""
        if not self.is_running():
            code = None if self.process is None else self.process.returncode
            raise BenchmarkError(
                f"{self.name} exited with code {code}; last output:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no output)"
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def rss_bytes(self) -> int:
        return psutil.Process(self.pid).memory_info().rss

    def cpu_seconds(self) -> float:
        """Return the user and system CPU time the process has used so far."""
        times = psutil.Process(self.pid).cpu_times()
        return times.user + times.system

    def peak_rss_bytes(self) -> int:
        """Return the peak resident set size of the process so far (VmHWM)."""
        return peak_rss_bytes(self.pid)

    def stop(self, grace: float = 10.0) -> None:
        """Stop the process by its pid: SIGTERM, then SIGKILL after `grace` seconds."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def peak_rss_bytes(pid: int) -> int:
    """Return VmHWM, the peak resident set size of a live process, in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise BenchmarkError(f"/proc/{pid}/status has no VmHWM line")


class ProcessGroup:
    """The processes of one benchmark run; leaving the block stops them all, newest first."""

    def __init__(self) -> None:
        self.processes: list[ManagedProcess] = []

    def start(self, process: ManagedProcess) -> ManagedProcess:
        self.processes.append(process)
        return process.start()

    def check_running(self) -> None:
        for process in self.processes:
            process.check_running()

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_all()


class RssSampler:
    """Samples the resident set size of some processes on a thread and keeps each peak."""

    def __init__(self, processes: Iterable[ManagedProcess], interval: float = 0.05) -> None:
        self.processes = list(processes)
        self.interval = interval
        self.peaks: dict[str, int] = {process.name: 0 for process in self.processes}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        handles = [(process.name, psutil.Process(process.pid)) for process in self.processes]
        while not self._stop.is_set():
            for name, handle in handles:
                try:
                    rss = handle.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
                self.peaks[name] = max(self.peaks[name], rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Deadline:
    """A time limit for one benchmark step, so no loop can run on unbounded."""

    seconds: float
    step: str
    started: float = field(default_factory=time.monotonic)

    def check(self) -> None:
        if time.monotonic() - self.started > self.seconds:
            raise BenchmarkError(f"{self.step} did not finish within {self.seconds:.0f} s")


def percentile(values: Sequence[float], fraction: float) -> float:
    """Return the nearest-rank percentile of `values` (fraction in 0..1)."""
    if not values:
        raise BenchmarkError("percentile of no values")
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


def wait_until(predicate, deadline: Deadline, interval: float = 0.02) -> None:
    """Poll `predicate()` until it returns true or the deadline passes."""
    while not predicate():
        deadline.check()
        time.sleep(interval)
