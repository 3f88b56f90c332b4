"""Stored text (user, host, actor, product, type, reason) shown as plain text, never as markup.

Anyone who can choose a user name (any application that logs in) chooses text the dashboard
shows to an admin, so no stored string may become a heading, a link, an image or a script.
Every place that puts such text into HTML, Markdown or a notification goes through here
(notifications: :class:`licusage.app.lifecycle.Notices`).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable

# what Markdown (and the HTML inside it) gives a meaning to
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>:=@$^&])")


def escaped(text: object) -> str:
    """`text` as HTML character data: ``<b>`` shows as ``<b>``; quotes stay readable."""
    return html.escape(str(text), quote=False)


def plain_html(lines: Iterable[object], css_class: str = "licusage-plain") -> str:
    """`lines` as one HTML block of plain text, one line each (spaces and breaks kept)."""
    body = "<br>".join(escaped(line) for line in lines)
    return f'<div class="{css_class}" style="white-space: pre-wrap">{body}</div>'


def markdown_literal(text: object) -> str:
    """`text` for a Markdown pane, shown literally: every Markdown character backslash-escaped
    and HTML escaped, line breaks made spaces (a name cannot start a heading or a list)."""
    one_line = " ".join(str(text).splitlines())
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(one_line, quote=False)).replace("\\&", "&")
