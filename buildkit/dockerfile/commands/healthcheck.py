"""The parser of HEALTHCHECK: its flags, its durations and retries.

`HEALTHCHECK NONE`, or `HEALTHCHECK [--interval=...] CMD ...` in shell or exec
form, with each duration checked as Docker checks it (a Go duration, at least
1ms unless 0) and `--retries` a non-negative whole number.
"""

from __future__ import annotations

import re

from buildkit.dockerfile.commands.request import _Request, _str
from buildkit.dockerfile.durations import parse_go_duration
from buildkit.dockerfile.flags import FlagSpec
from buildkit.dockerfile.instructions import Healthcheck
from buildkit.dockerfile.syntax import split_first_word

_MIN_DURATION_NS = 1_000_000  # Docker's container.MinimumDuration, 1ms
HEALTHCHECK_FLAGS = (
    FlagSpec("interval", "string"),
    FlagSpec("timeout", "string"),
    FlagSpec("start-period", "string"),
    FlagSpec("start-interval", "string", stable_since=(1, 6)),
    FlagSpec("retries", "string"),
)


def parse_healthcheck(req: _Request) -> Healthcheck:
    kind, rest = split_first_word(req.node.args)
    kind = kind.upper()
    if kind == "":
        raise req.at_least_one()
    if kind == "NONE":
        # As BuildKit: flags are not looked at for NONE.
        if rest:
            raise req.error("HEALTHCHECK NONE takes no arguments")
        return Healthcheck(**req.base(), test=("NONE",))
    flags = req.flags(*HEALTHCHECK_FLAGS)
    if kind != "CMD":
        raise req.error(f"Unknown type {kind!r} in HEALTHCHECK (try CMD or NONE)")
    if req.node.json is not None:
        test: tuple[str, ...] = ("CMD", *req.node.json)
    else:
        test = ("CMD-SHELL", rest)
    if len(test) == 1 or test == ("CMD-SHELL", ""):
        raise req.error("Missing command after HEALTHCHECK CMD")
    durations: dict[str, str] = {}
    for name in ("interval", "timeout", "start-period", "start-interval"):
        value = _str(flags, name)
        if value:
            _check_duration(req, name, value)
        durations[name.replace("-", "_")] = value
    retries = _str(flags, "retries")
    if retries:
        if not re.fullmatch(r"[+-]?[0-9]{1,10}", retries) or abs(int(retries)) > 2**31 - 1:
            raise req.error(f"--retries must be a whole number, not {retries!r}")
        if int(retries) < 0:
            raise req.error(f"--retries cannot be negative ({int(retries)})")
    return Healthcheck(
        **req.base(),
        test=test,
        interval=durations["interval"],
        timeout=durations["timeout"],
        start_period=durations["start_period"],
        start_interval=durations["start_interval"],
        retries=retries,
    )


def _check_duration(req: _Request, name: str, value: str) -> None:
    try:
        nanoseconds = parse_go_duration(value)
    except ValueError as exc:
        raise req.error(
            f"invalid --{name} {value!r}: expected a duration such as 30s, 1m30s or 500ms "
            f"(units ns, us, ms, s, m, h): {exc}"
        ) from None
    if nanoseconds != 0 and nanoseconds < _MIN_DURATION_NS:
        raise req.error(f"--{name} cannot be less than 1ms (got {value!r})")
