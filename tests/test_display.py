"""licusage.display.readable: what the notebooks show."""

from __future__ import annotations

import pandas as pd

from licusage.display import readable


def test_durations_and_times_for_a_reader():
    frame = pd.DataFrame(
        {
            "user": ["ann", "ben"],
            "last_activity": pd.to_datetime(["2026-03-02 10:03:02.680236", None], utc=True),
            "assigned_at": pd.to_datetime(["2025-01-26 12:00:00", "2025-01-27 08:30:59"]),
            "idle": pd.to_timedelta(["0 days 00:46:24.289064", None]),
            "share": [0.25, 0.5],
        }
    )
    shown = readable(frame)
    assert shown.to_dict("list") == {
        "user": ["ann", "ben"],
        "last_activity": ["2026-03-02 10:03", ""],
        "assigned_at": ["2025-01-26 12:00", "2025-01-27 08:30"],
        "idle": ["46m 24s", ""],
        "share": [0.25, 0.5],
    }
    assert frame["idle"].dtype.kind == "m"  # the query's frame is left as it was
    assert readable(frame, tz="Asia/Tokyo")["last_activity"][0] == "2026-03-02 19:03"
