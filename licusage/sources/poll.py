"""Polling a license server: run its status command, reconcile the store with the snapshot.

The command is run without a shell (its words split as a POSIX shell would, ``shlex``), with a
time limit: a command that hangs is killed and reported, and changes nothing.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from datetime import timedelta

from ..errors import InvalidInput

DEFAULT_TIMEOUT = timedelta(seconds=60)


def run_command(command: str, timeout: timedelta = DEFAULT_TIMEOUT) -> str:
    """The standard output of `command`; :class:`InvalidInput` when it cannot be run, fails
    without output, or does not finish within `timeout`."""
    try:
        argv = shlex.split(command)
    except ValueError as error:
        raise InvalidInput(f"cannot split the command {command!r}: {error}") from None
    if not argv:
        raise InvalidInput("the command is empty")
    seconds = timeout.total_seconds()
    try:
        # its own process group: on time-out the command and whatever it started are killed
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as error:
        raise InvalidInput(f"cannot run {argv[0]}: {error.strerror or error}") from None
    try:
        stdout, stderr = process.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise InvalidInput(
            f"the command {argv[0]} did not finish within {seconds:g} s (killed)"
        ) from None
    done = subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)
    output = done.stdout.decode("utf-8", "replace")
    if done.returncode != 0 and not output.strip():
        reason = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise InvalidInput(
            f"the command {argv[0]} failed with exit code {done.returncode}"
            + (f": {reason[0]}" if reason else "")
        )
    return output
