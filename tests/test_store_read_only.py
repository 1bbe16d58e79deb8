"""Readers work on a read-only store; reading commands never create a store at a mistyped path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nightloop import get_prompt
from nightloop.cli import app
from nightloop.prompt_files import import_prompts
from nightloop.store import NoStore, Store

REPO = Path(__file__).resolve().parents[1]
READ_COMMANDS = [
    ["review"],
    ["report"],
    ["failures"],
    ["quarantine"],
    ["prompts", "list"],
    ["prompts", "show", "support_agent"],
    ["prompts", "history", "support_agent"],
]


@pytest.fixture
def read_only_store():
    """A store in a folder nobody may write to (as on a read-only mount); readers then run as ``nobody`` if we are root."""
    folder = Path(tempfile.mkdtemp(prefix="nightloop-ro-"))  # not under pytest's 0700 folder: `nobody` must reach it
    path = folder / "store.db"
    with Store(path) as store:
        import_prompts(store, REPO / "prompts", created_by="test")
    for name in os.listdir(folder):
        os.chmod(folder / name, 0o444)
    os.chmod(folder, 0o555)
    try:
        yield path
    finally:
        os.chmod(folder, 0o755)
        shutil.rmtree(folder, ignore_errors=True)


def as_reader(args: list[str]) -> subprocess.CompletedProcess:
    """Run ``args`` as a user who cannot write the store (``nobody`` when the tests run as root)."""
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIGHTLOOP_")} | {"HOME": "/tmp", "NO_COLOR": "1"}
    return subprocess.run(prefix + args, capture_output=True, text=True, timeout=120, env=env, cwd="/tmp")


def _read_only_root_store(tmp_path: Path) -> Path:
    path = tmp_path / "store.db"
    with Store(path) as store:
        import_prompts(store, REPO / "prompts", created_by="test")
    return path


#: One reader process runs ``get_prompt`` and every read command (in-process, as typer's CliRunner runs them) and
#: prints what each did as JSON; exit 4 when it cannot even import nightloop.
READER = """
import json, sys
try:
    import nightloop
except Exception:
    sys.exit(4)
from typer.testing import CliRunner  # past the checkout's readability: a failure here is the test's to report
from nightloop.cli import app
db, commands = sys.argv[1], json.loads(sys.argv[2])
done = {"get_prompt": nightloop.get_prompt("support_agent", db=db).version}
for command in commands:
    result = CliRunner().invoke(app, [*command, "--db", db])
    done[" ".join(command)] = [result.exit_code, result.output + repr(result.exception or "")]
print(json.dumps(done))
"""


def test_get_prompt_and_read_commands_work_on_a_read_only_store(read_only_store: Path):
    probe = as_reader([sys.executable, "-c", f"open({str(read_only_store)!r}, 'ab')"])
    assert probe.returncode != 0, "the reader can write the store: the test would prove nothing"
    reader = as_reader([sys.executable, "-c", READER, str(read_only_store), json.dumps(READ_COMMANDS)])
    if reader.returncode == 4:
        pytest.skip(
            "the unprivileged reader (uid 65534) cannot read this checkout or its .venv, e.g. under a 0700 folder "
            "such as `mktemp -d` makes: clone it somewhere world-readable to run this test"
        )
    assert reader.returncode == 0, reader.stderr
    done = json.loads(reader.stdout)
    assert done.pop("get_prompt") == 1
    assert {name: code for name, (code, _) in done.items()} == {" ".join(c): 0 for c in READ_COMMANDS}, done
    # And one as the real command: the entry point itself needs no write access either.
    result = as_reader([str(Path(sys.executable).with_name("nightloop")), "report", "--db", str(read_only_store)])
    assert result.returncode == 0, (result.stdout, result.stderr)


def test_a_read_only_open_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # Works as root too: the read-only connection itself refuses writes, and no migration or WAL switch runs.
    path = _read_only_root_store(tmp_path)
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    with Store(path, read_only=True) as store:
        assert store.prompts.at_label("support_agent", "production").version == 1
        with pytest.raises(Exception, match="readonly"):
            store.db.execute("create table intruder (x)")
    assert get_prompt("support_agent", db=path).version == 1
    after = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir() if p.name in before}
    assert after == before


@pytest.mark.parametrize("command", READ_COMMANDS, ids=" ".join)
def test_read_commands_on_a_mistyped_db_say_there_is_no_store(tmp_path: Path, command: list[str]):
    missing = tmp_path / "typo" / "nightlop.db"
    result = CliRunner().invoke(app, [*command, "--db", str(missing)])
    assert result.exit_code != 0
    assert "No nightloop store at" in result.output and str(missing) in result.output.replace("\n", "")
    assert not missing.exists() and not missing.parent.exists()


def test_a_missing_store_is_no_store_for_readers_and_created_for_writers(tmp_path: Path):
    with pytest.raises(NoStore):
        Store(tmp_path / "none.db", read_only=True)
    assert not (tmp_path / "none.db").exists()
    with Store(tmp_path / "new.db") as store:
        assert store.prompts.names() == []
