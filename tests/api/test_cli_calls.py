"""`farm build --call ...` and error reporting, through the real `farm` command."""

import subprocess
import sys
from pathlib import Path

import pytest

FARM = [str(Path(sys.executable).with_name("farm"))]
ROOT = Path(__file__).resolve().parents[2]


def farm(*args: str, cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FARM, *args],
        cwd=cwd,
        input=stdin.decode() if stdin else None,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(cwd)},
    )


MULTI = """\
# syntax=docker/dockerfile:1
ARG GO_VERSION=1.22

# build compiles the program
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
# VERSION is stamped into the binary
ARG VERSION=dev
ARG TARGETARCH
RUN --mount=type=secret,id=token GOARCH=$TARGETARCH go build -o /out/app

FROM alpine AS unused
RUN echo never

# app is the runtime image
FROM alpine AS app
COPY --from=build /out/app /app
CMD ["/app"]
"""


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    (tmp_path / "Dockerfile").write_text(MULTI)
    return tmp_path


def test_call_targets_lists_stages_with_descriptions(ctx):
    res = farm("build", "--call", "targets", ".", cwd=ctx)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["TARGET", "DESCRIPTION"]
    assert lines[1].split() == ["build", "compiles", "the", "program"]
    assert lines[2].split() == ["unused"]
    assert lines[3].split() == ["app", "(default)", "is", "the", "runtime", "image"]


def test_call_outline_shows_args_of_the_target_and_secrets(ctx):
    res = farm("build", "--call", "outline", "--build-arg", "VERSION=1.2", ".", cwd=ctx)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "TARGET:      app" in out
    assert "DESCRIPTION: is the runtime image" in out
    rows = {
        line.split()[0]: line.split()[1:]
        for line in out.splitlines()
        if line.startswith(("VERSION", "GO_VERSION"))
    }
    assert rows["VERSION"][:1] == ["1.2"]
    assert rows["VERSION"][1:] == ["is", "stamped", "into", "the", "binary"]
    assert rows["GO_VERSION"] == ["1.22"]
    assert "token" in out.split("SECRET", 1)[1]


def test_call_check_clean_file(tmp_path):
    (tmp_path / "Dockerfile").write_text('FROM scratch\nCMD ["/app"]\n')
    res = farm("build", "--call", "check", ".", cwd=tmp_path)
    assert res.returncode == 0
    assert "no warnings found" in res.stdout


def test_call_check_lists_warnings_and_fails(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch as Build\nCMD /app\n")
    res = farm("build", "--call", "check", ".", cwd=tmp_path)
    assert res.returncode == 1
    assert "WARNING: FromAsCasing" in res.stdout
    assert "WARNING: StageNameCasing" in res.stdout
    assert "WARNING: JSONArgsRecommended" in res.stdout
    assert "Dockerfile:2" in res.stdout


@pytest.mark.parametrize(
    ("dockerfile", "args", "want"),
    [
        ("FROM scratch\nFOO bar\n", (), "Dockerfile:2: FOO: unknown instruction"),
        ("RUN true\n", (), "Dockerfile:1"),
        ("FROM scratch AS a\n", ("--target", "nope"), "nope"),
        ("FROM scratch\nCOPY --bogus a b\n", (), "Dockerfile:2"),
        ("FROM scratch\nRUN <<EOF\necho\n", (), "Dockerfile:2"),
        (
            "FROM scratch\nSTOPSIGNAL SIGFOO\n",
            ("--allow", "security.insecure"),
            "Dockerfile:2: STOPSIGNAL: Invalid signal: SIGFOO",
        ),
        ("FROM scratch\nEXPOSE 99999999\n", (), "Dockerfile:2: EXPOSE: invalid containerPort"),
        ("FROM ${NOPE:?unset var}\n", (), "Dockerfile:1: FROM: failed to process"),
    ],
)
def test_errors_name_file_and_line_without_traceback(tmp_path, dockerfile, args, want):
    (tmp_path / "Dockerfile").write_text(dockerfile)
    res = farm("build", "--call", "plan", *args, ".", cwd=tmp_path)
    assert res.returncode == 1
    assert want in res.stderr
    assert res.stderr.startswith("ERROR: ")
    assert "Traceback" not in res.stderr


def test_invalid_platform_is_a_clear_error(ctx):
    res = farm("build", "--call", "plan", "--platform", "linux/sparc", ".", cwd=ctx)
    assert res.returncode == 1
    assert "'linux/sparc'" in res.stderr and "linux/arm64" in res.stderr


def test_dockerfile_from_stdin_and_f_outside_context(tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    other = tmp_path / "elsewhere.Dockerfile"
    other.write_text("FROM scratch AS outside\n")
    res = farm("build", "--call", "targets", "-f", str(other), str(ctx), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "outside (default)" in res.stdout
    res = farm("build", "--call", "targets", "-", cwd=tmp_path, stdin=b"FROM scratch AS piped\n")
    assert res.returncode == 0, res.stderr
    assert "piped (default)" in res.stdout


def test_plan_for_two_platforms_runs_buildplatform_stage_natively(ctx):
    res = farm("build", "--call", "plan", "--platform", "linux/amd64,linux/arm64", ".", cwd=ctx)
    assert res.returncode == 0, res.stderr
    blocks = res.stdout.split("platform linux/")
    arm = next(b for b in blocks if b.startswith("arm64"))
    # the build stage is planned for the build platform, the app for arm64; unused is absent
    assert "stage 0 (build): linux/amd64 from image docker.io/library/golang:1.22" in arm
    assert "stage 2 (app): linux/arm64 from image docker.io/library/alpine:latest" in arm
    assert "unused" not in res.stdout
