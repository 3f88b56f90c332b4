"""The Sessions tab's state: the filters, the current result, the selection and the actions.

:class:`SessionExplorer` owns everything the views show and calls only :mod:`licusage.queries`,
:mod:`licusage.actions` and :mod:`licusage.catalog`; it never writes SQL. Every call to the
store goes through :meth:`SessionExplorer._guard`, which turns a failure into a notification.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta, tzinfo
from typing import Any, TypeVar

import pandas as pd
import param
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from .. import actions, catalog, queries
from ..db import describe_db_error
from ..errors import LicusageError, StoreUnavailable
from . import format as fmt
from .identity import Identity, current_identity, signed_in_role

log = logging.getLogger(__name__)
T = TypeVar("T")

IDLE_CHOICES: dict[str, timedelta | None] = {
    "any": None,
    "15 min": timedelta(minutes=15),
    "1 h": timedelta(hours=1),
    "4 h": timedelta(hours=4),
    "1 day": timedelta(days=1),
    "1 week": timedelta(weeks=1),
}
NEAR_FULL = 0.9  # share of seats in use from which a pool is shown as nearly full


@dataclass(frozen=True)
class LogoutPreview:
    """What a logout of `session_ids` would do, for the confirmation dialog."""

    session_ids: tuple[int, ...]
    users: tuple[str, ...]  # distinct users whose sessions end, sorted
    spared: tuple[int, ...]  # the actor's own sessions, left running
    licenses: pd.DataFrame  # product, license_type, count: what the logout gives back

    def text(self, max_users: int = 8) -> str:
        """The dialog's sentence, e.g. "Log out 2 sessions of 2 users (alice, bob)?"."""
        count, users = len(self.session_ids), list(self.users)
        shown = ", ".join(users[:max_users])
        if len(users) > max_users:
            shown += f" and {len(users) - max_users:,} more"
        noun = "session" if count == 1 else "sessions"
        who = "user" if len(users) == 1 else "users"
        return f"Log out {count:,} {noun} of {len(users):,} {who} ({shown})?"


class SessionExplorer(param.Parameterized):
    """Filters over the active sessions, the current result, the selection and the logout."""

    user = param.String(default="", doc="Substring of the user name; blank means all users.")
    license_types = param.Dict(
        default={}, doc="Product name -> license type names to keep; missing/empty means any."
    )
    idle_over = param.Selector(  # type: ignore[var-annotated]
        default="any", objects=list(IDLE_CHOICES), doc="Keep sessions idle at least this long."
    )
    products = param.List(default=[], doc="Product names of the store's catalogue, in order.")
    product_types = param.Dict(default={}, doc="Product name -> its license type names.")
    result = param.DataFrame(
        default=None, allow_None=True, doc="The last Run's rows (see format.display_frame)."
    )
    pools = param.DataFrame(
        default=None, allow_None=True, doc="Seats per pool (licusage.queries.pool_usage)."
    )
    selected_ids = param.List(default=[], doc="Session ids the next logout would end.")
    all_matching = param.Boolean(
        default=False, doc="True when the selection is every session of the current result."
    )
    busy = param.Boolean(default=False, doc="True while a query or an action runs.")
    last_error = param.String(default="", doc="The last failure shown to the user.")
    summary = param.String(default="", doc="Sessions and distinct users in the result.")
    total = param.Integer(default=0, doc="Sessions in the result (all pages).")
    complete = param.Boolean(
        default=True,
        doc="False while `result` holds only the first page of a Run (the rest is being read).",
    )

    def __init__(
        self,
        engine: Engine,
        identity: Identity | None = None,
        *,
        zone: tzinfo | None = None,
        notify: Callable[[str, str], None] | None = None,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.engine = engine
        self._identity = identity
        self.zone = zone
        self._notify = notify
        self._generation = 0  # which Run the result belongs to (a later Run supersedes)
        self._ended: set[int] = set()  # logged out since the Run: kept out of its full rows
        self.load_catalog()

    # --- who acts ---------------------------------------------------------------------------
    @property
    def identity(self) -> Identity:
        """The identity given at creation, else that of the browser session being served."""
        if self._identity is None:
            self._identity = current_identity(self.engine)
        return self._identity

    def current_role(self) -> str:
        """The role right now: a signed-in user's is read again from the store."""
        who = self.identity
        if not who.signed_in:
            return who.role
        import panel as pn

        return signed_in_role(self.engine, who.user, pn.state.user_info)

    # --- errors -----------------------------------------------------------------------------
    def notify(self, level: str, message: str) -> None:
        """Show `message` as a notification (``info``/``success``/``warning``/``error``)."""
        if level == "error":
            self.last_error = message
        if self._notify is not None:
            self._notify(level, message)
            return
        import panel as pn

        notifications = pn.state.notifications
        if notifications is not None:
            getattr(notifications, level)(message, duration=8000 if level == "error" else 4000)

    def _report(self, what: str, error: BaseException) -> None:
        """Notify "`what`: reason" for a failure (a message in the page, never a traceback)."""
        if isinstance(error, sa_exc.DBAPIError):
            error = StoreUnavailable(describe_db_error(error, self.engine))
        if isinstance(error, StoreUnavailable):
            self.notify("error", f"{what}: the database is unavailable ({error})")
        elif isinstance(error, LicusageError):
            self.notify("error", f"{what}: {error}")
        else:
            log.error("%s failed", what, exc_info=error)
            self.notify("error", f"{what}: unexpected error ({type(error).__name__})")

    def _guard(self, what: str, func: Callable[[], T]) -> T | None:
        """Run `func`; on failure notify and return None (never raises)."""
        try:
            return func()
        except Exception as error:
            self._report(what, error)
        return None

    # --- reading ----------------------------------------------------------------------------
    def load_catalog(self) -> bool:
        """Read the products and their license types (the filter widgets follow them)."""
        cat = self._guard("Loading the catalogue", lambda: catalog.read_catalog(self.engine))
        if cat is None:
            return False
        types = {product: cat.types_of(product) for product in cat.products}
        if types != self.product_types or list(cat.products) != self.products:
            self.param.update(products=list(cat.products), product_types=types)
        return True

    def session_filter(self) -> queries.SessionFilter:
        """The current filter, validated once (what the table, the counts and the code show)."""
        chosen = {p: list(t) for p, t in self.license_types.items() if t and p in self.products}
        return queries.SessionFilter(
            user=self.user or None,
            license_types=chosen or None,
            idle_over=IDLE_CHOICES[self.idle_over],
        )

    def filters(self) -> dict[str, Any]:
        """The current filter as keyword arguments of :func:`licusage.queries.session_usage`
        (paste them into a notebook to reproduce the table)."""
        return self.session_filter().kwargs()

    def filter_code(self, max_user: int = 60) -> str:
        """The current filter as a notebook call, e.g.
        ``queries.session_usage(engine, user='alice')`` (a very long user text is shortened)."""
        return self.session_filter().code(max_user=max_user)

    def _read(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        usage = queries.session_usage(self.engine, **self.filters())
        return usage, queries.pool_usage(self.engine)

    def _read_first(self, limit: int) -> tuple[pd.DataFrame, pd.DataFrame, tuple[int, int]]:
        filters = self.filters()
        # three independent reads, side by side (the drivers release the GIL while they wait)
        with ThreadPoolExecutor(max_workers=2) as pool:
            counts = pool.submit(queries.session_usage_counts, self.engine, **filters)
            pools = pool.submit(queries.pool_usage, self.engine)
            page = queries.session_usage_page(self.engine, **filters, offset=0, limit=limit)
            return page, pools.result(), counts.result()

    def _apply(
        self,
        outcome: tuple[pd.DataFrame, pd.DataFrame] | None,
        counts: tuple[int, int] | None = None,
    ) -> bool:
        """Show a Run's rows: all of them, or (with `counts`) its first page only."""
        if outcome is None:
            return False
        usage, pools = outcome
        display = fmt.display_frame(usage, self.products, self.zone)
        sessions, users = counts or (len(display), usage["user"].nunique())
        self._generation += 1
        self._ended = set()
        self.param.update(
            result=display,
            total=sessions,
            complete=counts is None,
            pools=pools,
            selected_ids=[],
            all_matching=False,
            summary=f"{sessions:,} sessions of {users:,} distinct users",
            last_error="",
        )
        return True

    def _apply_rest(self, generation: int, usage: pd.DataFrame) -> bool:
        """Replace a Run's first page by all its rows (the selection and the count stay)."""
        if generation != self._generation or self.complete:
            return False  # a later Run (or a full read) came first
        display = fmt.display_frame(usage, self.products, self.zone)
        if self._ended:
            display = display[~display.index.isin(sorted(self._ended))]
        self.param.update(result=display, complete=True)
        return True

    def whole_result(self) -> pd.DataFrame | None:
        """Every row of the current result, read now if only its first page is held."""
        if not self.complete and self.result is not None:
            generation = self._generation
            usage = self._guard(
                "Reading the sessions", lambda: queries.session_usage(self.engine, **self.filters())
            )
            if usage is not None:
                self._apply_rest(generation, usage)
        return self.result

    def run(self) -> bool:
        """Query the sessions and seats for the current filters; False (and a notification)
        when that failed."""
        if not self.products and not self.load_catalog():
            return False
        self.busy = True
        try:
            return self._apply(self._guard("Run", self._read))
        finally:
            self.busy = False

    async def run_async(self, first_rows: int = 25) -> bool:
        """:meth:`run` with the queries in a worker thread, so the page shows it is loading.

        The first `first_rows` rows and the exact counts are read (by the database) and shown
        first; all rows follow, read in the background (:attr:`complete` turns True).
        Each result is applied in one document update (a Bokeh next-tick callback, under the
        document lock), so the table, the count line and the seats change together.
        """
        if not self.products and not self.load_catalog():
            return False
        self.busy = True
        filters = self.filters()
        first: tuple[pd.DataFrame, pd.DataFrame, tuple[int, int]] | Exception
        try:
            first = await asyncio.to_thread(self._read_first, first_rows)
        except Exception as error:
            first = error
        shown = await _in_document(lambda: self._finish_run(first))
        if not shown or self.complete:
            return shown
        # the first page is shown: now the rest, for paging, sorting, selection and the CSV
        generation = self._generation
        try:
            usage = await asyncio.to_thread(queries.session_usage, self.engine, **filters)
        except Exception as error:
            self._report("Reading the sessions", error)
            return shown
        await _in_document(lambda: self._apply_rest(generation, usage))
        return shown

    def _finish_run(
        self, outcome: tuple[pd.DataFrame, pd.DataFrame, tuple[int, int]] | Exception
    ) -> bool:
        try:
            if isinstance(outcome, Exception):
                self._report("Run", outcome)
                return False
            page, pools, counts = outcome
            # a page holding every row is the complete result
            return self._apply((page, pools), None if len(page) >= counts[0] else counts)
        finally:
            self.busy = False

    def refresh_pools(self) -> None:
        pools = self._guard("Reading seats", lambda: queries.pool_usage(self.engine))
        if pools is not None:
            self.pools = pools

    def filter_pool(self, product: str, license_type: str) -> bool:
        """Show only sessions holding `product`'s `license_type` (other product filters clear)."""
        if product not in self.products:
            return False
        self.license_types = {product: [license_type]}
        return self.run()

    # --- selection --------------------------------------------------------------------------
    def select(self, session_ids: Sequence[int]) -> None:
        """Select these sessions (ticked rows)."""
        self.param.update(selected_ids=[int(i) for i in session_ids], all_matching=False)

    def select_all_matching(self) -> int:
        """Select every session of the current result, on every page; returns how many."""
        result = self.whole_result()
        ids = [] if result is None else [int(i) for i in result.index]
        self.param.update(selected_ids=ids, all_matching=bool(ids))
        return len(ids)

    # --- logging out ------------------------------------------------------------------------
    def preview_logout(self, session_ids: Sequence[int] | None = None) -> LogoutPreview | None:
        """What logging out the selection would do (None and a notification on failure)."""
        ids = sorted({int(i) for i in (self.selected_ids if session_ids is None else session_ids)})
        me = self.identity.user

        def read() -> LogoutPreview:
            held = queries.session_licenses(self.engine, ids)
            users_by_id = {} if self.result is None else self.result["User"].to_dict()
            own = tuple(i for i in ids if users_by_id.get(i) == me)
            targets = tuple(i for i in ids if i not in set(own))
            held = held[~held["session_id"].isin(own)]
            licenses = (
                held.groupby(["product", "license_type"], sort=True)
                .size()
                .rename("count")
                .reset_index()
            )
            users = tuple(sorted({str(users_by_id[i]) for i in targets if i in users_by_id}))
            return LogoutPreview(targets, users, own, licenses)

        return self._guard("Preparing the logout", read)

    def logout(self, session_ids: Sequence[int] | None = None) -> actions.LogoutResult | None:
        """Log the sessions out as the signed-in user, with the role read from the store now.

        A viewer is refused by :func:`licusage.actions.authorized_logout` (and audited). On
        success the ended sessions leave the result and the seat counts are read again.
        """
        ids = sorted({int(i) for i in (self.selected_ids if session_ids is None else session_ids)})
        who = self.identity
        self.busy = True
        try:
            outcome = self._guard(
                "Logout",
                lambda: actions.authorized_logout(
                    self.engine, ids, who.user, self.current_role(), origin=who.origin
                ),
            )
        finally:
            self.busy = False
        if outcome is None:
            return None
        gone = set(outcome.logged_out) | set(outcome.already_ended) | set(outcome.unknown)
        if self.result is not None:
            kept = self.result[~self.result.index.isin(sorted(gone))]
            if self.complete:
                counts: tuple[int, int] | None = (len(kept), kept["User"].nunique())
            else:  # only the first page is held: count again (the rest drops them on arrival)
                self._ended |= gone
                counts = self._guard(
                    "Counting the sessions",
                    lambda: queries.session_usage_counts(self.engine, **self.filters()),
                )
            summary = (
                self.summary
                if counts is None
                else (f"{counts[0]:,} sessions of {counts[1]:,} distinct users")
            )
            self.param.update(
                result=kept,
                total=len(kept) if counts is None else counts[0],
                selected_ids=[],
                all_matching=False,
                summary=summary,
            )
        self.refresh_pools()
        self.notify("success", logout_message(outcome))
        return outcome


async def _in_document(func: Callable[[], T]) -> T:
    """Run `func` as a callback of the served document (with its lock); directly elsewhere."""
    import panel as pn

    doc = pn.state.curdoc
    if doc is None or doc.session_context is None:
        return func()
    future: asyncio.Future[T] = asyncio.get_running_loop().create_future()

    def callback() -> None:
        try:
            future.set_result(func())
        except Exception as error:  # pragma: no cover - func reports its own errors
            future.set_exception(error)

    doc.add_next_tick_callback(callback)
    return await future


def logout_message(result: actions.LogoutResult) -> str:
    """The notification after a logout, naming sessions already ended and those spared."""
    done = len(result.logged_out)
    parts = [f"Logged out {done:,} session{'s' if done != 1 else ''}."]
    if result.already_ended:
        ids = ", ".join(str(i) for i in result.already_ended[:10])
        parts.append(f"{len(result.already_ended):,} had already ended ({ids}).")
    if result.spared:
        parts.append(f"Your own {len(result.spared):,} session(s) were left running.")
    if result.unknown:
        parts.append(f"{len(result.unknown):,} no longer exist.")
    return " ".join(parts)
