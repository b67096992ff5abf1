"""A user's mistake found while a step runs names the Dockerfile line and the
instruction, as a mistake found while planning does."""

from __future__ import annotations

from pathlib import Path

import pytest

from buildkit.errors import DockerfileError, FarmError
from tests.engine.conftest import BASE, build

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(120)]

#: BASE takes lines 1-3; the failing instruction is on line 4 (or 5):
#: (lines after BASE, line, instruction, what the message says).
CASES = {
    "chmod": ("COPY --chmod=999 a.txt /a.txt\n", 4, "COPY", "invalid chmod parameter '999'"),
    "chown": ("COPY --chown=ghost a.txt /a.txt\n", 4, "COPY", "unable to find user ghost"),
    "user-run": ("USER ghost\nRUN true\n", 5, "RUN", "unable to find user ghost"),
    "user-workdir": ("USER ghost\nWORKDIR /made\n", 5, "WORKDIR", "unable to find user ghost"),
    "checksum": (
        "ADD --checksum=sha256:zz http://127.0.0.1:9/a.txt /a.txt\n",
        4,
        "ADD",
        "sha256:zz",
    ),
    "checksum-local": ("ADD --checksum=sha256:zz a.txt /a.txt\n", 4, "ADD", "--checksum"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_step_error_names_its_dockerfile_line(tmp_path: Path, case: str) -> None:
    text, line, instruction, says = CASES[case]
    with pytest.raises(DockerfileError) as info:
        build(tmp_path, BASE + text, {"a.txt": "a\n"})
    err = info.value
    assert (err.line, err.instruction) == (line, instruction)
    assert str(err).startswith(f"Dockerfile:{line}: {instruction}: ")
    assert says in err.message
    assert err.__cause__ is not None  # the original error, kept for debugging


def test_an_unreachable_url_names_its_line(tmp_path: Path) -> None:
    """A failed download (an error that may go away: retried, not a DockerfileError)
    still says which ADD failed."""
    with pytest.raises(FarmError) as info:
        build(tmp_path, BASE + "ADD http://127.0.0.1:9/nothing.txt /nothing.txt\n")
    assert str(info.value).startswith("Dockerfile:4: ADD: failed to fetch http://127.0.0.1:9/")


def test_a_retryable_error_keeps_its_type_and_gains_its_line() -> None:
    """`_locate` prefixes a retryable error's message once, and leaves alone the
    errors that format themselves (BuildStepError) or are not retried."""
    from buildkit.dockerfile import parse_dockerfile
    from buildkit.errors import BuildStepError, InternalError, StorageError
    from buildkit.solver import _locate

    run = parse_dockerfile("FROM scratch\nRUN true\n", path="Dockerfile").stages[0].instructions[0]
    step = type("S", (), {"line": run.line, "keyword": run.keyword})()
    err = StorageError("the store is down")
    _locate(err, "Dockerfile", step)  # type: ignore[arg-type]
    _locate(err, "Dockerfile", step)  # type: ignore[arg-type]
    assert str(err) == "Dockerfile:2: RUN: the store is down"
    failed = BuildStepError("exit code 1", line=2)
    _locate(failed, "Dockerfile", step)  # type: ignore[arg-type]
    assert str(failed) == "Dockerfile:2: exit code 1"
    assert isinstance(err, InternalError) and err.retryable
