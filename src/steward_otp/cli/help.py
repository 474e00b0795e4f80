"""``--help`` with the options grouped by topic, in the CLI's plain (non-boxed) style.

Typer groups options by their ``rich_help_panel`` only when it draws help with rich; this
CLI draws plain click help (``rich_markup_mode=None``), so :class:`PanelCommand` does the
grouping itself: one section per panel, in the order the options are declared, options
without a panel under "Options".
"""

from __future__ import annotations

from typing import Any, Final

from typer.core import TyperCommand

DEFAULT_PANEL: Final = "Options"


class PanelCommand(TyperCommand):
    """A typer command whose ``--help`` lists its options in sections by help panel."""

    def format_options(self, ctx: Any, formatter: Any) -> None:
        """Arguments first, then one section per panel (``ctx`` and ``formatter`` are click's:
        typer vendors click from 0.23 on, so it is not imported here)."""
        arguments: list[tuple[str, str]] = []
        panels: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                arguments.append(record)
                continue
            panel = getattr(param, "rich_help_panel", None) or DEFAULT_PANEL
            panels.setdefault(panel, []).append(record)
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(arguments)
        for panel, records in panels.items():
            with formatter.section(panel):
                formatter.write_dl(records)
