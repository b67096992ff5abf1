"""The direction of dependencies: api → workers → buildkit, and buildkit is a
library that reads no environment and knows no queue, web framework or Redis."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN_IN_BUILDKIT = {"celery", "fastapi", "redis", "starlette", "uvicorn", "api", "workers"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", _sources("buildkit"), ids=lambda p: str(p.relative_to(ROOT)))
def test_buildkit_imports_no_service_layer(path):
    assert not (_imports(path) & FORBIDDEN_IN_BUILDKIT)


@pytest.mark.parametrize("path", _sources("buildkit"), ids=lambda p: str(p.relative_to(ROOT)))
def test_buildkit_reads_no_environment(path):
    text = path.read_text()
    assert "os.environ" not in text and "os.getenv" not in text


@pytest.mark.parametrize("path", _sources("workers"), ids=lambda p: str(p.relative_to(ROOT)))
def test_workers_do_not_import_api(path):
    assert "api" not in _imports(path)
