"""Every config field is read somewhere: a field that is accepted but ignored is a lie to the user.

The walk covers every section model of `RunConfig` (nested ones too) and looks for the field read as
an attribute (`.name`) or as a key (`"name"`) in the code: every module outside the config modules,
and the functions of the config modules (their validators and helpers, docstrings left out). Shared
types (`Placement`, `ActorConfig`) are walked once per type, since the same code reads every instance.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from pydantic import BaseModel

from esc.config import RunConfig

ROOT = Path(__file__).resolve().parents[2]
CODE = ("actors", "esc", "jobs", "learner", "serve")
CONFIG_MODULES = {"config.py", "config_roles.py", "config_training.py", "config_placement.py"}
RESERVED: dict[str, str] = {}  # "Model.field" -> why it is accepted without being read (none today)


def _models(model: type[BaseModel], seen: dict[type, None]) -> dict[type, None]:
    seen[model] = None
    for field in model.model_fields.values():
        for kind in (field.annotation, *getattr(field.annotation, "__args__", ())):
            if isinstance(kind, type) and issubclass(kind, BaseModel) and kind not in seen:
                _models(kind, seen)
    return seen


def _functions(path: Path) -> str:
    """The code of every function in a module, without docstrings."""
    parts = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef):
            body = node.body[1:] if ast.get_docstring(node) else node.body
            parts += [ast.unparse(statement) for statement in body]
    return "\n".join(parts)


def _source() -> str:
    files = [p for folder in CODE for p in (ROOT / folder).rglob("*.py")]
    config = [p for p in files if p.parent.name == "esc" and p.name in CONFIG_MODULES]
    return "\n".join([*(p.read_text() for p in files if p not in config), *map(_functions, config)])


def test_every_config_field_is_read_somewhere():
    source = _source()
    unread = []
    for model in _models(RunConfig, {}):
        for name in model.model_fields:
            if f"{model.__name__}.{name}" in RESERVED:
                continue
            if not re.search(rf"\.{name}\b|[\"']{name}[\"']", source):
                unread.append(f"{model.__name__}.{name}")
    assert unread == []


def test_the_walk_sees_nested_and_shared_sections():
    names = {m.__name__ for m in _models(RunConfig, {})}
    assert {"ActorsConfig", "ActorConfig", "Placement", "LearnerConfig", "ServeConfig"} <= names
