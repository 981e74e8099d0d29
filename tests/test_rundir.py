"""The run directory: safe names, one driver at a time, outputs a SIGKILL never leaves half-written."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deepncheap.errors import OutputError
from deepncheap.rundir import claimed, default_run_name, existing_run, holder_pid, new_run


@pytest.mark.parametrize("name", ["../../etc/passwd", "/abs/path", "..", "a/../../b", "", "dígits ✓"])
def test_default_run_names_never_leave_runs(name):
    path = default_run_name(name, "mlp")
    assert path.parent == Path("runs") and "/" not in path.name and not path.name.startswith(".")


def test_a_claimed_run_is_refused_naming_the_holder(tmp_path):
    with new_run(tmp_path / "run", Path("unused")) as run_dir:
        assert holder_pid(run_dir) == os.getpid()
        with (
            pytest.raises(OutputError, match=f"in use by another dnc process \\(pid {os.getpid()}\\)"),
            claimed(run_dir),
        ):
            pass
    assert holder_pid(run_dir) is None  # released on exit


def test_a_killed_holder_releases_the_run(tmp_path):
    (tmp_path / "run").mkdir()
    code = "import sys, time; from pathlib import Path; from deepncheap.rundir import claimed\n"
    code += "with claimed(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)\n"
    process = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    assert holder_pid(tmp_path / "run") == process.pid
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert holder_pid(tmp_path / "run") is None
    with claimed(tmp_path / "run"):
        pass


def test_existing_run_requires_a_store(tmp_path):
    with pytest.raises(OutputError, match="is not a run"), existing_run(tmp_path):
        pass


WRITER = """
import sys
from pathlib import Path
from deepncheap.artifacts import write_atomic
path, n = Path(sys.argv[1]), 0
write_atomic(path, b"0" * 2_000_000)
print("writing", flush=True)
while True:
    n += 1
    write_atomic(path, (str(n % 10) * 2_000_000).encode())
"""


def test_sigkill_during_writes_never_leaves_half_a_file(tmp_path):
    """Kill a process that rewrites a 2 MB output in a loop, at several moments: the file is always whole."""
    target = tmp_path / "best.json"
    for delay in (0.0, 0.02, 0.1, 0.2):
        process = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
        assert process.stdout.readline().strip() == "writing"
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        content = target.read_bytes()
        assert len(content) == 2_000_000 and len(set(content)) == 1
