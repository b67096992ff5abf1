"""Every instruction's effect on the image configuration, as Docker documents it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.engine.conftest import BASE, build

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(60)]


def test_env_both_forms_and_the_old_value_rule(tmp_path: Path) -> None:
    # "ENV abc=bye def=$abc": def gets abc's value from BEFORE this instruction.
    built = build(
        tmp_path,
        BASE
        + 'ENV A=1 B="two words" C=three\\ words\n'
        + "ENV LEGACY value with spaces\n"
        + "ENV abc=hello\n"
        + "ENV abc=bye def=$abc\n"
        + "ENV ghi=$abc\n"
        + 'RUN echo "$def/$ghi/$B/$LEGACY" > /seen\n',
    )
    env = built.env()
    assert env["A"] == "1"
    assert env["B"] == "two words"
    assert env["C"] == "three words"
    assert env["LEGACY"] == "value with spaces"
    assert env["abc"] == "bye"
    assert env["def"] == "hello"
    assert env["ghi"] == "bye"
    root = built.rootfs(tmp_path / "root")
    assert (root / "seen").read_text() == "hello/bye/two words/value with spaces\n"
    # A redefined variable appears once, in the config's order of first definition.
    names = [e.split("=", 1)[0] for e in built.runtime()["Env"]]
    assert names.count("abc") == 1


def test_label_expose_volume_stopsignal_maintainer(tmp_path: Path) -> None:
    built = build(
        tmp_path,
        BASE
        + 'LABEL version="1.0" "multi word"="a b" \\\n      other=x\n'
        + "LABEL version=2.0\n"
        + "EXPOSE 80 443/udp 8080/tcp\n"
        + 'VOLUME ["/data", "/logs"]\n'
        + "VOLUME /cache /tmp/x\n"
        + "STOPSIGNAL SIGQUIT\n"
        + "MAINTAINER Jane Doe <jane@example.com>\n",
    )
    rc = built.runtime()
    assert rc["Labels"] == {"version": "2.0", "multi word": "a b", "other": "x"}
    assert rc["ExposedPorts"] == {"80/tcp": {}, "443/udp": {}, "8080/tcp": {}}
    assert rc["Volumes"] == {"/data": {}, "/logs": {}, "/cache": {}, "/tmp/x": {}}
    assert rc["StopSignal"] == "SIGQUIT"
    assert built.config()["author"] == "Jane Doe <jane@example.com>"


def test_labels_and_ports_are_inherited_from_the_base_image(tmp_path: Path) -> None:
    home = tmp_path / "farm-home"
    build(
        tmp_path,
        BASE + "LABEL a=base b=base\nEXPOSE 80\nENV FROM_BASE=1\nSTOPSIGNAL SIGINT\n",
        tags=["base:1"],
        context_name="parent",
    )
    built = build(
        tmp_path,
        "FROM base:1\nLABEL b=child\nEXPOSE 81\n",
        home=home,
        context_name="child",
    )
    rc = built.runtime()
    assert rc["Labels"] == {"a": "base", "b": "child"}
    assert rc["ExposedPorts"] == {"80/tcp": {}, "81/tcp": {}}
    assert built.env()["FROM_BASE"] == "1"
    assert rc["StopSignal"] == "SIGINT"


def test_user_by_name_through_the_image_passwd(tmp_path: Path) -> None:
    built = build(
        tmp_path,
        BASE
        + "RUN echo 'app:x:1000:1001::/home/app:/bin/sh' >> /etc/passwd && "
        + "echo 'app:x:1001:' >> /etc/group && echo 'extra:x:1002:app' >> /etc/group\n"
        + "USER app\n"
        + 'RUN echo "$(id -u) $(id -g) $(id -G)" > /tmp/ids && touch /tmp/mine\n',
    )
    assert built.runtime()["User"] == "app"
    root = built.rootfs(tmp_path / "root")
    uid, gid, groups = (root / "tmp/ids").read_text().split(" ", 2)
    assert (uid, gid) == ("1000", "1001")
    assert set(groups.split()) == {"1001", "1002"}
    st = (root / "tmp/mine").stat()
    assert (st.st_uid, st.st_gid) == (1000, 1001)


def test_user_numeric_uid_gid(tmp_path: Path) -> None:
    built = build(tmp_path, BASE + "USER 1234:5678\nRUN id -u; id -g\n")
    assert built.runtime()["User"] == "1234:5678"
    assert built.logs()[-2:] == ["1234", "5678"]


def test_user_unknown_name_fails_the_run(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="nosuchuser"):
        build(tmp_path, BASE + "USER nosuchuser\nRUN true\n")


def test_workdir_created_relative_and_used(tmp_path: Path) -> None:
    built = build(
        tmp_path,
        BASE
        + "WORKDIR /a\nWORKDIR b\nWORKDIR c\nRUN pwd > here\n"
        + "ENV DIRPATH=/path\nWORKDIR $DIRPATH/$DIRNAME\n",
    )
    assert built.runtime()["WorkingDir"] == "/path"
    root = built.rootfs(tmp_path / "root")
    assert (root / "a/b/c").is_dir()
    assert (root / "a/b/c/here").read_text() == "/a/b/c\n"
    assert (root / "path").is_dir()


def test_arg_visible_to_run_but_not_persisted(tmp_path: Path) -> None:
    built = build(
        tmp_path,
        BASE + 'ARG SECRET=default\nARG FROM_CLI\nRUN echo "$SECRET $FROM_CLI" > /args\n',
        build_args={"FROM_CLI": "given"},
    )
    root = built.rootfs(tmp_path / "root")
    assert (root / "args").read_text() == "default given\n"
    env = built.env()
    assert "SECRET" not in env and "FROM_CLI" not in env
    assert "TARGETARCH" not in env


def test_cmd_and_entrypoint_exec_and_shell_form(tmp_path: Path) -> None:
    exec_form = build(
        tmp_path, BASE + 'ENTRYPOINT ["/bin/echo", "hi"]\nCMD ["a", "b"]\n', context_name="e"
    )
    assert exec_form.runtime()["Entrypoint"] == ["/bin/echo", "hi"]
    assert exec_form.runtime()["Cmd"] == ["a", "b"]
    shell_form = build(
        tmp_path, BASE + "ENTRYPOINT exec top -b\nCMD echo $HOME\n", context_name="s"
    )
    assert shell_form.runtime()["Entrypoint"] == ["/bin/sh", "-c", "exec top -b"]
    assert shell_form.runtime()["Cmd"] == ["/bin/sh", "-c", "echo $HOME"]


def test_only_the_last_cmd_counts(tmp_path: Path) -> None:
    built = build(tmp_path, BASE + 'CMD ["first"]\nCMD ["second"]\n')
    assert built.runtime()["Cmd"] == ["second"]


def test_entrypoint_resets_an_inherited_cmd(tmp_path: Path) -> None:
    home = tmp_path / "farm-home"
    build(tmp_path, BASE + 'CMD ["base-cmd"]\n', tags=["base:1"], context_name="parent")
    child = build(tmp_path, 'FROM base:1\nENTRYPOINT ["/bin/ep"]\n', home=home, context_name="c1")
    assert child.runtime()["Entrypoint"] == ["/bin/ep"]
    assert "Cmd" not in child.runtime()
    # Without an ENTRYPOINT the CMD is inherited; a CMD after ENTRYPOINT is kept.
    keeps = build(tmp_path, "FROM base:1\nLABEL x=y\n", home=home, context_name="c2")
    assert keeps.runtime()["Cmd"] == ["base-cmd"]
    both = build(
        tmp_path, 'FROM base:1\nENTRYPOINT ["/bin/ep"]\nCMD ["arg"]\n', home=home, context_name="c3"
    )
    assert both.runtime()["Cmd"] == ["arg"]


def test_entrypoint_resets_cmd_of_a_parent_stage(tmp_path: Path) -> None:
    built = build(
        tmp_path,
        BASE.replace("FROM scratch", "FROM scratch AS base")
        + 'CMD ["base-cmd"]\nFROM base\nENTRYPOINT ["/bin/ep"]\n',
    )
    assert "Cmd" not in built.runtime()


def test_shell_is_used_by_later_run_and_shell_form_cmd(tmp_path: Path) -> None:
    myshell = '#!/bin/sh\necho "myshell $*" >> /shell.log\nshift\nexec /bin/sh -c "$@"\n'
    built = build(
        tmp_path,
        BASE
        + "RUN echo before\n"
        + "COPY --chmod=755 myshell /bin/myshell\n"
        + 'SHELL ["/bin/myshell", "-x"]\n'
        + "RUN echo after > /after\n"
        + "CMD run me\n",
        {"myshell": myshell},
    )
    root = built.rootfs(tmp_path / "root")
    assert (root / "shell.log").read_text() == "myshell -x echo after > /after\n"
    assert (root / "after").read_text() == "after\n"
    assert built.runtime()["Shell"] == ["/bin/myshell", "-x"]
    assert built.runtime()["Cmd"] == ["/bin/myshell", "-x", "run me"]


def test_healthcheck_durations_in_nanoseconds(tmp_path: Path) -> None:
    built = build(
        tmp_path,
        BASE
        + "HEALTHCHECK --interval=30s --timeout=1m30s --start-period=500ms "
        + "--start-interval=2s --retries=4 CMD wget -q -O- http://localhost/ || exit 1\n",
    )
    assert built.runtime()["Healthcheck"] == {
        "Test": ["CMD-SHELL", "wget -q -O- http://localhost/ || exit 1"],
        "Interval": 30_000_000_000,
        "Timeout": 90_000_000_000,
        "StartPeriod": 500_000_000,
        "StartInterval": 2_000_000_000,
        "Retries": 4,
    }
    exec_form = build(tmp_path, BASE + 'HEALTHCHECK CMD ["/bin/check", "x"]\n', context_name="e")
    assert exec_form.runtime()["Healthcheck"] == {"Test": ["CMD", "/bin/check", "x"]}


def test_healthcheck_none_disables_the_inherited_one(tmp_path: Path) -> None:
    home = tmp_path / "farm-home"
    build(tmp_path, BASE + "HEALTHCHECK CMD true\n", tags=["base:1"], context_name="parent")
    inherits = build(tmp_path, "FROM base:1\nLABEL a=b\n", home=home, context_name="c1")
    assert inherits.runtime()["Healthcheck"]["Test"] == ["CMD-SHELL", "true"]
    child = build(tmp_path, "FROM base:1\nHEALTHCHECK NONE\n", home=home, context_name="c2")
    assert child.runtime()["Healthcheck"] == {"Test": ["NONE"]}


def test_onbuild_is_stored_and_triggers_run_in_the_child(tmp_path: Path) -> None:
    home = tmp_path / "farm-home"
    parent = build(
        tmp_path,
        BASE + "ONBUILD RUN echo triggered > /onbuild\nONBUILD COPY payload /payload\n",
        tags=["parent:1"],
        context_name="parent",
    )
    assert parent.runtime()["OnBuild"] == [
        "RUN echo triggered > /onbuild",
        "COPY payload /payload",
    ]
    assert not (parent.rootfs(tmp_path / "parent-root") / "onbuild").exists()
    child = build(
        tmp_path,
        "FROM parent:1\nRUN cat /onbuild /payload > /both\n",
        {"payload": "from the child's context\n"},
        home=home,
        context_name="child",
    )
    root = child.rootfs(tmp_path / "child-root")
    assert (root / "both").read_text() == "triggered\nfrom the child's context\n"
    # Triggers run once: a grandchild does not inherit them.
    assert "OnBuild" not in child.runtime()


def test_history_matches_layers(tmp_path: Path) -> None:
    built = build(tmp_path, BASE + "ENV A=1\nRUN echo x > /x\nCOPY Dockerfile /\nLABEL l=1\n")
    config = built.config()
    history = config["history"]
    assert len([h for h in history if not h.get("empty_layer")]) == len(
        config["rootfs"]["diff_ids"]
    )
    assert len(config["rootfs"]["diff_ids"]) == len(built.layer_digests()) == 3
    by = [h["created_by"] for h in history]
    assert any(b.startswith("RUN /bin/sh -c echo x > /x") for b in by), by
    assert "ENV A=1" in by and "LABEL l=1" in by
    assert all(h.get("comment") == "buildkit.dockerfile.v0" for h in history)
    assert config["architecture"] == "amd64" and config["os"] == "linux"
    assert os.path.basename(str(built.context)) == "context"


def test_cmd_before_entrypoint_in_the_same_stage_is_kept(tmp_path: Path) -> None:
    built = build(tmp_path, BASE + 'CMD ["arg"]\nENTRYPOINT ["/bin/ep"]\n')
    assert built.runtime()["Cmd"] == ["arg"]
    assert built.runtime()["Entrypoint"] == ["/bin/ep"]


def test_user_env_and_workdir_carry_into_a_child_stage(tmp_path: Path) -> None:
    built = build(
        tmp_path,
        BASE.replace("FROM scratch", "FROM scratch AS base")
        + "ENV STAGE=base\nWORKDIR /srv\nUSER nobody\n"
        + 'FROM base\nRUN echo "$(id -u) $STAGE $(pwd)" > /tmp/seen\n',
    )
    assert (built.rootfs(tmp_path / "root") / "tmp/seen").read_text() == "65534 base /srv\n"
    assert built.runtime()["User"] == "nobody"
    assert built.runtime()["WorkingDir"] == "/srv"
