"""Session License Usage: ``panel serve dashboards/session_license_usage.py``.

The store is ``$LICUSAGE_DATABASE_URL`` or the embedded default; the page is built by
:func:`licusage.app.main.create_app`. ``licusage serve`` serves the same app with sign-in options.
"""

from licusage.app.main import create_app

create_app().servable()
