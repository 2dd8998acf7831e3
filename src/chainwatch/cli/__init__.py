"""The ``chainwatch`` command line (see DESIGN.md for the contract).

One module per command group; each parses its options, calls a service and prints. Importing
a group's module registers its commands on :data:`app`: the order below is the order
``chainwatch --help`` lists them in.
"""

from __future__ import annotations

# isort: off
from chainwatch.cli import scan  # noqa: F401
from chainwatch.cli import inventory  # noqa: F401
from chainwatch.cli import gate  # noqa: F401
from chainwatch.cli import watch  # noqa: F401
from chainwatch.cli import serve  # noqa: F401
from chainwatch.cli import incidents  # noqa: F401
from chainwatch.cli import db  # noqa: F401
from chainwatch.cli import rules  # noqa: F401
# isort: on
from chainwatch.cli.app import app
from chainwatch.cli.entry import main

__all__ = ["app", "main"]
