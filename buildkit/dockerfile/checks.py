"""Build checks: BuildKit's lint rules, with its names and its wording
(docs.docker.com/reference/build-checks/).

Static rules look at the whole file: StageNameCasing, FromAsCasing,
DuplicateStageName, ReservedStageName, ConsistentInstructionCasing,
MaintainerDeprecated, LegacyKeyValueFormat, UndefinedArgInFrom,
InvalidDefaultArgInFrom, NoEmptyContinuation, RedundantTargetPlatform,
FromPlatformFlagConstDisallowed. Rules that need the state of a
stage come from the planner, for the stages the build needs: UndefinedVar,
JSONArgsRecommended, MultipleInstructionsDisallowed, WorkdirRelativePath,
SecretsUsedInArgOrEnv.

`# check=skip=A,B;error=true` (or `skip=all`) is honoured: skipped rules are
not reported, and with error=true any warning fails the build.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from buildkit.dockerfile.args import evaluate_global_args, platform_args
from buildkit.dockerfile.buildplan import BuildOptions, CheckWarning
from buildkit.dockerfile.expand import Expansion, ExpansionError, expand_word
from buildkit.dockerfile.instructions import Dockerfile, Env, Instruction, Label, Maintainer
from buildkit.dockerfile.planner import plan_platform
from buildkit.dockerfile.steps import Finding
from buildkit.dockerfile.suggest import suggest
from buildkit.errors import DockerfileError, PlatformError, ReferenceFormatError
from buildkit.platforms import parse_platform
from buildkit.reference import parse_reference

_SLUGS = {
    "StageNameCasing": "stage-name-casing",
    "FromAsCasing": "from-as-casing",
    "NoEmptyContinuation": "no-empty-continuation",
    "ConsistentInstructionCasing": "consistent-instruction-casing",
    "DuplicateStageName": "duplicate-stage-name",
    "ReservedStageName": "reserved-stage-name",
    "JSONArgsRecommended": "json-args-recommended",
    "MaintainerDeprecated": "maintainer-deprecated",
    "UndefinedArgInFrom": "undefined-arg-in-from",
    "WorkdirRelativePath": "workdir-relative-path",
    "UndefinedVar": "undefined-var",
    "MultipleInstructionsDisallowed": "multiple-instructions-disallowed",
    "LegacyKeyValueFormat": "legacy-key-value-format",
    "SecretsUsedInArgOrEnv": "secrets-used-in-arg-or-env",
    "InvalidDefaultArgInFrom": "invalid-default-arg-in-from",
    "RedundantTargetPlatform": "redundant-target-platform",
    "FromPlatformFlagConstDisallowed": "from-platform-flag-const-disallowed",
}
RULES = tuple(_SLUGS)
_RESERVED_STAGE_NAMES = ("context", "scratch")
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


@dataclass(frozen=True)
class CheckConfig:
    skip: frozenset[str] = frozenset()
    skip_all: bool = False
    error: bool = False

    def wants(self, rule: str) -> bool:
        return not self.skip_all and rule not in self.skip


def parse_check_directive(df: Dockerfile) -> CheckConfig:
    """`# check=skip=A,B;error=true`, as BuildKit's linter reads it."""
    text = df.directives.check.strip()
    if not text:
        return CheckConfig()
    skip: set[str] = set()
    skip_all = error = False
    for part in text.split(";", 1):
        key, eq, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not eq:
            raise _directive_error(df, f'invalid check option "{part}"')
        if key == "skip":
            if value == "all":
                skip_all = True
            else:
                skip = {r.strip() for r in value.split(",")}
        elif key == "error":
            if value not in _TRUE + _FALSE:
                raise _directive_error(df, f'failed to parse check option "{part}"')
            error = value in _TRUE
        else:
            raise _directive_error(df, f'invalid check option "{key}"')
    return CheckConfig(frozenset(skip), skip_all, error)


def _directive_error(df: Dockerfile, message: str) -> DockerfileError:
    return DockerfileError(
        f"failed to parse check options: {message}", path=df.path, line=df.directives.check_line
    )


def warning(rule: str, line: int, message: str) -> CheckWarning:
    return CheckWarning(
        rule, line, message, f"https://docs.docker.com/go/dockerfile/rule/{_SLUGS.get(rule, '')}/"
    )


def run_checks(dockerfile: Dockerfile, options: BuildOptions) -> list[CheckWarning]:
    """Every warning for this build (all target platforms, without repeats)."""
    findings: list[Finding] = []
    for platform in options.platforms:
        findings.extend(plan_platform(dockerfile, options, platform).findings)
    return select(dockerfile, options, findings)


def select(
    dockerfile: Dockerfile, options: BuildOptions, findings: Iterable[Finding]
) -> list[CheckWarning]:
    """Static findings plus the planner's, deduplicated, sorted, skips removed."""
    config = parse_check_directive(dockerfile)
    everything = [*static_findings(dockerfile, options), *findings]
    unique = dict.fromkeys(everything)
    return [
        warning(rule, line, msg)
        for rule, line, msg in sorted(unique, key=lambda f: (f[1], f[0], f[2]))
        if config.wants(rule)
    ]


def enforce(dockerfile: Dockerfile, warnings: list[CheckWarning]) -> None:
    """With `# check=error=true`, any warning fails the build."""
    if not warnings or not parse_check_directive(dockerfile).error:
        return
    rules = ", ".join(sorted({w.rule for w in warnings}))
    lines = "\n".join(f"  {w}" for w in warnings)
    raise DockerfileError(
        f"lint violation found for rules: {rules}\n{lines}",
        path=dockerfile.path,
        line=warnings[0].line,
    )


# ---------------------------------------------------------------- static rules


def _written_keyword(inst: Instruction) -> str:
    words = inst.original.split(None, 1)
    return words[0] if words else inst.keyword


def static_findings(df: Dockerfile, options: BuildOptions) -> list[Finding]:
    out: list[Finding] = []
    out += _parser_warnings(df)
    out += _stage_names(df)
    out += _instruction_casing(df)
    for stage in df.stages:
        for inst in stage.instructions:
            if isinstance(inst, Maintainer):
                out.append(
                    (
                        "MaintainerDeprecated",
                        inst.line,
                        "Maintainer instruction is deprecated in favor of using label",
                    )
                )
            elif isinstance(inst, Env | Label) and _legacy_key_value(inst):
                name = _written_keyword(inst)
                out.append(
                    (
                        "LegacyKeyValueFormat",
                        inst.line,
                        f'"{name} key=value" should be used instead of legacy "{name} key value" '
                        "format",
                    )
                )
    out += _from_args(df, options)
    return out


def _parser_warnings(df: Dockerfile) -> list[Finding]:
    return [
        ("NoEmptyContinuation", line, "Empty continuation line")
        for line, message in df.warnings
        if "continuation" in message.lower()
    ]


def _stage_names(df: Dockerfile) -> list[Finding]:
    out: list[Finding] = []
    seen: set[str] = set()
    for stage in df.stages:
        frm = stage.from_
        name = frm.name
        if not name:
            continue
        if name != name.lower():
            out.append(("StageNameCasing", frm.line, f"Stage name '{name}' should be lowercase"))
        words = [w for w in frm.original.split() if not w.startswith("--")]
        if len(words) >= 4 and words[-2].lower() == "as":
            from_word, as_word = words[0], words[-2]
            if from_word in (from_word.lower(), from_word.upper()):
                want = as_word.lower() if from_word == from_word.lower() else as_word.upper()
                if as_word != want:
                    out.append(
                        (
                            "FromAsCasing",
                            frm.line,
                            f"'{as_word}' and '{from_word}' keywords' casing do not match",
                        )
                    )
        lower = name.lower()
        if lower in _RESERVED_STAGE_NAMES:
            out.append(
                (
                    "ReservedStageName",
                    frm.line,
                    f'Stage name should not use the same name as reserved stage "{lower}"',
                )
            )
        if lower in seen:
            out.append(
                (
                    "DuplicateStageName",
                    frm.line,
                    f'Duplicate stage name "{lower}", stage names should be unique',
                )
            )
        seen.add(lower)
    return out


def _instruction_casing(df: Dockerfile) -> list[Finding]:
    insts = [i for s in df.stages for i in (s.from_, *s.instructions)]
    names = [(_written_keyword(i), i.line) for i in insts]
    lower = sum(1 for n, _ in names if n == n.lower())
    upper = sum(1 for n, _ in names if n == n.upper() and n != n.lower())
    majority_lower = lower > upper
    out: list[Finding] = []
    for name, line in names:
        if majority_lower and name != name.lower():
            casing = "lowercase"
        elif not majority_lower and name != name.upper():
            casing = "uppercase"
        else:
            continue
        out.append(
            (
                "ConsistentInstructionCasing",
                line,
                f"Command '{name}' should match the case of the command majority ({casing})",
            )
        )
    return out


def _legacy_key_value(inst: Env | Label) -> bool:
    words = inst.original.split(None, 1)
    rest = words[1] if len(words) > 1 else ""
    first = rest.split(None, 1)[0] if rest.strip() else ""
    return bool(first) and "=" not in first


def _platform_flag(
    line: int, stage: str, word: str, exp: Expansion, values: Mapping[str, str]
) -> list[Finding]:
    """RedundantTargetPlatform and FromPlatformFlagConstDisallowed."""
    if exp.matched == {"TARGETPLATFORM"} and not exp.unmatched:
        if exp.value == values.get("TARGETPLATFORM"):
            return [
                (
                    "RedundantTargetPlatform",
                    line,
                    f"Setting platform to predefined {word} in FROM is redundant as this is the "
                    "default behavior",
                )
            ]
        return []
    if exp.matched or exp.unmatched:
        return []
    try:
        plat = parse_platform(exp.value)
    except PlatformError:
        return []
    if plat.os in stage or plat.architecture in stage:
        return []
    return [
        (
            "FromPlatformFlagConstDisallowed",
            line,
            f'FROM --platform flag should not use constant value "{exp.value}"',
        )
    ]


def _from_args(df: Dockerfile, options: BuildOptions) -> list[Finding]:
    """UndefinedArgInFrom and InvalidDefaultArgInFrom."""
    platform = options.platforms[0]
    target_name = options.target or (df.stages[-1].name if df.stages else "")
    predefined = platform_args(platform, options.build_platform, target_name, options.build_args)
    escape = df.directives.escape
    out: list[Finding] = []
    try:
        scope = evaluate_global_args(df, predefined, options.build_args)
        defaults = evaluate_global_args(
            df, platform_args(platform, options.build_platform, target_name, {}), {}
        )
    except DockerfileError:
        return out  # the plan reports it
    known = set(scope.values) | {a.name for a in scope.args}
    for stage in df.stages:
        frm = stage.from_
        unmatched: set[str] = set()
        for word in (frm.image, frm.platform):
            if not word:
                continue
            try:
                exp = expand_word(word, scope.values, escape=escape)
            except ExpansionError:
                return out
            unmatched |= exp.unmatched
            if word == frm.platform:
                out += _platform_flag(frm.line, frm.name, word, exp, scope.values)
        for name in sorted(unmatched - known):
            text = f"FROM argument '{name}' is not declared"
            hint = suggest(name, sorted(known))
            if hint:
                text += f" (did you mean {hint}?)"
            out.append(("UndefinedArgInFrom", frm.line, text))
        try:
            base = expand_word(frm.image, defaults.values, escape=escape).value
            parse_reference(base)
        except (ExpansionError, ReferenceFormatError):
            out.append(
                (
                    "InvalidDefaultArgInFrom",
                    frm.line,
                    f"Default value for ARG {frm.image} results in empty or invalid base image "
                    "name",
                )
            )
    return out
