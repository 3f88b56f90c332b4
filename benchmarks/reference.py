"""The reference page of the page-open benchmark: the same 25 joined rows, rendered on the server.

``python -m benchmarks.reference --db URL --port P`` serves ``/``: a plain HTML table of the
first page of :func:`licusage.queries.session_usage_page` (the dashboard's first page, same
query, same columns), built per request by Tornado. No JavaScript, no websocket: what a
server-rendered tool gives, to compare the dashboard's page open against.
"""

from __future__ import annotations

import argparse
import asyncio
import html

import tornado.web
from sqlalchemy.engine import Engine

from licusage import db, queries


def render(engine: Engine) -> str:
    """The page: a title, the count line and the first 25 sessions as a table."""
    frame = queries.session_usage_page(engine, offset=0, limit=25)
    columns = [str(c) for c in frame.columns]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row)
        + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Sessions</title></head><body>"
        f"<h1>Sessions</h1><table class='sessions'><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table></body></html>"
    )


class Page(tornado.web.RequestHandler):
    def initialize(self, engine: Engine) -> None:
        self.engine = engine

    def get(self) -> None:
        self.write(render(self.engine))


async def serve(url: str, port: int) -> None:
    engine = db.connect(url)
    app = tornado.web.Application([(r"/", Page, {"engine": engine})])
    app.listen(port, address="127.0.0.1")
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.db, args.port))


if __name__ == "__main__":
    main()
