"""make relay-drill's own settings: a run that could measure nothing says so before it starts."""

import os
import subprocess
import sys

from src.core.config import PROJECT_ROOT


def test_a_layout_the_drill_does_not_have_is_refused_in_one_line() -> None:
    drill = subprocess.run(
        [sys.executable, "-m", "bench.relay_drain"],
        cwd=PROJECT_ROOT,
        env={**os.environ, "RELAY_DRAIN_LAYOUTS": "c"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert drill.returncode == 2
    assert drill.stderr == "error: RELAY_DRAIN_LAYOUTS='c' names no layout: use a, b or ab\n"
    assert drill.stdout == ""
