"""The benchmark table: rows from every benchmark, printed once and written as JSON."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results.json"
PYTHON_COMMAND = ".venv/bin/python -m bench"


@dataclass(frozen=True)
class RunOptions:
    """How this run was asked for: which benchmarks, and how many iterations."""

    quick: bool = False
    repeat: int | None = None  # engine runs per figure (median); None: the default

    def command(self, benchmark: str) -> str:
        """The command that reproduces a row of this benchmark."""
        flags = " --quick" if self.quick else ""
        if self.repeat is not None and benchmark == "engine":
            flags += f" --repeat {self.repeat}"
        return f"{PYTHON_COMMAND} {benchmark}{flags}"


@dataclass(frozen=True)
class Row:
    """One figure: what was measured, its value, the goal it answers and whether it is met.

    `met` is None when the row has no goal or could not be measured; `note` says why, or
    what else to know (fewer iterations in quick mode, a breakdown).
    """

    name: str
    figure: float | None
    unit: str
    goal: str
    met: bool | None
    command: str
    note: str = ""

    @property
    def shown(self) -> str:
        if self.figure is None:
            return "n/a"
        separator = "" if self.unit in ("", "x", "%") else " "
        return f"{format_number(self.figure)}{separator}{self.unit}"


def format_number(value: float) -> str:
    """Three significant figures, thousands separated: 0.214, 3.41, 27.5, 1,234."""
    magnitude = abs(value)
    if magnitude >= 100 or value == int(value):
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def met_mark(met: bool | None) -> str:
    return {True: "yes", False: "NO", None: "-"}[met]


def machine_line() -> str:
    """Cores, system and Python: what a reader needs to compare figures across machines."""
    return (
        f"machine: {os.cpu_count()} cores, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}"
    )


@dataclass
class Report:
    """Rows in the order benchmarks produce them, plus each benchmark's detailed figures."""

    options: RunOptions
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, rows: Sequence[Row]) -> None:
        self.rows.extend(rows)

    def table(self) -> str:
        header = ("benchmark", "figure", "goal", "met?", "command")
        lines = [(r.name, r.shown, r.goal or "-", met_mark(r.met), r.command) for r in self.rows]
        widths = [max(len(str(c)) for c in column) for column in zip(header, *lines, strict=True)]
        out = [machine_line(), ""]
        for cells in (header, *lines):
            out.append("  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)))
        notes = [(r.name, r.note) for r in self.rows if r.note]
        if notes:
            out.append("")
            out.extend(f"note: {name}: {note}" for name, note in notes)
        return "\n".join(line.rstrip() for line in out)

    def markdown(self) -> str:
        lines = [
            "| benchmark | figure | goal | met? | detail | command |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for r in self.rows:
            goal = (r.goal or "-").replace("<=", "≤").replace(">=", "≥")
            lines.append(
                f"| {r.name} | {r.shown} | {goal} | {met_mark(r.met)} | {r.note} | `{r.command}` |"
            )
        return "\n".join(lines)

    def write(self, path: Path = RESULTS) -> None:
        payload = {
            "machine": machine_line().removeprefix("machine: "),
            "options": asdict(self.options),
            "rows": [asdict(r) for r in self.rows],
            "details": self.details,
        }
        path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
