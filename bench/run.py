#!/usr/bin/env python3
"""Farm vs buildah: cold, warm and incremental multi-platform builds, export, size.

    sudo .venv/bin/python bench/run.py [--cases hello,multistage,debian,bigfiles]
        [--repeat N] [--skip-buildah] [--output-md FILE]

Everything runs sequentially, one tool at a time, each with its own storage
(Farm: FARM_HOME; buildah: --root/--runroot) that is wiped before every cold
build. Times are wall-clock (time.monotonic) around the subprocess. A tool
or case that fails shows FAIL and the tail of its error in the table; the
benchmark goes on with the next one. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cases as C
from common import Run, failed_cell, machine, markdown, run, timing_cell, wipe

REPO = C.REPO
PLATFORMS = "linux/amd64,linux/arm64"
PHASES = ("cold", "warm", "changed", "export")
FS_STEPS = ("RUN", "COPY", "ADD")  # the steps counted as run or cached
NETWORK_ERRORS = re.compile(
    r"Temporary failure resolving|Could not resolve|Failed to fetch|Unable to locate package"
    r"|Network is unreachable|Unable to connect|Connection refused|Could not connect"
    r"|slirp4netns|No route to host",
    re.IGNORECASE,
)


# ------------------------------------------------------------ OCI archives


def oci_archive_size(path: Path) -> tuple[int, dict[str, int], set[str]]:
    """Sum of the layer blob sizes of every platform manifest in an OCI archive.

    Returns (total, {platform: size, "distinct blobs": size}, layer media types)."""
    with tarfile.open(path) as tar:

        def blob(digest: str) -> dict:
            algo, hexa = digest.split(":", 1)
            f = tar.extractfile(f"blobs/{algo}/{hexa}")
            assert f is not None
            return json.load(f)

        index_file = tar.extractfile("index.json")
        assert index_file is not None
        index = json.load(index_file)
        per_platform: dict[str, int] = {}
        media: set[str] = set()
        unique: set[tuple[str, int]] = set()

        def walk(descriptors: list[dict]) -> None:
            for d in descriptors:
                doc = blob(d["digest"])
                if "manifests" in doc:
                    walk(doc["manifests"])
                    continue
                p = d.get("platform") or {}
                name = "/".join(
                    x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x
                )
                if name in ("", "unknown/unknown"):
                    config = blob(doc["config"]["digest"])
                    name = f"{config.get('os', '?')}/{config.get('architecture', '?')}"
                if "unknown" in name:  # attestation manifests
                    continue
                size = sum(layer["size"] for layer in doc.get("layers", []))
                unique.update((layer["digest"], layer["size"]) for layer in doc.get("layers", []))
                media.update(layer["mediaType"] for layer in doc.get("layers", []))
                per_platform[name] = per_platform.get(name, 0) + size

        walk(index["manifests"])
    per_platform["distinct blobs"] = sum(size for _, size in unique)
    return sum(v for k, v in per_platform.items() if "/" in k), per_platform, media


# ------------------------------------------------------------ tools


class Tool:
    name = ""
    note = ""

    def reset(self) -> None:
        raise NotImplementedError

    def build(self, case: C.Case, ctx: Path, image: str, log_to: Path) -> Run:
        raise NotImplementedError

    def export(self, case: C.Case, ctx: Path, image: str, dest: Path, log_to: Path) -> Run:
        raise NotImplementedError

    def steps(self, result: Run) -> tuple[int, int]:
        """(steps executed, steps from the cache) as the tool's output tells."""
        return (0, 0)

    def cleanup(self) -> None:
        self.reset()


class Farm(Tool):
    name = "farm"

    def __init__(self, base: Path, command: list[str]) -> None:
        self.base = base
        self.home = base / "home"
        self.command = command
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
        self.env["FARM_HOME"] = str(self.home)
        self.note = f"`{shlex.join(command)} build --progress rawjson`, FARM_HOME={self.home}"

    def reset(self) -> None:
        wipe(self.base)
        self.home.mkdir(parents=True)

    def _argv(self, ctx: Path, image: str, extra: list[str]) -> list[str]:
        return [
            *self.command, "build", "--progress", "rawjson", "--platform", PLATFORMS,
            "-t", f"{image}:bench", *extra, str(ctx),
        ]  # fmt: skip

    def build(self, case: C.Case, ctx: Path, image: str, log_to: Path) -> Run:
        return run(self._argv(ctx, image, []), env=self.env, timeout=case.timeout, log_to=log_to)

    def export(self, case: C.Case, ctx: Path, image: str, dest: Path, log_to: Path) -> Run:
        # Farm has no separate export command: a build with an OCI output
        # (steps come from the cache once it is wired in) writes the archive.
        argv = self._argv(ctx, image, ["-o", f"type=oci,dest={dest}"])
        return run(argv, env=self.env, timeout=case.timeout, log_to=log_to)

    @staticmethod
    def events(result: Run) -> list[dict]:
        out = []
        for line in result.stderr.splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out

    def steps(self, result: Run) -> tuple[int, int]:
        ran = cached = 0
        for e in self.events(result):
            if str(e.get("name", "")).split(" ", 1)[0].upper() in FS_STEPS:
                ran += e.get("kind") == "step.done"
                cached += e.get("kind") == "step.cached"
        return ran, cached

    def tail_after_steps(self, result: Run) -> float | None:
        """Seconds between the last step event and the end of the process: the
        image and output writing (and interpreter exit)."""
        times = [e["time"] for e in self.events(result) if e.get("kind", "").startswith("step.")]
        return result.end_wall - max(times) if times else None


class Buildah(Tool):
    name = "buildah"

    def __init__(self, base: Path, driver: str) -> None:
        self.base = base
        self.driver = driver
        self.exe = shutil.which("buildah") or "buildah"
        self.argv = [
            self.exe, "--root", str(base / "root"), "--runroot", str(base / "runroot"),
            "--storage-driver", driver,
        ]  # fmt: skip
        self.env = dict(os.environ)
        self.note = f"`buildah --storage-driver {driver} bud --isolation chroot --layers`"

    def reset(self) -> None:
        if (self.base / "root").exists():
            for args in (["rm", "--all"], ["rmi", "--all", "--force"]):
                subprocess.run([*self.argv, *args], capture_output=True, timeout=300)
        wipe(self.base)
        self.base.mkdir(parents=True)

    def build(self, case: C.Case, ctx: Path, image: str, log_to: Path) -> Run:
        # --manifest adds to an existing list: drop the list (not the images,
        # not the layer cache) so each build makes a fresh two-entry list.
        subprocess.run(
            [*self.argv, "manifest", "rm", image], capture_output=True, timeout=120
        )  # untimed
        argv = [
            *self.argv, "bud", "--isolation", "chroot", "--layers", "--platform", PLATFORMS,
            "--manifest", image, "-f", str(ctx / "Dockerfile"), str(ctx),
        ]  # fmt: skip
        return run(argv, env=self.env, cwd=ctx, timeout=case.timeout, log_to=log_to)

    def export(self, case: C.Case, ctx: Path, image: str, dest: Path, log_to: Path) -> Run:
        argv = [*self.argv, "manifest", "push", "--all", image, f"oci-archive:{dest}"]
        return run(argv, env=self.env, timeout=case.timeout, log_to=log_to)

    def steps(self, result: Run) -> tuple[int, int]:
        ran = cached = 0
        current = ""  # the instruction of the STEP being read
        hit = False

        def close() -> None:
            nonlocal ran, cached
            if current in FS_STEPS:
                cached += hit
                ran += not hit

        for line in (result.stdout + "\n" + result.stderr).splitlines():
            m = re.search(r"STEP \d+/\d+: (\S+)", line)
            if m:
                close()
                current, hit = m.group(1).upper(), False
            elif "Using cache" in line:
                hit = True
        close()
        return ran, cached


def pick_buildah_driver(base: Path, wanted: str) -> tuple[str, str]:
    """overlay if it works here (a scratch container, a copy, a commit), else vfs."""
    if wanted != "auto":
        return wanted, f"{wanted} (as asked)"
    probe = base / "probe"
    wipe(probe)
    probe.mkdir(parents=True)
    (probe / "file").write_text("probe\n")
    argv = [
        shutil.which("buildah") or "buildah", "--root", str(probe / "root"),
        "--runroot", str(probe / "runroot"), "--storage-driver", "overlay",
    ]  # fmt: skip
    reason = ""
    try:
        made = run([*argv, "from", "scratch"], timeout=120)
        if made.ok:
            cid = made.stdout.strip().splitlines()[-1]
            copied = run([*argv, "copy", cid, str(probe / "file"), "/file"], timeout=120)
            committed = run([*argv, "commit", cid, "probe"], timeout=120) if copied.ok else copied
            if committed.ok:
                return "overlay", "overlay (probe: from/copy/commit worked)"
            reason = committed.short_error()
        else:
            reason = made.short_error()
    finally:
        for args in (["rm", "--all"], ["rmi", "--all", "--force"]):
            subprocess.run([*argv, *args], capture_output=True, timeout=120)
        wipe(probe)
    return "vfs", f"vfs (overlay failed: {reason})"


# ------------------------------------------------------------ measurements


@dataclass
class Cell:
    times: list[float] = field(default_factory=list)
    error: str = ""
    error_tail: str = ""
    skipped: str = ""

    def text(self) -> str:
        if self.error:
            return failed_cell(self.error)
        if self.skipped:
            return self.skipped
        return timing_cell(self.times, 1, " s")


@dataclass
class Row:
    case: str
    tool: str
    cells: dict[str, Cell] = field(default_factory=lambda: {p: Cell() for p in PHASES})
    size: int | None = None
    per_platform: dict[str, int] = field(default_factory=dict)
    media: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)


def measure(tool: Tool, case: C.Case, work: Path, repeat: int) -> Row:
    row = Row(case.name, tool.name)
    image = f"bench-{case.name}"
    logs = work / "logs"
    for rep in range(1, repeat + 1):
        ctx = work / "ctx" / f"{case.name}-{tool.name}"
        wipe(ctx)
        ctx.mkdir(parents=True)
        try:
            case.prepare(ctx)
        except Exception as exc:
            for cell in row.cells.values():
                cell.error = f"context: {type(exc).__name__}: {exc}"[-140:]
            return row
        C.log(f"{case.name} / {tool.name} #{rep}: wiping storage")
        tool.reset()
        step_notes = []
        failed = False
        for phase in PHASES:
            cell = row.cells[phase]
            if failed:
                cell.skipped = cell.skipped or "skipped"
                continue
            prefix = f"{case.name}-{tool.name}-{phase}-{rep}"
            if phase == "changed":
                changed = case.change(ctx)
                if rep == 1:
                    row.notes.append(f"changed file: `{changed}`")
            C.log(f"{case.name} / {tool.name} #{rep}: {phase}")
            if phase == "export":
                dest = work / "out" / f"{case.name}-{tool.name}.tar"
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.unlink(missing_ok=True)
                result = tool.export(case, ctx, image, dest, logs / f"{prefix}.log")
            else:
                result = tool.build(case, ctx, image, logs / f"{prefix}.log")
            if not result.ok:
                cell.error = result.short_error()
                cell.error_tail = result.tail()
                failed = True
                C.log(f"  FAIL after {result.seconds:.1f}s: {cell.error}")
                continue
            cell.times.append(result.seconds)
            ran, cached = tool.steps(result)
            extra = ""
            if isinstance(tool, Farm):
                tail = tool.tail_after_steps(result)
                if tail is not None and phase == "export":
                    extra = f", {tail:.1f}s after the last step"
            if phase != "export" or isinstance(tool, Farm):
                step_notes.append(f"{phase}: {ran} run/{cached} cached{extra}")
            C.log(f"  {result.seconds:.1f}s ({ran} steps run, {cached} cached{extra})")
            if phase == "export":
                try:
                    if rep == 1:
                        row.notes.append(f"archive {mb(dest.stat().st_size)}")
                    row.size, row.per_platform, row.media = oci_archive_size(dest)
                except Exception as exc:
                    row.notes.append(f"size: could not read {dest.name}: {exc}")
                dest.unlink(missing_ok=True)
        if rep == 1 and step_notes:
            row.notes.append("; ".join(step_notes))
    return row


def compression_throughput(data_dir: Path, limit_mb: int) -> tuple[float, float, int, int]:
    """zlib at Farm's GZIP_LEVEL (raw deflate, as buildkit/layers.py) over the bigfiles data.

    Returns (MB/s of input, compressed/raw ratio, level, MB read)."""
    try:
        sys.path.insert(0, str(REPO))
        from buildkit.layers import GZIP_LEVEL
    except Exception:
        GZIP_LEVEL = 6
    files = sorted(data_dir.glob("*.bin"))
    raw = out = 0
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    elapsed = 0.0
    for path in files:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                started = time.monotonic()
                out += len(compressor.compress(chunk))
                elapsed += time.monotonic() - started
                raw += len(chunk)
        if raw >= limit_mb * 1_000_000:
            break
    started = time.monotonic()
    out += len(compressor.flush())
    elapsed += time.monotonic() - started
    return raw / 1e6 / elapsed, out / raw, GZIP_LEVEL, raw // 1_000_000


def startup_time(command: list[str], n: int = 10) -> tuple[float, float, float]:
    times = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    for _ in range(n):
        result = run([*command, "--help"], env=env, timeout=60)
        if not result.ok:
            raise RuntimeError(result.short_error())
        times.append(result.seconds)
    return statistics.median(times), min(times), max(times)


# ------------------------------------------------------------ report


def mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.1f} MB"


def environment(buildah_driver: str, farm_command: list[str]) -> list[str]:
    def out(argv: list[str]) -> str:
        r = run(argv, timeout=30, cwd=REPO)
        return r.stdout.strip() if r.ok else "?"

    head = out(["git", "rev-parse", "--short", "HEAD"])
    dirty = out(["git", "status", "--porcelain", "--untracked-files=no"])
    lines = [
        machine(f"host {platform.machine()} (arm64 through QEMU binfmt_misc)"),
        f"- Farm: `{shlex.join(farm_command)}` at {head}"
        + (" with uncommitted changes" if dirty else ""),
    ]
    if buildah_driver:
        lines.append(f"- {out(['buildah', '--version'])}, storage driver {buildah_driver}")
    return lines


def render(
    rows: list[Row],
    header: list[str],
    footer: list[str],
    repeat: int,
) -> str:
    out = ["## Farm vs buildah: `--platform linux/amd64,linux/arm64`", "", *header, ""]
    if repeat > 1:
        out += [f"Times are the median of {repeat} runs (min-max).", ""]
    out += [
        "| case | tool | cold build | warm rebuild | 1 file changed | OCI export | image size |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        c = r.cells
        out.append(
            f"| {r.case} | {r.tool} | {c['cold'].text()} | {c['warm'].text()} | "
            f"{c['changed'].text()} | {c['export'].text()} | {mb(r.size)} |"
        )
    out += ["", "Notes:", ""]
    for r in rows:
        detail = list(r.notes)
        if r.per_platform:
            detail.append(
                "layers "
                + ", ".join(
                    f"{p} {mb(s)}"
                    for p, s in sorted(
                        r.per_platform.items(), key=lambda kv: ("/" not in kv[0], kv[0])
                    )
                )
                + " ("
                + ", ".join(sorted(m.rsplit(".", 1)[-1] for m in r.media))
                + ")"
            )
        if detail:
            out.append(f"- {r.case} / {r.tool}: " + "; ".join(detail))
    failures = [
        (f"{r.case} / {r.tool} / {phase}", cell.error_tail)
        for r in rows
        for phase, cell in r.cells.items()
        if cell.error_tail
    ]
    return markdown([*out, "", *footer], failures)


# ------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cases", default="hello,multistage,debian,bigfiles",
        help="comma-separated: hello, multistage, debian, debian-offline, bigfiles",
    )  # fmt: skip
    parser.add_argument("--repeat", type=int, default=1, help="runs per case and tool (median)")
    parser.add_argument("--skip-buildah", action="store_true", help="measure Farm only")
    parser.add_argument("--output-md", type=Path, help="also write the markdown report here")
    parser.add_argument(
        "--workdir", type=Path, default=C.CACHE / "run",
        help="contexts, tool storage, logs (default: %(default)s; wiped at start)",
    )  # fmt: skip
    parser.add_argument(
        "--farm", default=str(REPO / ".venv" / "bin" / "farm"),
        help="the farm command (split like a shell would; default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--buildah-driver", default="auto", choices=["auto", "overlay", "vfs"],
        help="auto: overlay when it works here, else vfs",
    )  # fmt: skip
    parser.add_argument(
        "--bigfiles-mb", type=int, default=300, help="size of the bigfiles data, MiB (25 MiB files)"
    )
    args = parser.parse_args(argv)

    if os.geteuid() != 0:
        parser.error("run as root: Farm's sandbox and buildah's chroot isolation need it")
    known = C.all_cases(args.bigfiles_mb)
    names = [n.strip() for n in args.cases.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        parser.error(f"unknown cases {unknown}: choose from {', '.join(known)}")

    started = time.strftime("%Y-%m-%d %H:%M %Z")
    load_before = os.getloadavg()[0]
    work: Path = args.workdir
    wipe(work)
    work.mkdir(parents=True)
    farm_command = shlex.split(args.farm)
    tools: list[Tool] = [Farm(work / "farm", farm_command)]
    driver_text = ""
    if not args.skip_buildah:
        if shutil.which("buildah") is None:
            C.log("buildah is not installed (apt-get install buildah): measuring Farm only")
        else:
            driver, driver_text = pick_buildah_driver(work, args.buildah_driver)
            C.log(f"buildah storage driver: {driver_text}")
            tools.append(Buildah(work / "buildah", driver))

    footer: list[str] = []
    try:
        median, lo, hi = startup_time(farm_command)
        footer.append(f"- `farm --help` start-up: {median * 1000:.0f} ms median of 10 "
                      f"({lo * 1000:.0f}-{hi * 1000:.0f} ms)")  # fmt: skip
    except Exception as exc:
        footer.append(f"- `farm --help` start-up: FAIL: {exc}")
    try:
        data = C.bigfiles_data(args.bigfiles_mb)
        rate, ratio, level, read = compression_throughput(data, args.bigfiles_mb)
        footer.append(
            f"- raw compression throughput: {rate:.1f} MB/s (Python zlib, level {level} as "
            f"buildkit/layers.py, one core, over {read} MB of the bigfiles data; "
            f"compresses to {ratio:.0%})"
        )
    except Exception as exc:
        footer.append(f"- raw compression throughput: FAIL: {exc}")
    for line in footer:
        C.log(line.lstrip("- "))

    rows: list[Row] = []
    for name in names:
        case = known[name]
        case_rows = [measure(tool, case, work, args.repeat) for tool in tools[:1]]
        farm_row = case_rows[0]
        if name == "debian" and _network_failure(farm_row):
            msg = (
                "the RUN step could not reach the Debian mirror from Farm's sandbox "
                f"({farm_row.cells['cold'].error}); fell back to `debian-offline` "
                "(local .debs from `apt-get download`, COPY + dpkg -i)"
            )
            C.log(msg)
            footer.append(f"- debian: {msg}")
            rows.append(farm_row)
            case = known["debian-offline"]
            case_rows = [measure(tools[0], case, work, args.repeat)]
        case_rows += [measure(tool, case, work, args.repeat) for tool in tools[1:]]
        for tool in tools:
            tool.cleanup()
        rows += case_rows
        print(render(rows, [], [], args.repeat), file=sys.stderr)  # progress so far

    header = environment(driver_text, farm_command)
    header.append(
        f"- started {started}; cases and tools run one after the other; load average "
        f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after (other processes add noise)"
    )
    report = render(rows, header, footer, args.repeat)
    print(report)
    if args.output_md:
        args.output_md.write_text(report)
    wipe(work / "ctx")
    return 0


def _network_failure(row: Row) -> bool:
    cold = row.cells["cold"]
    return bool(cold.error) and bool(NETWORK_ERRORS.search(cold.error_tail + cold.error))


if __name__ == "__main__":
    sys.exit(main())
