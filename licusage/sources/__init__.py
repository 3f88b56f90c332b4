"""License servers as sources of sessions: FlexLM (FlexNet Publisher) and Reprise RLM.

* :mod:`.flexlm_log` reads a FlexLM debug log (``lmgrd -l``), :mod:`.lmstat` an
  ``lmutil lmstat -a`` snapshot, :mod:`.rlm` an RLM report log and ``rlmstat -a``.
* :mod:`.writer` turns what they read into sessions, holds, checkouts, denials and queued
  requests of the store, inside one write transaction per import (all or nothing).
* :mod:`.mapping` maps features to products and license types (``--map FILE``).

A server session is one ``user@host``'s continuous use of one server: it starts with the first
checkout while none of theirs is out and ends with the last check-in, holding every feature
(product) it has out, with the number of licenses out.
"""

from __future__ import annotations

from .mapping import FeatureMap, read_mapping

__all__ = ["FeatureMap", "read_mapping"]
