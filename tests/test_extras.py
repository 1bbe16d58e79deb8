"""The optional parts: a missing extra is named with the command that installs it, and --help stays light."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from nightloop.cli import app
from nightloop.config import RoleConfig
from nightloop.extras import MissingExtra, require
from nightloop.llm.client import build_provider


def _without(monkeypatch: pytest.MonkeyPatch, package: str) -> None:
    """Make ``import package`` fail as it does where the package is not installed."""
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, package, None)


def test_a_missing_package_names_the_extra_that_installs_it(monkeypatch):
    _without(monkeypatch, "prefect")
    with pytest.raises(MissingExtra, match=r"pip install 'nightloop\[prefect\]'"):
        require("prefect", "prefect", "scheduling")


def test_a_package_that_fails_inside_is_not_mistaken_for_a_missing_one(monkeypatch, tmp_path):
    (tmp_path / "brokenpkg").mkdir()
    (tmp_path / "brokenpkg" / "__init__.py").write_text("import no_such_dependency_of_it\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_of_it"):
        require("brokenpkg", "x", "a test")


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_provider_whose_sdk_is_missing_says_which_extra_to_install(monkeypatch, provider):
    _without(monkeypatch, provider)
    with pytest.raises(MissingExtra, match=rf"provider = \"{provider}\".*pip install 'nightloop\[{provider}\]'"):
        build_provider(RoleConfig(provider=provider, model="m", base_url="http://127.0.0.1:9"), seed=0)


def test_run_without_prefect_installed_says_how_to_install_it_or_run_without_it(monkeypatch, tmp_path):
    _without(monkeypatch, "prefect")
    result = CliRunner().invoke(app, ["run", "--db", str(tmp_path / "nightloop.db")])
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "pip install 'nightloop[prefect]'" in text and "--no-prefect" in text


def test_help_loads_no_store_config_stage_or_heavy_library():
    """`nightloop --help` stays under a second on 2 cores only while the CLI imports nothing heavy at load time."""
    heavy = ["nightloop.store", "nightloop.config", "nightloop.pipeline", "nightloop.classify", "sqlite_utils",
             "pydantic_settings", "scipy", "numpy", "prefect", "openai", "anthropic", "matplotlib", "fastapi", "jinja2"]
    script = (
        "import sys, json, contextlib, io\n"
        "from nightloop.cli import app\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    app(['--help'])\n"
        f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
