"""The optional parts of nightloop: which package each needs, and the install command that adds it.

The core (ingest, classify, the judge, replay and gate on the simulator or an OpenAI-compatible endpoint through its
own SDK, review, the store, the CLI) installs with ``pip install nightloop``. The rest is an extra:

- ``prefect``: scheduled and orchestrated nights (``nightloop run`` without ``--no-prefect``, ``backfill``, ``serve``)
- ``openai`` / ``anthropic``: the official SDK of that provider (``[llm.<role>] provider = "openai"`` / ``"anthropic"``)
- ``ui``: ``nightloop ui`` and the plots of ``nightloop report --html`` (FastAPI, uvicorn, matplotlib)
- ``otlp``: ``nightloop collect`` receiving OTLP protobuf
- ``all``: every one of them
"""

from __future__ import annotations

import importlib
from types import ModuleType

from nightloop.errors import ConfigError

__all__ = ["MissingExtra", "require"]


class MissingExtra(ConfigError):
    """An optional package is not installed; the message names the extra that installs it."""


def require(module: str, extra: str, needed_for: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtra` saying ``needed_for`` needs ``pip install 'nightloop[extra]'``."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] != module.split(".")[0]:
            raise  # the package is there but one of its own imports failed: show that, not an install hint
        raise MissingExtra(
            f"{needed_for} needs the optional package {module.split('.')[0]!r}, which is not installed: "
            f"pip install 'nightloop[{extra}]'"
        ) from None
