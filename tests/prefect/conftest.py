"""One Prefect test harness for the whole folder (~15 s to start); never nested."""

from __future__ import annotations

import os
import tempfile

import pytest


@pytest.fixture(scope="session", autouse=True)
def prefect_harness():
    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="nightloop-prefect-"))
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["DO_NOT_TRACK"] = "1"
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
