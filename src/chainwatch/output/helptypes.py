"""Help screens show what a person types, not Python types.

typer's rich help puts a type column beside every parameter: ``--help <bool>`` (a flag takes
no value) and ``PATH <list[Path]>`` for an argument whose metavar already says what it takes.
Both are hidden here, and an argument that takes several values reads ``PATH...``; options
keep the metavars the command line gives them. Applied
once, when the command line is imported; if typer changes these hooks, help keeps its
default look and nothing else changes.
"""

from __future__ import annotations

from typing import Any

_APPLIED = False


def quiet_type_column() -> None:
    global _APPLIED
    if _APPLIED:
        return
    _APPLIED = True
    try:
        from typer.core import TyperArgument, TyperOption
    except ImportError:  # pragma: no cover - another typer
        return
    option_type = getattr(TyperOption, "display_type_rich", None)
    argument_type = getattr(TyperArgument, "display_type_rich", None)
    if option_type is not None:
        def option_display(self: Any, ctx: Any) -> str | None:
            if getattr(self, "is_flag", False) and getattr(self, "metavar", None) is None:
                return None  # --help, --version: a flag takes no value
            return option_type(self, ctx)  # type: ignore[no-any-return]

        TyperOption.display_type_rich = option_display  # type: ignore[method-assign]
    if argument_type is not None:
        def argument_display(self: Any, ctx: Any) -> str | None:
            if getattr(self, "metavar", None) is not None:
                return None  # the name column already shows PATH or TARGET
            return argument_type(self, ctx)  # type: ignore[no-any-return]

        TyperArgument.display_type_rich = argument_display  # type: ignore[method-assign]
