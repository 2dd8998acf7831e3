"""Dynamic analysis (``scan --sandbox``): run a release's install scripts and entry points in a
bubblewrap sandbox with bait secrets and a loopback sink, and report what it did.

One module per job: ``launcher`` (bwrap + strace + limits), ``bait`` (home and environment),
``inside/`` (supervisor and sink, run inside), ``js/`` (Node preload and harnesses),
``phases`` (what to run), ``strace`` (log -> events), ``findings`` (events -> CW-DYN findings),
``runner`` (all of it for one release).
"""

from chainwatch.sandbox.runner import Outcome, run_dynamic

__all__ = ["Outcome", "run_dynamic"]
