"""Prevention: one policy, enforced by the CI gate (``check``) and, later, the registry proxy."""
