"""`taskgate demo --files` on a folder the test writes: counts, retries and cache hits."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.stdlib_stats import content_hash, gets_injected_fault
from tests.cli.helpers import cli_environment, run_taskgate, summary_value

pytestmark = pytest.mark.e2e

PLAIN_FILES = 6
FAULT_FILES = 2


def source_with_fault(index: int, fault: bool) -> str:
    """Return a small module whose content hash does (or does not) get an injected error."""
    salt = 0
    while True:
        source = (
            f"import os\n\n\ndef function_{index}():\n    return {index}\n\n\n"
            f"class Class{index}:\n    pass\n# salt {salt}\n"
        )
        if gets_injected_fault(content_hash(source.encode())) == fault:
            return source
        salt += 1


def write_folder(folder: Path) -> list[Path]:
    folder.mkdir()
    (folder / "site-packages").mkdir()
    (folder / "site-packages" / "ignored.py").write_text("x = 1\n")
    (folder / "notes.txt").write_text("not python\n")
    paths = []
    for index in range(PLAIN_FILES + FAULT_FILES):
        path = folder / ("pkg" if index % 2 else "") / f"module_{index}.py"
        path.parent.mkdir(exist_ok=True)
        path.write_text(source_with_fault(index, fault=index < FAULT_FILES))
        paths.append(path)
    return paths


def run_demo(folder: Path, environment: dict[str, str]) -> str:
    arguments = ("demo", "--files", str(folder), "--workers", "1")
    completed = run_taskgate(*arguments, environment=environment)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "Traceback" not in completed.stderr
    return completed.stdout


def test_demo_counts_retries_and_cache_hits(clean_redis, key_prefix, tmp_path):
    folder = tmp_path / "sources"
    paths = write_folder(folder)
    environment = cli_environment(
        tmp_path / "home", TASKGATE_REDIS_URL=clean_redis, TASKGATE_KEY_PREFIX=key_prefix
    )
    total = PLAIN_FILES + FAULT_FILES

    first = run_demo(folder, environment)

    assert summary_value(first, "files") == str(total)
    assert summary_value(first, "file runs Completed") == str(total)
    assert summary_value(first, "retries") == str(FAULT_FILES)
    assert summary_value(first, "cache hits") == "0"
    assert summary_value(first, "aggregating runs Completed") == "1"
    assert summary_value(first, "functions") == str(total)
    assert summary_value(first, "classes") == str(total)
    assert summary_value(first, "imports") == str(total)

    changed = paths[-1]
    changed.write_text(changed.read_text() + "\n\ndef added():\n    return None\n")
    assert not gets_injected_fault(content_hash(changed.read_bytes()))

    second = run_demo(folder, environment)

    assert summary_value(second, "files") == str(total)
    assert summary_value(second, "file runs Cached") == str(total - 1)
    assert summary_value(second, "file runs Completed") == "1"
    assert summary_value(second, "cache hits") == str(total - 1)
    assert summary_value(second, "retries") == "0"
    assert summary_value(second, "functions") == str(total + 1)
