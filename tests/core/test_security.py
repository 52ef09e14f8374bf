"""Password hashing in its bounded pool of low-priority threads."""

import multiprocessing
import os
import subprocess
import sys

from src.core.config import PROJECT_ROOT
from src.core.security import hash_password, hashing_threads, verify_password

HASH_AND_VERIFY = (
    "from src.core.security import hash_password, verify_password;"
    "print(verify_password('pw long enough', hash_password('pw long enough')))"
)


def niceness_of_hashing_thread() -> int:
    return hashing_threads().submit(lambda: os.getpriority(os.PRIO_PROCESS, 0)).result()


def test_hashes_run_at_a_lower_priority_than_requests() -> None:
    assert verify_password("pw long enough", hash_password("pw long enough"))
    # On Linux, PRIO_PROCESS with 0 is the calling thread.
    assert niceness_of_hashing_thread() == max(os.getpriority(os.PRIO_PROCESS, 0), 10)


def test_hashing_works_in_a_process_already_below_that_priority() -> None:
    run = subprocess.run(
        ["nice", "-n", "15", sys.executable, "-c", HASH_AND_VERIFY],
        cwd=PROJECT_ROOT,
        env={**os.environ, "SETTINGS_FILE": "config/test.env"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert (run.returncode, run.stdout) == (0, "True\n"), run.stderr


def _hash_in_child(queue: "multiprocessing.Queue[bool]") -> None:
    queue.put(verify_password("pw long enough", hash_password("pw long enough")))


def test_a_forked_child_hashes_with_a_pool_of_its_own() -> None:
    hash_password("pw long enough")  # the parent's pool has its threads
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[bool] = context.Queue()
    child = context.Process(target=_hash_in_child, args=(queue,))

    child.start()
    child.join(timeout=30)

    assert child.exitcode == 0
    assert queue.get(timeout=1) is True
