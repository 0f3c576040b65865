"""The demo's tasks: statistics of Python source files, and their aggregation.

`analyse_file` runs once per file. Its cache key is the file's sha256, so a second
run over unchanged files is served from the task run state cache and the function
does not run again. A few percent of files, chosen by their hash, fail on the first
attempt with an injected transient error, and the run's retry policy runs them again.
`aggregate_stats` sums the statistics of a chunk of files; it carries the tag
`AGGREGATE_TAG`, which the demo gives a tag concurrency limit.

Start workers for these tasks with ``taskgate worker examples.stdlib_stats``.
"""

from __future__ import annotations

import ast
import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Any

from workers import task

logger = logging.getLogger(__name__)

AGGREGATE_TAG = "stdlib-aggregate"
# Folder where a worker records the first attempt of a file that gets an injected
# error. The demo sets it for its workers; with it unset, no error is injected.
FAULTS_FOLDER_VARIABLE = "TASKGATE_DEMO_FAULTS_DIR"
# Percentage of files whose first attempt fails, chosen by content hash.
INJECTED_FAULT_PERCENT = 3
STAT_FIELDS = ("files", "lines", "functions", "classes", "imports", "syntax_errors", "bytes")
# CPython 3.11's ast.parse keeps its recursion depth in interpreter-wide state, so two
# threads parsing at once can fail with "AST constructor recursion depth mismatch".
# Workers run sync tasks in a thread pool; parsing holds the GIL anyway, so one lock
# costs no parallelism.
_PARSE_LOCK = threading.Lock()


class InjectedTransientError(RuntimeError):
    """A failure the demo injects on purpose, to show a retry."""


def content_hash(source: bytes) -> str:
    """Return the sha256 of a file's bytes, as hex."""
    return hashlib.sha256(source).hexdigest()


def gets_injected_fault(sha256_hex: str) -> bool:
    """Tell whether the file with this content hash fails on its first attempt."""
    return int(sha256_hex[:8], 16) % 100 < INJECTED_FAULT_PERCENT


def file_cache_key(parameters: dict[str, Any]) -> str:
    """Cache key of `analyse_file`: the content hash, so any unchanged file is a cache hit."""
    return f"file-stats:{parameters['sha256_hex']}"


def source_statistics(source: bytes) -> dict[str, int]:
    """Count the lines, functions, classes and import statements of Python source.

    A file that does not parse (the standard library's tests include some on purpose)
    counts its lines and one syntax error.
    """
    stats = {name: 0 for name in STAT_FIELDS}
    stats["files"] = 1
    stats["bytes"] = len(source)
    stats["lines"] = source.count(b"\n") + (1 if source and not source.endswith(b"\n") else 0)
    try:
        with _PARSE_LOCK:
            tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        stats["syntax_errors"] = 1
        return stats
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            stats["functions"] += 1
        elif isinstance(node, ast.ClassDef):
            stats["classes"] += 1
        elif isinstance(node, ast.Import | ast.ImportFrom):
            stats["imports"] += 1
    return stats


def _inject_fault_once(sha256_hex: str) -> None:
    folder = os.environ.get(FAULTS_FOLDER_VARIABLE)
    if not folder or not gets_injected_fault(sha256_hex):
        return
    marker = Path(folder) / sha256_hex
    try:
        # O_EXCL makes exactly one attempt, in any worker process, the first one.
        descriptor = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(descriptor)
    raise InjectedTransientError(f"injected transient error for content {sha256_hex[:12]}")


@task(
    task_key="examples.analyse_file",
    retries=2,
    retry_delay_seconds=0.2,
    cache_key_fn=file_cache_key,
)
def analyse_file(path: str, sha256_hex: str) -> dict[str, Any]:
    """Return the statistics of one Python file and the sha256 of what was read.

    `sha256_hex` is the hash the caller computed for the cache key; the returned
    ``sha256`` is the hash of the bytes this run read, which differs only if the file
    changed in between.
    """
    source = Path(path).read_bytes()
    read_hash = content_hash(source)
    _inject_fault_once(sha256_hex)
    return {"sha256": read_hash, **source_statistics(source)}


@task(task_key="examples.aggregate_stats", tags=[AGGREGATE_TAG])
def aggregate_stats(chunk: list[dict[str, Any]]) -> dict[str, int]:
    """Sum the statistics of a chunk of `analyse_file` results."""
    totals = {name: 0 for name in STAT_FIELDS}
    for stats in chunk:
        for name in STAT_FIELDS:
            totals[name] += int(stats.get(name, 0))
    return totals


def find_python_files(folder: Path) -> list[Path]:
    """Return every ``*.py`` file under the folder, sorted, skipping site-packages."""
    found = []
    for path in folder.rglob("*.py"):
        parts = path.relative_to(folder).parts
        if "site-packages" in parts or "dist-packages" in parts or "__pycache__" in parts:
            continue
        if path.is_file():
            found.append(path)
    return sorted(found)


def standard_library_folder() -> Path:
    """Return the folder of the running interpreter's standard library."""
    import sysconfig  # noqa: PLC0415

    return Path(sysconfig.get_paths()["stdlib"])
