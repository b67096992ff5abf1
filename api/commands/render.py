"""Text for `farm build --call targets|outline|check|plan`, laid out as buildx does."""

from __future__ import annotations

from collections.abc import Mapping

from buildkit.dockerfile.buildplan import BuildOptions, ImageResolver
from buildkit.dockerfile.instructions import Dockerfile
from buildkit.platforms import Platform


def build_options(
    targets: tuple[Platform, ...],
    host: Platform,
    target: str,
    args: Mapping[str, str],
    resolve_image: ImageResolver | None = None,
) -> BuildOptions:
    return BuildOptions(
        target_platforms=targets,
        build_platform=host,
        target=target,
        build_args=args,
        resolve_image=resolve_image,
    )


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join(lines)


def targets(df: Dockerfile) -> str:
    from buildkit.dockerfile.calls import list_targets

    rows = []
    for t in list_targets(df):
        if not t.name and not t.default:
            continue  # buildx lists named stages and the default one
        name = (t.name or f"stage-{t.index}") + (" (default)" if t.default else "")
        rows.append((name, t.description))
    return _table(("TARGET", "DESCRIPTION"), rows)


def outline(df: Dockerfile, options: BuildOptions) -> str:
    from buildkit.dockerfile.calls import list_targets
    from buildkit.dockerfile.calls import outline as get_outline

    data = get_outline(df, options)
    described = {t.name.lower(): t.description for t in list_targets(df) if t.name}
    out = [f"TARGET:      {data.target or '(default)'}"]
    if described.get(data.target.lower()):
        out.append(f"DESCRIPTION: {described[data.target.lower()]}")
    out.append("")
    rows = [
        (a.name, a.value if a.value is not None else "<null>", a.description) for a in data.args
    ]
    out.append(_table(("BUILD ARG", "VALUE", "DESCRIPTION"), rows))
    if data.secrets:
        out += [
            "",
            _table(
                ("SECRET", "REQUIRED"), [(s.id, "true" if s.required else "") for s in data.secrets]
            ),
        ]
    if data.ssh:
        out += [
            "",
            _table(("SSH", "REQUIRED"), [(s.id, "true" if s.required else "") for s in data.ssh]),
        ]
    return "\n".join(out)


def check(df: Dockerfile, options: BuildOptions) -> tuple[str, bool]:
    """The warnings as buildx prints them, and whether there were any."""
    from buildkit.dockerfile.checks import run_checks

    warnings = run_checks(df, options)
    if not warnings:
        return "Check complete, no warnings found.", False
    blocks = [
        f"Check complete, {len(warnings)} warning{'s' if len(warnings) > 1 else ''} have been found!"
    ]
    for w in warnings:
        blocks.append(f"\nWARNING: {w.rule} - {w.url}\n{w.message}\n{df.path}:{w.line}")
    return "\n".join(blocks), True


def plan(df: Dockerfile, options: BuildOptions) -> str:
    from buildkit.dockerfile.plan import describe, plan_build

    return describe(plan_build(df, options))
