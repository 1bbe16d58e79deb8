"""Protected lines: parts of a template that ``prompts/<name>.yaml`` says the judge may not change at all.

```yaml
protected:
  - "Never share one customer's data with another customer."   # this line, exactly
  - section: "Refund policy:"                                  # this line and the lines after it, up to a blank line
```

A candidate that changes, moves apart or removes a protected block is refused. An entry the base template
does not contain protects nothing (the prompt's author changed the template; the reason says so nowhere,
so ``nightloop prompts show`` lists what is protected).
"""

from __future__ import annotations

from collections.abc import Sequence

from nightloop.invisible import escape_invisible
from nightloop.models import ProtectedEntry, ProtectedSection

__all__ = ["protected_blocks", "protected_reasons"]


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines()]


def _section(lines: list[str], start: int) -> list[str]:
    end = start + 1
    while end < len(lines) and lines[end].strip():
        end += 1
    return lines[start:end]


def protected_blocks(template: str, protected: Sequence[ProtectedEntry]) -> list[list[str]]:
    """The blocks of ``template`` that ``protected`` covers, each a list of consecutive lines."""
    lines = _lines(template)
    stripped = [line.strip() for line in lines]
    blocks: list[list[str]] = []
    for entry in protected:
        heading = entry.section if isinstance(entry, ProtectedSection) else entry
        for index, line in enumerate(stripped):
            if line == heading.strip():
                blocks.append(_section(lines, index) if isinstance(entry, ProtectedSection) else [lines[index]])
    return blocks


def _contains_block(lines: list[str], block: list[str]) -> bool:
    width = len(block)
    return any(lines[i : i + width] == block for i in range(len(lines) - width + 1))


def protected_reasons(base_template: str, candidate_template: str, protected: Sequence[ProtectedEntry]) -> list[str]:
    """Why ``candidate_template`` is refused for changing a protected part of ``base_template`` (empty: it does not)."""
    candidate_lines = _lines(candidate_template)
    reasons = []
    for block in protected_blocks(base_template, protected):
        if not _contains_block(candidate_lines, block):
            first = escape_invisible(block[0].strip())
            more = f" (and the {len(block) - 1} line(s) of its section)" if len(block) > 1 else ""
            reasons.append(f'changes a protected line the judge may not touch: "{first}"{more}')
    return reasons
