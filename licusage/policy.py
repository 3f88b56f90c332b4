"""The idle policy on a schedule: end sessions idle past their limit every few minutes.

The decision and the action live in :mod:`licusage.actions` (:func:`~licusage.actions.is_idle`,
:func:`~licusage.actions.reap_idle`, per-pool limits from ``add_pool(idle_limit=...)``); this
module only runs them periodically, either

* as a job: ``licusage reap --idle-over 8h`` from cron or a systemd timer, or
* inside the server: ``licusage serve --reap-every 5m --idle-over 8h`` starts an
  :class:`IdleReaper` thread in the serving process (with ``--num-procs`` it runs once, in the
  parent process, which outlives the forked workers). It reaps one period after the start and
  then every period, opening the store only for the reap.

Several reapers on one store (several hosts) are safe: each session is ended, and audited with
reason ``idle_timeout``, by exactly one of them (the UPDATE that ends it checks it is still
active and still idle, in the same statement).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from . import clock
from . import db as store
from .actions import ReapResult, check_actor, reap_idle
from .errors import InvalidInput, LicusageError

log = logging.getLogger(__name__)

MIN_EVERY = timedelta(seconds=1)


@dataclass(frozen=True)
class IdlePolicy:
    """End sessions idle longer than `idle_over` (None: only pools' own limits), every `every`."""

    every: timedelta
    idle_over: timedelta | None = None
    actor: str = "policy"

    def __post_init__(self) -> None:
        if not isinstance(self.every, timedelta) or self.every < MIN_EVERY:
            raise InvalidInput(f"the reaping period must be at least 1s, not {self.every!r}")
        if self.idle_over is not None and (
            not isinstance(self.idle_over, timedelta) or self.idle_over <= timedelta(0)
        ):
            raise InvalidInput(f"idle_over must be a positive duration, not {self.idle_over!r}")
        check_actor(self.actor)


def next_run(last_started: datetime | None, every: timedelta, now: datetime) -> datetime:
    """When the next reap is due: one period after the last one started (or now, if none has),
    never in the past: a reap that overran is followed at once, not by a burst."""
    if last_started is None:
        return now
    return max(last_started + every, now)


class IdleReaper(threading.Thread):
    """A daemon thread applying an :class:`IdlePolicy` to the store at `url` until stopped.

    A store that is down is logged and retried at the next period; nothing else stops it.
    """

    def __init__(self, url: str | None, policy: IdlePolicy) -> None:
        super().__init__(name="licusage-idle-reaper", daemon=True)
        self.url = store.resolve_url(url)
        self.policy = policy
        self.runs = 0
        self.ended = 0
        self.last_error: str | None = None
        self._stop_event = threading.Event()

    def run_once(self) -> ReapResult | None:
        """One reap now; the result, or None when the store could not be used.

        Opens the store for the reap and closes it afterwards: no connection stays open between
        reaps (and none is inherited when ``--num-procs`` forks the server).
        """
        try:
            engine = store.connect(self.url)
        except LicusageError as error:
            self._failed(error)
            return None
        try:
            result = reap_idle(engine, self.policy.idle_over, actor=self.policy.actor)
        except LicusageError as error:
            self._failed(error)
            return None
        finally:
            engine.dispose()
        self.runs += 1
        self.ended += len(result.logged_out)
        self.last_error = None
        if result.logged_out:
            log.info("idle policy ended %d idle sessions", len(result.logged_out))
        return result

    def _failed(self, error: LicusageError) -> None:
        self.last_error = str(error)
        log.warning("idle policy: %s; trying again in %s", error, self.policy.every)

    def run(self) -> None:
        """Reap one period after starting, then every period, until :meth:`stop`."""
        last = clock.now()
        while not self._stop_event.is_set():
            now = clock.now()
            due = next_run(last, self.policy.every, now)
            if due > now and self._stop_event.wait((due - now).total_seconds()):
                break
            last = clock.now()
            try:
                self.run_once()
            except Exception as error:  # keep the policy running; the next period retries
                self.last_error = f"{type(error).__name__}: {error}"
                log.exception("idle policy: unexpected error")

    def stop(self, timeout: float | None = 10) -> None:
        """Ask the thread to stop after the current reap, and wait for it."""
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)


def start_reaper(
    url: str | None, every: timedelta, idle_over: timedelta | None = None, actor: str = "policy"
) -> IdleReaper:
    """Start reaping the store at `url` every `every` in this process; returns the thread."""
    reaper = IdleReaper(url, IdlePolicy(every=every, idle_over=idle_over, actor=actor))
    reaper.start()
    log.info(
        "idle policy: every %s, idle over %s (and pools' own limits)",
        every,
        idle_over or "-",
    )
    return reaper
