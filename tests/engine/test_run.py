"""RUN: shell and exec form, heredocs, the environment a step sees, failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from buildkit.errors import BuildStepError, DockerfileError
from buildkit.store.base import NameUnknown
from tests.engine.conftest import BASE, build

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(60)]


def test_shell_form_and_exec_form(tmp_path: Path) -> None:
    built = build(
        tmp_path,
        BASE
        + "ENV WHO=world\n"
        + 'RUN echo "hello $WHO" > /shell-form\n'
        + 'RUN ["/bin/sh", "-c", "echo exec $0 > /exec-form", "zero"]\n'
        + 'RUN ["/bin/echo", "$WHO"]\n',
    )
    root = built.rootfs(tmp_path / "root")
    assert (root / "shell-form").read_text() == "hello world\n"
    assert (root / "exec-form").read_text() == "exec zero\n"
    # Exec form does no variable substitution.
    assert "$WHO" in built.logs()


def test_heredoc_script(tmp_path: Path) -> None:
    built = build(
        tmp_path,
        BASE + "RUN <<EOF\necho one > /h\necho two >> /h\nEOF\n",
    )
    assert (built.rootfs(tmp_path / "root") / "h").read_text() == "one\ntwo\n"


def test_heredoc_with_a_shebang_runs_its_interpreter(tmp_path: Path) -> None:
    # awk would be a syntax error for sh: only the shebang makes this work.
    built = build(
        tmp_path,
        BASE + 'RUN <<EOF\n#!/bin/awk -f\nBEGIN { print "from awk" > "/awk-out" }\nEOF\n',
    )
    assert (built.rootfs(tmp_path / "root") / "awk-out").read_text() == "from awk\n"


def test_heredoc_as_a_command_input(tmp_path: Path) -> None:
    built = build(
        tmp_path,
        BASE
        + "ENV NAME=world\n"
        + "RUN cat <<EOF > /expanded\nhello $NAME\nEOF\n"
        + "RUN cat <<'EOF' > /literal\nhello $NAME\nEOF\n"
        + "RUN <<A cat > /first && <<B cat > /second\nalpha\nA\nbeta\nB\n",
    )
    root = built.rootfs(tmp_path / "root")
    assert (root / "expanded").read_text() == "hello world\n"
    assert (root / "literal").read_text() == "hello $NAME\n"
    assert (root / "first").read_text() == "alpha\n"
    assert (root / "second").read_text() == "beta\n"


def test_environment_of_a_step(tmp_path: Path) -> None:
    built = build(
        tmp_path,
        BASE
        + "ENV FROM_ENV=e\n"
        + "ARG FROM_ARG=a\n"
        + "ARG OVERRIDDEN\n"
        + "ENV OVERRIDDEN=from-env\n"
        + "ARG FROM_CLI=default\n"
        + "RUN env > /environ\n",
        build_args={"OVERRIDDEN": "from-cli", "FROM_CLI": "cli"},
    )
    environ = dict(
        line.split("=", 1)
        for line in (built.rootfs(tmp_path / "root") / "environ").read_text().splitlines()
    )
    assert environ["FROM_ENV"] == "e"
    assert environ["FROM_ARG"] == "a"
    assert environ["OVERRIDDEN"] == "from-env"  # ENV wins over an ARG of the same name
    assert environ["FROM_CLI"] == "cli"
    assert environ["TARGETARCH"] == "amd64"
    assert "PATH" in environ
    assert built.env()["OVERRIDDEN"] == "from-env"
    assert "FROM_ARG" not in built.env()
    # A build step gets no credentials or settings of the machine running it.
    assert not [k for k in environ if k.startswith("FARM_")]


def test_a_failing_step_names_platform_line_command_exit_code_and_output(tmp_path: Path) -> None:
    dockerfile = (
        BASE + "RUN echo fine\n" + "RUN echo first; echo second >&2; exit 3\nRUN echo never\n"
    )
    with pytest.raises(BuildStepError) as info:
        build(tmp_path, dockerfile)
    err = info.value
    assert err.platform == "linux/amd64"
    assert err.line == 5
    assert err.exit_code == 3
    assert "echo first; echo second >&2; exit 3" in err.command
    assert err.log_tail[-2:] == ("first", "second")
    text = str(err)
    assert "[linux/amd64]" in text
    assert "Dockerfile:5" in text
    assert "exit code: 3" in text
    assert "echo first; echo second >&2; exit 3" in text
    assert "second" in text


def test_log_tail_keeps_the_last_lines(tmp_path: Path) -> None:
    with pytest.raises(BuildStepError) as info:
        build(tmp_path, BASE + "RUN seq 1 500; exit 1\n")
    assert info.value.log_tail[-1] == "500"
    assert "1" not in info.value.log_tail  # only the tail, not all 500 lines
    assert "  | 500" in str(info.value)


def test_failure_event_and_nothing_after_it_runs(tmp_path: Path) -> None:
    from buildkit.events import Recorder
    from tests.engine.conftest import run_context, write_context

    context = write_context(tmp_path / "c", BASE + "RUN exit 7\nRUN touch /never\n")
    home = tmp_path / "farm-home"
    home.mkdir()
    recorder = Recorder()
    with pytest.raises(BuildStepError):
        run_context(context, home, recorder=recorder)
    errors = recorder.of_kind("step.error")
    assert len(errors) == 1 and errors[0].line == 4 and "exit code: 7" in errors[0].text
    assert not [e for e in recorder.of_kind("step.start") if "never" in e.name]


def test_nothing_is_tagged_after_a_failure(tmp_path: Path, store) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "farm-home"
    first = build(tmp_path, BASE + "RUN echo 1 > /v\n", tags=["app:1"], context_name="ok")
    assert str(store.resolve("app", "1").digest) == first.digest
    with pytest.raises(BuildStepError):
        build(
            tmp_path,
            BASE + "RUN echo 2 > /v && false\n",
            tags=["app:1", "other:1"],
            home=home,
            context_name="bad",
        )
    assert str(store.resolve("app", "1").digest) == first.digest
    with pytest.raises(NameUnknown):
        store.resolve("other", "1")


@pytest.mark.parametrize(
    ("allow", "refused"),
    [((), True), (("network.host",), True), (("security.insecure",), False)],
)
def test_security_insecure_needs_allow(
    tmp_path: Path, allow: tuple[str, ...], refused: bool
) -> None:
    text = BASE + "RUN --security=insecure echo ran > /insecure\n"
    if refused:
        with pytest.raises(DockerfileError, match=r"--allow security\.insecure") as info:
            build(tmp_path, text, allow=allow)
        assert info.value.line == 4
        assert info.value.instruction == "RUN"
        return
    # Allowed, it still runs in the ordinary sandbox.
    built = build(tmp_path, text, allow=allow)
    assert (built.rootfs(tmp_path / "root") / "insecure").read_text() == "ran\n"
