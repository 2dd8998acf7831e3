"""Attacks on chainwatch: hostile archives, registries, lockfiles and input (issue 11)."""
