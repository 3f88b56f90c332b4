"""The served Session License Usage dashboard (Panel): views over :mod:`licusage.queries`.

Start it with ``licusage serve`` or ``panel serve dashboards/session_license_usage.py``;
build the page in Python with :func:`licusage.app.main.create_app`.
"""
