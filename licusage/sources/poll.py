"""Polling a license server: run its status command, reconcile the store with the snapshot.

The output tells what it is: an RLM ``rlmstat -a`` is read by :mod:`.rlmstat`, a FlexLM
``lmstat -i`` listing (a license file's seats and expiries) by :mod:`.lmstat_info`, anything
else as a FlexLM ``lmstat -a`` (:mod:`.lmstat`); one server may be polled with both of its
``lmstat`` commands. The command is run without a shell (its words split as a POSIX shell
would, ``shlex``), with a time limit: a command that hangs is killed and reported, and changes
nothing.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.engine import Engine

from .. import db
from ..errors import InvalidInput, LicusageError
from . import lmstat_info, rlmstat
from .lmstat import import_lmstat
from .lmstat_info import SeatsResult
from .snapshot import SnapshotResult

log = logging.getLogger(__name__)

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


def import_status(
    engine: Engine, text: str, *, server: str, source: str
) -> SnapshotResult | SeatsResult:
    """Reconcile the store with `text`, the output of ``rlmstat -a``, ``lmstat -i`` or
    ``lmstat -a`` (told apart by :func:`.rlmstat.looks_like` and :func:`.lmstat_info.looks_like`)."""
    if lmstat_info.looks_like(text):
        return lmstat_info.import_lmstat_i(engine, text, server=server, source=source)
    importer = rlmstat.import_rlmstat if rlmstat.looks_like(text) else import_lmstat
    return importer(engine, text, server=server, source=source)


def _summary(result: SnapshotResult | SeatsResult) -> str:
    if isinstance(result, SeatsResult):
        return f"{result.seats_changed} seat counts changed, {result.expiries_changed} expiries"
    return f"{result.counts.checkouts} checkouts, {result.counts.checkins} check-ins"


@dataclass(frozen=True)
class PollTarget:
    """One license server to poll: its name and its status command (``lmstat -a`` or
    ``rlmstat -a``)."""

    server: str
    command: str

    @classmethod
    def parse(cls, text: str) -> PollTarget:
        """``NAME=COMMAND`` (as ``serve --poll`` takes it); InvalidInput when malformed."""
        server, sep, command = text.partition("=")
        if not sep or not server.strip() or not command.strip():
            raise InvalidInput(
                f"--poll takes NAME=COMMAND, e.g. lic1='lmutil lmstat -a -c 27000@lic1', "
                f"not {text!r}"
            )
        argv = shlex.split(command) if command.strip() else []
        if not argv:
            raise InvalidInput(f"the command of {server.strip()!r} is empty")
        return cls(server.strip(), command.strip())


class Poller(threading.Thread):
    """A daemon thread that polls each target every `every` and reconciles the store at `url`
    with its snapshot; a failure (a command that fails or hangs, a server down) is logged and
    changes nothing, and the next period tries again."""

    def __init__(
        self,
        url: str | None,
        targets: Sequence[PollTarget],
        every: timedelta,
        timeout: timedelta = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(name="licusage-poll", daemon=True)
        if not isinstance(every, timedelta) or every < timedelta(seconds=1):
            raise InvalidInput(f"the poll period must be at least 1s, not {every!r}")
        self.url = db.resolve_url(url)
        self.targets = list(targets)
        self.every = every
        self.timeout = timeout
        # per server: the first failure of its commands in the last poll, None if none failed
        self.last_error: dict[str, str | None] = {t.server: None for t in self.targets}
        self.polls = 0
        self._stop_event = threading.Event()

    def poll_once(self) -> None:
        """Poll every target once now."""
        engine = db.connect(self.url)
        errors: dict[str, str | None] = {}
        try:
            for target in self.targets:
                errors.setdefault(target.server, None)
                try:
                    text = run_command(target.command, self.timeout)
                    result = import_status(
                        engine, text, server=target.server, source=f"poll of {target.server}"
                    )
                except LicusageError as error:  # a server down, a failed or hung command
                    errors[target.server] = errors[target.server] or str(error)
                    log.warning("poll %s: %s", target.server, error)
                    continue
                log.info("poll %s: %s", target.server, _summary(result))
        finally:
            engine.dispose()
            self.last_error.update(errors)
        self.polls += 1

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.poll_once()
            except Exception:  # keep polling; the next period retries
                log.exception("poll: unexpected error")
            if self._stop_event.wait(self.every.total_seconds()):
                break

    def stop(self, timeout: float | None = 10) -> None:
        """Stop after the poll under way."""
        self._stop_event.set()
        self.join(timeout)


def start_poller(url: str | None, targets: Sequence[PollTarget], every: timedelta) -> Poller:
    """Start polling `targets` every `every` in this process; returns the thread."""
    poller = Poller(url, targets, every)
    poller.start()
    log.info("polling %s every %s", ", ".join(t.server for t in targets), every)
    return poller
