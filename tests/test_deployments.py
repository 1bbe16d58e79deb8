"""deployments.yaml is a valid Prefect deployment file whose entry points load."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def deployment_file() -> dict:
    return yaml.safe_load((REPO / "deployments.yaml").read_text())


def test_deployments_yaml_matches_prefects_schema(deployment_file: dict) -> None:
    from prefect.cli.deploy._models import PrefectYamlModel, RawScheduleConfig

    model = PrefectYamlModel.model_validate(deployment_file)
    names = {d.name: d for d in model.deployments}
    assert set(names) == {"nightly", "backfill"}
    nightly = names["nightly"]
    schedule = RawScheduleConfig.model_validate(deployment_file["deployments"][0]["schedules"][0])
    assert schedule.cron == "0 2 * * *" and schedule.timezone == "UTC"
    assert nightly.work_pool and nightly.work_pool.name


def test_entrypoints_load_as_flows(deployment_file: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.flows import load_flow_from_entrypoint

    monkeypatch.chdir(REPO)
    for deployment in deployment_file["deployments"]:
        flow = load_flow_from_entrypoint(deployment["entrypoint"])
        assert flow.name == deployment["name"]
