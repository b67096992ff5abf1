"""`run_argv`: the argv a RUN runs, in particular a `RUN <<EOT` script with its own `#!`."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from buildkit.dockerfile import parse_dockerfile
from buildkit.dockerfile.instructions import Run
from buildkit.executor import run_argv

SHELL = ("/bin/sh", "-c")


def the_run(dockerfile: str) -> Run:
    (stage,) = parse_dockerfile("FROM scratch\n" + dockerfile).stages
    (inst,) = stage.instructions
    assert isinstance(inst, Run)
    return inst


def script_lines(text: str, delimiter: str) -> list[str]:
    """The lines the shell's `cat <<'delimiter'` would read: up to the first delimiter line."""
    lines = text.split("\n")[1:]  # after the `cat > "$f" <<'...'` line
    return lines[: lines.index(delimiter)]


def test_a_plain_script_keeps_its_delimiter() -> None:
    inst = the_run("RUN <<EOT\n#!/bin/sh\necho hi\nEOT\n")
    (*shell, text) = run_argv(inst, SHELL)
    assert tuple(shell) == SHELL
    assert text == (
        "f=$(mktemp) && cat > \"$f\" <<'FARM_HEREDOC_EOF'\n"
        "#!/bin/sh\necho hi\nFARM_HEREDOC_EOF\n"
        'chmod +x "$f" && "$f"; rc=$?; rm -f "$f"; exit $rc'
    )


@pytest.mark.parametrize(
    ("body_lines", "delimiter"),
    [
        (["FARM_HEREDOC_EOF"], "FARM_HEREDOC_EOF_1"),
        (["FARM_HEREDOC_EOF", "FARM_HEREDOC_EOF_1"], "FARM_HEREDOC_EOF_2"),
        (["FARM_HEREDOC_EOF_1", "FARM_HEREDOC_EOF"], "FARM_HEREDOC_EOF_2"),
        # Not a whole line: cannot end the heredoc, so the usual delimiter stays.
        (["echo FARM_HEREDOC_EOF", " FARM_HEREDOC_EOF"], "FARM_HEREDOC_EOF"),
    ],
)
def test_a_body_line_equal_to_the_delimiter_does_not_end_the_script(
    body_lines: list[str], delimiter: str
) -> None:
    body = ["#!/bin/sh", "cat <<'FARM_HEREDOC_EOF'", *body_lines, "echo done"]
    inst = the_run("RUN <<EOT\n" + "\n".join(body) + "\nEOT\n")
    text = run_argv(inst, SHELL)[-1]
    assert text.startswith(f"f=$(mktemp) && cat > \"$f\" <<'{delimiter}'\n")
    # The whole body goes into the script, nothing of it runs in the outer shell.
    assert script_lines(text, delimiter) == body
    assert text.endswith(f"\n{delimiter}\n" + 'chmod +x "$f" && "$f"; rc=$?; rm -f "$f"; exit $rc')


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_the_script_runs_whole_under_a_real_shell() -> None:
    # Before the fix the body line `FARM_HEREDOC_EOF` ended the outer heredoc:
    # the script was cut short and `echo outer` ran in the outer shell.
    dockerfile = (
        "RUN <<EOT\n"
        "#!/bin/sh\n"
        "cat <<'FARM_HEREDOC_EOF'\n"
        "inner\n"
        "FARM_HEREDOC_EOF\n"
        "echo outer\n"
        "exit 3\n"
        "EOT\n"
    )
    argv = run_argv(the_run(dockerfile), ("sh", "-c"))
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert result.stdout == "inner\nouter\n"
    assert result.returncode == 3
