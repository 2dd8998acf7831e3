"""Threat intelligence: what is already known to be bad (advisories), behind one interface."""

from chainwatch.intel.base import KnownBadSource
from chainwatch.intel.builtin import BuiltinKnownBad

__all__ = ["BuiltinKnownBad", "KnownBadSource"]
