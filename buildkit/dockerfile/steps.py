"""One stage's steps: each instruction with its words expanded, and the state
it runs in; the image config the stage ends with.

Expansion follows BuildKit: ENV, LABEL (keys and values), EXPOSE, VOLUME,
USER, WORKDIR, STOPSIGNAL, COPY/ADD (sources, destination, --chown, --chmod,
ADD --checksum, inline files with an unquoted heredoc delimiter) and the
options of `RUN --mount` are expanded; RUN, CMD, ENTRYPOINT, SHELL,
HEALTHCHECK and ONBUILD are left for the shell or for later. All words of
one instruction expand with the environment from before it, so
`ENV A=1 B=$A` gives B the old A.

Validation after expansion, as BuildKit's dispatch does: STOPSIGNAL must be a
Linux signal name (any case, with or without SIG) or a number 1..64 (moby's
ParseSignal takes any non-zero integer; Farm keeps to Linux's signals);
EXPOSE ports must be `PORT[-PORT][/tcp|udp|sctp]` with every port in
1..65535 and ranges ascending.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping
from dataclasses import replace

from buildkit.dockerfile.args import NON_ENV_ARGS, expand, quote
from buildkit.dockerfile.buildplan import (
    DEFAULT_SHELL,
    Healthcheck,
    Step,
)
from buildkit.dockerfile.expand import ExpansionError, expand_heredoc, expand_words
from buildkit.dockerfile.instructions import (
    Add,
    Arg,
    ArgDecl,
    Cmd,
    CopyBase,
    Dockerfile,
    Entrypoint,
    Env,
    Expose,
    Instruction,
    KeyValue,
    Label,
    Maintainer,
    Mount,
    Onbuild,
    Run,
    Shell,
    StopSignal,
    User,
    Volume,
    Workdir,
)
from buildkit.dockerfile.instructions import (
    Healthcheck as HealthcheckInst,
)
from buildkit.dockerfile.state import StageState
from buildkit.dockerfile.suggest import looks_secret, undefined_var_message
from buildkit.dockerfile.syntax import Heredoc
from buildkit.errors import DockerfileError
from buildkit.platforms import Platform

# (rule, line, message) findings made while dispatching, for checks.py.
Finding = tuple[str, int, str]


class StageWalker:
    """Expands and applies one stage's instructions, collecting findings."""

    def __init__(
        self,
        df: Dockerfile,
        state: StageState,
        *,
        global_values: Mapping[str, str],
        build_args: Mapping[str, str],
        platform: Platform,
    ) -> None:
        self.df = df
        self.state = state
        self.global_values = global_values
        self.build_args = build_args
        self.platform = platform
        self.findings: list[Finding] = []
        self.arg_lines: dict[str, tuple[ArgDecl, Arg, str | None]] = {}
        self.inherited_global: set[str] = set()

    # ------------------------------------------------------------ expansion

    def _word(self, word: str, inst: Instruction, *, report: bool = True) -> str:
        exp = expand(
            word,
            self.state.environ,
            escape=self.df.directives.escape,
            path=self.df.path,
            line=inst.line,
            keyword=inst.keyword,
        )
        if report:
            self._report(exp.unmatched, inst)
        return exp.value

    def _report(self, unmatched: frozenset[str], inst: Instruction) -> None:
        for name in sorted(unmatched - self.state.declared - NON_ENV_ARGS):
            self.findings.append(
                ("UndefinedVar", inst.line, undefined_var_message(name, self.state.environ))
            )

    def _split(self, word: str, inst: Instruction) -> list[str]:
        try:
            words, exp = expand_words(word, self.state.environ, escape=self.df.directives.escape)
        except ExpansionError as exc:
            raise DockerfileError(
                f"failed to process {quote(exc.word or word)}: {exc.message}",
                path=self.df.path,
                line=inst.line,
                instruction=inst.keyword,
            ) from exc
        self._report(exp.unmatched, inst)
        return words

    def _check(self, message: str | None, inst: Instruction) -> None:
        if message is not None:
            raise DockerfileError(
                message, path=self.df.path, line=inst.line, instruction=inst.keyword
            )

    def _words(self, words: tuple[str, ...], inst: Instruction) -> tuple[str, ...]:
        return tuple(self._word(w, inst) for w in words)

    def _pairs(self, pairs: tuple[KeyValue, ...], inst: Instruction) -> tuple[KeyValue, ...]:
        return tuple(
            KeyValue(key=self._word(kv.key, inst), value=self._word(kv.value, inst)) for kv in pairs
        )

    def expand(self, inst: Instruction) -> Instruction:
        """The instruction with its words expanded (ARG excepted: see apply)."""
        if isinstance(inst, Env | Label):
            return replace(inst, pairs=self._pairs(inst.pairs, inst))
        if isinstance(inst, Expose):
            ports = tuple(p for w in inst.ports for p in self._split(w, inst))
            for port in ports:
                self._check(port_error(port), inst)
            return replace(inst, ports=ports)
        if isinstance(inst, Volume):
            return replace(inst, paths=self._words(inst.paths, inst))
        if isinstance(inst, User):
            return replace(inst, user=self._word(inst.user, inst))
        if isinstance(inst, Workdir):
            return replace(inst, path=self._word(inst.path, inst))
        if isinstance(inst, StopSignal):
            signal = self._word(inst.signal, inst)
            self._check(signal_error(signal), inst)
            return replace(inst, signal=signal)
        if isinstance(inst, CopyBase):
            return self._expand_copy(inst)
        if isinstance(inst, Run) and inst.mounts:
            return replace(inst, mounts=tuple(self._mount(m, inst) for m in inst.mounts))
        return inst

    def _expand_copy(self, inst: CopyBase) -> Instruction:
        changes: dict[str, object] = {
            "sources": self._words(inst.sources, inst),
            "dest": self._word(inst.dest, inst),
            "chown": self._word(inst.chown, inst),
            "chmod": self._word(inst.chmod, inst),
            "heredocs": tuple(self._heredoc(h, inst) for h in inst.heredocs),
        }
        if isinstance(inst, Add):
            changes["checksum"] = self._word(inst.checksum, inst)
        return replace(inst, **changes)  # type: ignore[arg-type]

    def _heredoc(self, doc: Heredoc, inst: Instruction) -> Heredoc:
        if not doc.expand:
            return doc
        try:
            exp = expand_heredoc(doc.content, self.state.environ, escape=self.df.directives.escape)
        except ExpansionError as exc:
            raise DockerfileError(
                f"failed to process heredoc {doc.name}: {exc.message}",
                path=self.df.path,
                line=inst.line,
                instruction=inst.keyword,
            ) from exc
        return replace(doc, content=exp.value)

    def _mount(self, mount: Mount, inst: Instruction) -> Mount:
        options = tuple(
            KeyValue(key=kv.key, value=self._word(kv.value, inst, report=False))
            for kv in mount.options
        )
        return replace(mount, options=options)

    # ------------------------------------------------------------ effects

    def step(self, inst: Instruction, *, onbuild: bool = False) -> Step:
        before = self.state.snapshot()
        if isinstance(inst, Arg):
            done: Instruction = self._arg(inst)
        else:
            done = self.expand(inst)
            self._apply(done)
        return Step(instruction=done, state=before, onbuild=onbuild)

    def _arg(self, inst: Arg) -> Arg:
        st = self.state
        decls = []
        for decl in inst.args:
            self._secret_check("ARG", decl.name, inst.line)
            value: str | None = None
            if decl.name in self.build_args:
                value = self.build_args[decl.name]
            elif decl.default is not None:
                value = self._word(decl.default, inst)
            elif decl.name in self.global_values:
                value = self.global_values[decl.name]
                self.inherited_global.add(decl.name)
            if value is not None:
                if decl.name not in NON_ENV_ARGS:
                    st.environ[decl.name] = value
                st.args[decl.name] = value
            st.declared.add(decl.name)
            self.arg_lines[decl.name] = (decl, inst, value)
            decls.append(ArgDecl(name=decl.name, default=value))
        return replace(inst, args=tuple(decls))

    def _apply(self, inst: Instruction) -> None:
        st = self.state
        handler = _HANDLERS.get(type(inst))
        if handler is not None:
            handler(self, inst)
        elif isinstance(inst, Maintainer):
            st.author = inst.name

    def _env(self, inst: Env) -> None:
        for kv in inst.pairs:
            self._secret_check("ENV", kv.key, inst.line)
            self.state.env[kv.key] = kv.value
            self.state.environ[kv.key] = kv.value

    def _label(self, inst: Label) -> None:
        for kv in inst.pairs:
            self.state.labels[kv.key] = kv.value

    def _expose(self, inst: Expose) -> None:
        for port in inst.ports:
            number, _, proto = port.partition("/")
            self.state.ports[f"{number}/{(proto or 'tcp').lower()}"] = None

    def _volume(self, inst: Volume) -> None:
        for path in inst.paths:
            self.state.volumes[path] = None

    def _user(self, inst: User) -> None:
        self.state.user = inst.user

    def _workdir(self, inst: Workdir) -> None:
        st = self.state
        if not st.workdir_set and not inst.path.startswith("/"):
            self.findings.append(
                (
                    "WorkdirRelativePath",
                    inst.line,
                    f'Relative workdir "{inst.path}" can have unexpected results if the '
                    "base image changes",
                )
            )
        st.workdir_set = True
        st.workdir = _join_workdir(st.workdir, inst.path)

    def _stop_signal(self, inst: StopSignal) -> None:
        self.state.stop_signal = inst.signal

    def _shell(self, inst: Shell) -> None:
        self.state.shell = inst.shell

    def _once(self, inst: Instruction) -> None:
        key = inst.keyword
        if key in self.state.used:
            self.findings.append(
                (
                    "MultipleInstructionsDisallowed",
                    self.state.used[key],
                    f"Multiple {key} instructions should not be used in the same stage "
                    "because only the last one will be used",
                )
            )
        self.state.used[key] = inst.line

    def _command(self, inst: Cmd | Entrypoint) -> tuple[str, ...]:
        self._once(inst)
        if not inst.shell:
            return inst.command
        if not self.state.shell:
            self.findings.append(
                (
                    "JSONArgsRecommended",
                    inst.line,
                    f"JSON arguments recommended for {inst.keyword} to prevent unintended "
                    "behavior related to OS signals",
                )
            )
        return (*(self.state.shell or DEFAULT_SHELL), " ".join(inst.command))

    def _cmd(self, inst: Cmd) -> None:
        self.state.cmd = self._command(inst)

    def _entrypoint(self, inst: Entrypoint) -> None:
        self.state.entrypoint = self._command(inst)
        if "CMD" not in self.state.used:
            self.state.cmd = None

    def _healthcheck(self, inst: HealthcheckInst) -> None:
        self._once(inst)
        self.state.healthcheck = Healthcheck(
            test=inst.test,
            interval=inst.interval,
            timeout=inst.timeout,
            start_period=inst.start_period,
            start_interval=inst.start_interval,
            retries=inst.retries,
        )

    def _onbuild(self, inst: Onbuild) -> None:
        self.state.on_build.append(inst.expression)

    def _secret_check(self, keyword: str, key: str, line: int) -> None:
        if looks_secret(key):
            self.findings.append(
                (
                    "SecretsUsedInArgOrEnv",
                    line,
                    f'Do not use ARG or ENV instructions for sensitive data ({keyword} "{key}")',
                )
            )


_HANDLERS: dict[type, Callable[[StageWalker, Instruction], None]] = {
    Env: StageWalker._env,  # type: ignore[dict-item]
    Label: StageWalker._label,  # type: ignore[dict-item]
    Expose: StageWalker._expose,  # type: ignore[dict-item]
    Volume: StageWalker._volume,  # type: ignore[dict-item]
    User: StageWalker._user,  # type: ignore[dict-item]
    Workdir: StageWalker._workdir,  # type: ignore[dict-item]
    StopSignal: StageWalker._stop_signal,  # type: ignore[dict-item]
    Shell: StageWalker._shell,  # type: ignore[dict-item]
    Cmd: StageWalker._cmd,  # type: ignore[dict-item]
    Entrypoint: StageWalker._entrypoint,  # type: ignore[dict-item]
    HealthcheckInst: StageWalker._healthcheck,  # type: ignore[dict-item]
    Onbuild: StageWalker._onbuild,  # type: ignore[dict-item]
}


# Linux signal names without SIG (moby/sys/signal's SignalMap for linux).
SIGNALS = frozenset(
    {
        *[
            "ABRT",
            "ALRM",
            "BUS",
            "CHLD",
            "CLD",
            "CONT",
            "FPE",
            "HUP",
            "ILL",
            "INT",
            "IO",
            "IOT",
            "KILL",
            "PIPE",
            "POLL",
            "PROF",
            "PWR",
        ],
        *[
            "QUIT",
            "SEGV",
            "STKFLT",
            "STOP",
            "SYS",
            "TERM",
            "TRAP",
            "TSTP",
            "TTIN",
            "TTOU",
            "URG",
            "USR1",
            "USR2",
            "VTALRM",
        ],
        *["WINCH", "XCPU", "XFSZ", "RTMIN", "RTMAX"],
        *(f"RTMIN+{i}" for i in range(1, 16)),
        *(f"RTMAX-{i}" for i in range(1, 15)),
    }
)
MAX_SIGNAL = 64
PORT_PROTOCOLS = ("tcp", "udp", "sctp")


def signal_error(signal: str) -> str | None:
    """Why `signal` is no valid STOPSIGNAL, or None when it is."""
    if signal.isascii() and signal.isdigit():
        return None if 1 <= int(signal) <= MAX_SIGNAL else f"Invalid signal: {signal}"
    name = signal.upper()
    if name.startswith("SIG"):
        name = name[3:]
    return None if name in SIGNALS else f"Invalid signal: {signal}"


def port_error(spec: str) -> str | None:
    """Why `spec` is no valid EXPOSE port (`80`, `53/udp`, `8000-8010/tcp`)."""
    ports, _, proto = spec.partition("/")
    if proto and proto.lower() not in PORT_PROTOCOLS:
        return f"invalid proto: {proto}"
    start, dash, end = ports.partition("-")
    numbers = []
    for part in (start, end) if dash else (start,):
        if not (part.isascii() and part.isdigit()) or not 1 <= int(part) <= 65535:
            return f"invalid containerPort: {ports}"
        numbers.append(int(part))
    if numbers[-1] < numbers[0]:
        return f"invalid range specified for containerPort: {ports}"
    return None


def _join_workdir(current: str, path: str) -> str:
    joined = posixpath.join(current or "/", path)
    return "/" + posixpath.normpath(joined).lstrip("/")
