"""The ``prompts/`` directory: the readable git mirror of the store (``<name>.j2`` + ``<name>.yaml``).

Export writes what ``production`` runs (or the latest version when nothing is in production); import turns a
hand edit into a new human-authored version. The ``.yaml`` header comment records which version a file was
exported from, so an edit's parent is the version the author actually edited.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections import Counter
from pathlib import Path

import yaml
from pydantic import ValidationError

from nightloop.errors import NightloopError, NotFound, TemplateError
from nightloop.models import PromptMeta, PromptVersion, sha256_text
from nightloop.redact import redact
from nightloop.store import Store
from nightloop.store.prompts import LATEST, PRODUCTION, InvalidName, check_name
from nightloop.templates import check_template

__all__ = [
    "PromptFileError",
    "adopt_prompt",
    "unmanaged_prompts",
    "export_prompts",
    "import_prompts",
    "read_prompt_dir",
    "write_prompt_dir",
]

TEMPLATE_SUFFIX = ".j2"
META_SUFFIXES = (".yaml", ".yml")
_EXPORTED_RE = re.compile(r"^#\s*exported-version:\s*(\d+)\s*$", re.MULTILINE)


class PromptFileError(NightloopError):
    """A file in ``prompts/`` cannot be read; the message names the file and the fix."""


def read_prompt_dir(directory: Path | str) -> list[tuple[str, str, PromptMeta | None]]:
    """Every ``(name, template, meta)`` in ``directory``; ``meta`` is None when there is no ``<name>.yaml``.

    Everything is validated before anything is returned, so a bad file stops an import before it writes.
    """
    directory = _existing_dir(directory)
    templates = {p.stem: p for p in directory.glob(f"*{TEMPLATE_SUFFIX}") if p.is_file()}
    metas: dict[str, Path] = {}
    for path in sorted(p for suffix in META_SUFFIXES for p in directory.glob(f"*{suffix}") if p.is_file()):
        if path.stem in metas:
            raise PromptFileError(f"{metas[path.stem]} and {path} describe the same prompt; keep one of them.")
        metas[path.stem] = path
    orphans = sorted(set(metas) - set(templates))
    if orphans:
        path = metas[orphans[0]]
        raise PromptFileError(
            f"{path} has no template next to it; add {path.with_suffix(TEMPLATE_SUFFIX).name} or remove it."
        )
    return [(name, _read_template(templates[name], name), _read_meta(metas.get(name))) for name in sorted(templates)]


def import_prompts(store: Store, directory: Path | str, created_by: str = "human") -> list[PromptVersion]:
    """Record every changed template in ``directory`` as a new version; returns the versions created.

    A template identical to any stored version of its prompt is not a change (importing twice is a no-op,
    and re-importing an export of an older version does not duplicate it). The metadata is stored when it
    differs; a new prompt's first version becomes ``production``. Labels of existing prompts never move
    here: a hand edit reaches production through review like any other change.
    """
    files = read_prompt_dir(directory)
    directory = Path(directory)
    repo = store.prompts
    created: list[PromptVersion] = []
    with store.transaction():
        for name, template, meta in files:
            is_new = not repo.versions(name)
            if repo.find_by_sha(name, sha256_text(template)) is None:
                version = repo.create_version(
                    name,
                    template,
                    created_by=created_by,
                    message=f"imported from {directory / (name + TEMPLATE_SUFFIX)}",
                    parent=_stored_parent(repo, name, _exported_version(directory, name)),
                )
                created.append(version)
                if is_new:
                    repo.move_label(
                        name,
                        PRODUCTION,
                        version.version,
                        expected_version=None,
                        moved_by=created_by,
                        reason="first version imported",
                    )
            if meta is not None and _meta_changed(repo, name, meta):
                repo.set_meta(name, meta)
    return created


def export_prompts(store: Store, directory: Path | str) -> list[PromptVersion]:
    """Write the production (else latest) version of every prompt and its metadata; returns what was written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    repo = store.prompts
    written: list[PromptVersion] = []
    for name in repo.names():
        try:
            label = PRODUCTION if repo.label_version(name, PRODUCTION) is not None else LATEST
            version = repo.at_label(name, label)
        except NotFound:  # metadata without any version: nothing to mirror yet
            continue
        _write_if_changed(directory / f"{name}{TEMPLATE_SUFFIX}", version.template)
        _write_if_changed(_meta_path(directory, name), _meta_text(version, label, repo.get_meta(name)))
        written.append(version)
    return written


def write_prompt_dir(directory: Path | str, store: Store) -> list[PromptVersion]:
    """Same as :func:`export_prompts`, arguments in directory-first order."""
    return export_prompts(store, directory)


# --- reading ---


def _existing_dir(directory: Path | str) -> Path:
    path = Path(directory)
    if not path.is_dir():
        raise PromptFileError(
            f"Prompt directory {path} does not exist; create it with <name>.j2 templates, "
            f"or write the store's prompts there with `nightloop prompts export {path}`."
        )
    return path


def _read_template(path: Path, name: str) -> str:
    try:
        check_name(name)
    except InvalidName as exc:
        raise PromptFileError(f"{path}: {exc} Rename the file.") from exc
    try:
        # Universal newlines: a checkout with CRLF line endings is the same template.
        template = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PromptFileError(f"{path} is not UTF-8 text ({exc.reason}); save it as UTF-8.") from exc
    try:
        check_template(template)
    except TemplateError as exc:
        raise PromptFileError(f"{path}: {exc}") from exc
    return template


def _read_meta(path: Path | None) -> PromptMeta | None:
    if path is None:
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise PromptFileError(
            f"{path} is not valid YAML{line}: {getattr(exc, 'problem', exc)}. Fix the file and re-run the import."
        ) from exc
    except UnicodeDecodeError as exc:
        raise PromptFileError(f"{path} is not UTF-8 text ({exc.reason}); save it as UTF-8.") from exc
    if data is None:
        return PromptMeta()
    if not isinstance(data, dict):
        raise PromptFileError(
            f"{path} must be a YAML mapping (description:, variables:, autonomy: …), not a {type(data).__name__}."
        )
    try:
        return PromptMeta.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in exc.errors())
        raise PromptFileError(f"{path} has invalid metadata: {problems}.") from exc


def _exported_version(directory: Path, name: str) -> int | None:
    for suffix in META_SUFFIXES:
        path = directory / f"{name}{suffix}"
        if path.is_file():
            match = _EXPORTED_RE.search(path.read_text(encoding="utf-8"))
            return int(match.group(1)) if match else None
    return None


def _stored_parent(repo, name: str, exported: int | None) -> int | None:
    """The exported-from version when the store has it (else the store's default parent)."""
    if exported is not None and any(v.version == exported for v in repo.versions(name)):
        return exported
    return None


def _meta_changed(repo, name: str, meta: PromptMeta) -> bool:
    try:
        return repo.get_meta(name).model_dump(mode="json") != meta.model_dump(mode="json")
    except NotFound:
        return True


# --- writing ---


def _meta_path(directory: Path, name: str) -> Path:
    """The prompt's existing meta file (``.yaml`` or ``.yml``), else ``<name>.yaml``: never two files for one prompt."""
    for suffix in META_SUFFIXES:
        path = directory / f"{name}{suffix}"
        if path.is_file():
            return path
    return directory / f"{name}{META_SUFFIXES[0]}"


def _meta_text(version: PromptVersion, label: str, meta: PromptMeta) -> str:
    header = (
        f"# nightloop: {version.name} v{version.version} ({label}), sha256 {version.sha256[:12]}.\n"
        f"# Edit {version.name}{TEMPLATE_SUFFIX}, then `nightloop prompts import` records it as a new version.\n"
        f"# exported-version: {version.version}\n"
    )
    return header + yaml.safe_dump(meta.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def _write_if_changed(path: Path, text: str) -> None:
    """Write atomically, and not at all when the content is already there (keeps git and mtimes quiet)."""
    if path.is_file() and path.read_bytes() == text.encode("utf-8"):
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def unmanaged_prompts(store: Store) -> list[str]:
    """Prompt names that conversations mention but the store does not manage yet."""
    managed = set(store.prompts.names())
    return [name for name in store.conversations.prompt_names() if name and name not in managed]


def adopt_prompt(store: Store, name: str, *, created_by: str) -> PromptVersion:
    """Start managing a prompt known only from its conversations: their most common system prompt becomes v1.

    The logged system prompt is already rendered, so the adopted template has no variables; Jinja syntax in it
    is kept literal, and private data rendered into it is redacted (:func:`nightloop.redact.redact`).
    """
    check_name(name)
    if name in store.prompts.names():
        raise PromptFileError(f"{name} is already managed (v{store.prompts.latest(name).version}); nothing to adopt.")
    counts = Counter(
        c.system_prompt for c in store.conversations.iter_conversations(prompt_name=name) if c.system_prompt.strip()
    )
    if not counts:
        raise NotFound(
            f"No stored conversation of {name!r} has a system prompt to adopt; ingest its conversations first, "
            f"or write prompts/{name}.j2 and run `nightloop prompts import prompts/`."
        )
    logged, uses = counts.most_common(1)[0]
    # A rendered system prompt can carry one customer's data ("The customer is Jane Doe, jane@…"): the template
    # is shown, mirrored to prompts/ and sent to the judge, so those values become placeholders.
    text = redact(logged, "assistant")
    template = "{% raw %}" + text + "{% endraw %}" if any(m in text for m in ("{{", "{%", "{#")) else text
    message = f"adopted from the system prompt of {uses} conversation(s)"
    if text != logged:
        message += "; private values in it (names, emails, numbers…) replaced by placeholders such as [EMAIL]"
    with store.transaction():
        version = store.prompts.create_version(name, template, created_by=created_by, message=message)
        store.prompts.move_label(name, PRODUCTION, version.version, expected_version=None, moved_by=created_by, reason="adopted")
    return version
