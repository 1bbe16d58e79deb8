"""One Prefect test harness for the folder's module (~15 s to start); never nested.

Module-scoped, not session-scoped: an idle harness server keeps using CPU (about 1 s a minute, more after
flow runs), and a session-scoped one lived on through the rest of the suite. The folder has one test module
(it cannot be a package: ``tests/prefect/__init__.py`` would shadow the ``prefect`` library).
"""

from __future__ import annotations

import os
import tempfile

import pytest


@pytest.fixture(scope="module", autouse=True)
def prefect_harness():
    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="nightloop-prefect-"))
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["DO_NOT_TRACK"] = "1"
    os.environ.setdefault("PREFECT_API_BLOCKS_REGISTER_ON_START", "false")  # as nightloop's own temporary server
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
