"""One home for the rules an argument must pass before it reaches the store.

Every licensing operation (``login``, ``touch``, ``end``) and action (``logout_sessions``,
``reap_idle``, ...) checks its arguments here, once, and raises
:class:`~licusage.errors.InvalidInput` (a ``ValueError``) naming the argument. Nothing is
written when an argument is refused.

**User names and identities.** A user name is text of at most :data:`MAX_USER_LENGTH`
characters, without control characters (tab, newline, NUL, terminal escapes), invisible ones
(zero-width spaces and joiners, the soft hyphen, byte-order marks) or bidirectional overrides
(``U+202E`` and friends), which would make two names look alike or text print backwards. The
*spelling* kept for display is the name in Unicode NFC with surrounding white space trimmed;
the *identity* that seats are counted by, named seats are assigned to, the user filter
searches and "spare my own sessions" compares is that spelling case-folded, with every kind of
space written as a plain space (:func:`user_identity`): ``alice``, ``Alice``, ``ALICE`` and
``alice `` are one person. Actor names follow the same rules.

**Times.** ``at`` is a ``datetime`` (or a pandas ``Timestamp``, never ``NaT``); a naive one is
taken to be UTC, an aware one is converted to UTC. It must lie in [:data:`MIN_TIME`,
:data:`MAX_TIME`) (1970 to 2200): dates, strings, numbers and times outside the range (year 1,
year 48113) are refused.

**Hosts.** ``host`` is None or text of at most :data:`MAX_HOST_LENGTH` characters without
control or invisible characters; surrounding white space is trimmed and an empty host is None.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd

from .errors import InvalidInput, UnknownLicenseType, UnknownProduct

MAX_USER_LENGTH = 200  # the width of the user name columns
MAX_HOST_LENGTH = 255  # the width of the host columns
MAX_NAME_LENGTH = 200  # product and license type names
MIN_TIME = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TIME = datetime(2200, 1, 1, tzinfo=UTC)

# control, format (zero-width, bidi), surrogate, private-use, unassigned, line/paragraph separators
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _describe_char(char: str) -> str:
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}" + (f" {name}" if name else "")


def refused_character(text: str) -> str | None:
    """The first control or invisible character of `text`, described, or None."""
    for char in text:
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            return _describe_char(char)
    return None


def trim(text: str) -> str:
    """`text` without surrounding spaces (every Unicode space, such as U+00A0; not tabs or
    newlines: those are control characters, refused where they appear)."""
    start, stop = 0, len(text)
    while start < stop and unicodedata.category(text[start]) == "Zs":
        start += 1
    while stop > start and unicodedata.category(text[stop - 1]) == "Zs":
        stop -= 1
    return text[start:stop]


def _plain_text(value: object, what: str, maximum: int) -> str:
    """`value` as NFC text, trimmed, without refused characters; InvalidInput otherwise."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be text, not {type(value).__name__} {value!r:.80}")
    text = trim(unicodedata.normalize("NFC", value))
    if not text:
        raise InvalidInput(f"{what} must not be empty")
    bad = refused_character(text)
    if bad is not None:
        raise InvalidInput(
            f"{what} {text!r:.80} contains {bad}: control and invisible characters are not allowed"
        )
    if len(text) > maximum:
        raise InvalidInput(f"{what} is at most {maximum} characters long, not {len(text)}")
    return text


def identity_of(spelling: str) -> str:
    """The identity of an already checked spelling: case-folded NFC, spaces made plain."""
    folded = unicodedata.normalize("NFC", spelling.casefold())
    return "".join(" " if unicodedata.category(c) == "Zs" else c for c in folded)


def check_user(user: object, what: str = "user") -> str:
    """The display spelling of the user name `user` (NFC, trimmed); InvalidInput if unusable."""
    spelling = _plain_text(user, what, MAX_USER_LENGTH)
    if len(identity_of(spelling)) > MAX_USER_LENGTH:  # case folding can lengthen (ß -> ss)
        raise InvalidInput(f"{what} is at most {MAX_USER_LENGTH} characters long")
    return spelling


def check_actor(actor: object) -> str:
    """The display spelling of an actor name: the rules of user names."""
    return check_user(actor, "actor")


def user_identity(user: object) -> str:
    """The canonical identity of a user name (see the module's notes); InvalidInput if unusable."""
    return identity_of(check_user(user))


def lenient_identity(text: str) -> str:
    """The identity of stored or searched text that may break the rules (an old store's names,
    a filter being typed): refused characters are dropped instead of refused."""
    normal = unicodedata.normalize("NFC", text)
    kept = "".join(c for c in normal if unicodedata.category(c) not in _REFUSED_CATEGORIES)
    return identity_of(trim(kept.strip()))


def check_host(host: object) -> str | None:
    """`host` trimmed (None for no host); InvalidInput for non-text, too long, control chars."""
    if host is None:
        return None
    if not isinstance(host, str):
        raise InvalidInput(f"host must be text or None, not {type(host).__name__} {host!r:.80}")
    text = trim(unicodedata.normalize("NFC", host))
    if not text:
        return None
    bad = refused_character(text)
    if bad is not None:
        raise InvalidInput(f"host {text!r:.80} contains {bad}: control characters are not allowed")
    if len(text) > MAX_HOST_LENGTH:
        raise InvalidInput(f"host is at most {MAX_HOST_LENGTH} characters long, not {len(text)}")
    return text


def check_whole(value: object, what: str, low: int = 0) -> int:
    """`value` if it is a whole number (an ``int``, not a ``bool``) of at least `low`;
    InvalidInput naming `what` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidInput(f"{what} must be a whole number >= {low}, not {value!r}")
    return value


def check_time(at: object, what: str = "at") -> datetime | None:
    """`at` as an aware UTC datetime (None stays None: "now"); InvalidInput unless it is a
    datetime (or pandas Timestamp) in [MIN_TIME, MAX_TIME)."""
    if at is None:
        return None
    if at is pd.NaT or (isinstance(at, pd.Timestamp) and pd.isna(at)):
        raise InvalidInput(f"{what} must be a time, not NaT")
    if isinstance(at, pd.Timestamp):
        at = at.to_pydatetime()
    if not isinstance(at, datetime):
        kind = "a date without a time" if isinstance(at, date) else type(at).__name__
        raise InvalidInput(f"{what} must be a datetime, not {kind} {at!r:.80}")
    aware = at.replace(tzinfo=UTC) if at.tzinfo is None else at
    try:
        utc = aware.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidInput(f"{what} {at!r} is outside the supported range") from None
    if not MIN_TIME <= utc < MAX_TIME:
        raise InvalidInput(
            f"{what} must lie between {MIN_TIME:%Y-%m-%d} and {MAX_TIME:%Y-%m-%d} (UTC), "
            f"not {utc.isoformat()}"
        )
    return utc


def check_licenses(licenses: object) -> dict[str, str]:
    """`licenses` as a dict product -> license type name (both non-empty text)."""
    if not isinstance(licenses, Mapping):
        raise InvalidInput("licenses must map product names to license type names")
    checked: dict[str, str] = {}
    for product, license_type in licenses.items():
        if not isinstance(product, str) or not product.strip() or len(product) > MAX_NAME_LENGTH:
            raise UnknownProduct(
                f"licenses: a product name must be non-empty text, not {product!r:.80}"
            )
        if not isinstance(license_type, str) or not license_type.strip():
            raise UnknownLicenseType(
                f"licenses: the license type of {product!r:.80} must be non-empty text, "
                f"not {license_type!r:.80}"
            )
        checked[product] = license_type
    return checked


def describe(value: Any) -> str:
    """Stored text shown on a terminal or in a log line: control characters escaped."""
    if value is None:
        return ""
    text = str(value)
    if refused_character(text) is None:
        return text
    return "".join(
        c
        if unicodedata.category(c) not in _REFUSED_CATEGORIES
        else c.encode("unicode_escape").decode("ascii")
        for c in text
    )
