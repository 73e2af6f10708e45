"""Column alignment as Go's ``text/tabwriter`` does it, for kubectl-identical output.

Contract: ``align(text, minwidth, padding)`` takes lines whose cells are
separated by tabs and returns them with each tab-terminated cell padded with
spaces. As in Go, a cell's column width is computed over the *block* of
consecutive lines that have a cell in that column, so a line with fewer cells
ends the block (this is what makes ``kubectl describe`` sections align the way
they do). The last cell of a line is never padded. kubectl's tables use
``minwidth=6, padding=3``; its describe output uses ``minwidth=0, padding=2``.
"""
from __future__ import annotations

__all__ = ["align", "TABLE", "DESCRIBE"]

TABLE = (6, 3)      # kubectl printers.GetNewTabWriter: minwidth 6, padding 3
DESCRIBE = (0, 2)   # kubectl describe's tabbedString: minwidth 0, padding 2


def align(text: str, minwidth: int = 0, padding: int = 2) -> str:
    """Align tab-separated cells in ``text``; keeps a trailing newline if present."""
    if not text:
        return text
    trailing = text.endswith("\n")
    lines = [line.split("\t") for line in (text[:-1] if trailing else text).split("\n")]
    out: list[str] = []
    _format(lines, 0, len(lines), [], minwidth, padding, out)
    result = "\n".join(out)
    return result + "\n" if trailing else result


def _format(lines: list[list[str]], line0: int, line1: int, widths: list[int],
            minwidth: int, padding: int, out: list[str]) -> None:
    column = len(widths)
    this = line0
    while this < line1:
        if column >= len(lines[this]) - 1:
            this += 1
            continue
        # A cell exists in this column: lines before it are complete.
        _write(lines, line0, this, widths, out)
        line0 = this
        width = minwidth
        while this < line1 and column < len(lines[this]) - 1:
            width = max(width, len(lines[this][column]) + padding)
            this += 1
        _format(lines, line0, this, widths + [width], minwidth, padding, out)
        line0 = this
    _write(lines, line0, line1, widths, out)


def _write(lines: list[list[str]], line0: int, line1: int, widths: list[int],
           out: list[str]) -> None:
    for i in range(line0, line1):
        cells = lines[i]
        parts = []
        for j, cell in enumerate(cells):
            if j < len(widths) and j < len(cells) - 1:
                parts.append(cell.ljust(widths[j]))
            else:
                parts.append(cell)
        out.append("".join(parts))
