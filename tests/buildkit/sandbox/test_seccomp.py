"""The step's seccomp filter: the program on a small BPF interpreter, its syscall numbers
against this machine's kernel headers, and the real kernel running steps under it."""

from __future__ import annotations

import errno
import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from buildkit.sandbox import seccomp
from buildkit.sandbox.seccomp import (
    AARCH64,
    I386,
    SECCOMP_RET_ALLOW,
    SECCOMP_RET_ERRNO,
    SECCOMP_RET_KILL_PROCESS,
    X86_64,
    ArchTable,
    Instruction,
)
from tests.buildkit.sandbox.conftest import Runner
from tests.buildkit.sandbox.test_namespaces_lifetime import _binfmt_can_run_arm64
from tests.fixtures.rootfs import busybox_rootfs

ALLOW = SECCOMP_RET_ALLOW
EPERM = SECCOMP_RET_ERRNO | errno.EPERM
ENOSYS = SECCOMP_RET_ERRNO | errno.ENOSYS
KILL = SECCOMP_RET_KILL_PROCESS

# --- the program, on an interpreter of the instructions it uses -------------------------


def evaluate(program: list[Instruction], nr: int, arch: int, args: tuple[int, ...] = ()) -> int:
    """Run a classic BPF program over a struct seccomp_data, as the kernel would."""
    words = {0: nr & 0xFFFFFFFF, 4: arch}
    for i, arg in enumerate((*args, 0, 0, 0, 0, 0, 0)[:6]):
        words[16 + 8 * i] = arg & 0xFFFFFFFF
        words[20 + 8 * i] = arg >> 32
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = program[pc]
        pc += 1
        if code == 0x20:  # BPF_LD | BPF_W | BPF_ABS
            acc = words[k]
        elif code == 0x06:  # BPF_RET | BPF_K
            return k
        elif code == 0x15:  # BPF_JMP | BPF_JEQ | BPF_K
            pc += jt if acc == k else jf
        elif code == 0x45:  # BPF_JMP | BPF_JSET | BPF_K
            pc += jt if acc & k else jf
        else:
            raise AssertionError(f"unexpected instruction {code:#x}")


X86_PROGRAM = seccomp.host_program("x86_64")
ARM64_PROGRAM = seccomp.host_program("aarch64")

#: Calls a step and QEMU need every day (glibc, busybox, qemu-user's own startup).
EVERYDAY = ("read", "write", "openat", "close", "mmap", "mprotect", "munmap", "brk",
            "rt_sigaction", "rt_sigprocmask", "execve", "wait4", "exit_group", "futex",
            "getrandom", "newfstatat", "prctl", "ptrace", "chroot")  # fmt: skip
EVERYDAY_NUMBERS = {
    "x86_64": dict(zip(EVERYDAY, (0, 1, 257, 3, 9, 10, 11, 12, 13, 14, 59, 61, 231, 202, 318,
                                  262, 157, 101, 161), strict=True)),
    "i386": dict(zip(EVERYDAY, (3, 4, 295, 6, 192, 125, 91, 45, 174, 175, 11, 114, 252, 240,
                                355, 300, 172, 26, 61), strict=True)),
    "aarch64": dict(zip(EVERYDAY, (63, 64, 56, 57, 222, 226, 215, 214, 134, 135, 221, 260,
                                   94, 98, 278, 79, 167, 117, 51), strict=True)),
}  # fmt: skip
# (i386 "mmap" is mmap2 and "newfstatat" is fstatat64: what glibc uses there.)

CASES = [
    pytest.param(X86_PROGRAM, X86_64, id="x86_64"),
    pytest.param(X86_PROGRAM, I386, id="i386-on-x86_64"),
    pytest.param(ARM64_PROGRAM, AARCH64, id="aarch64"),
]


@pytest.mark.parametrize(("program", "table"), CASES)
def test_denied_calls_get_eperm(program: list[Instruction], table: ArchTable) -> None:
    denied = {name: nr for name, nr in table.numbers.items() if name in seccomp.DENIED}
    assert {"unshare", "setns", "mount", "keyctl", "bpf", "io_uring_setup"} <= set(denied)
    for name, nr in denied.items():
        assert evaluate(program, nr, table.audit_arch) == EPERM, name


@pytest.mark.parametrize(("program", "table"), CASES)
def test_everyday_calls_are_allowed(program: list[Instruction], table: ArchTable) -> None:
    for name, nr in EVERYDAY_NUMBERS[table.name].items():
        assert evaluate(program, nr, table.audit_arch, (0xFFFFFFFF_FFFFFFFF,)) == ALLOW, name


@pytest.mark.parametrize(("program", "table"), CASES)
def test_clone_with_namespace_flags_is_refused(program: list[Instruction],
                                               table: ArchTable) -> None:  # fmt: skip
    clone, arch = table.numbers["clone"], table.audit_arch
    thread = (
        0x3D0F00  # CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|CHILD_CLEARTID
    )
    fork = 0x01200000 | 17  # CLONE_CHILD_SETTID|CLONE_CHILD_CLEARTID|SIGCHLD
    assert evaluate(program, clone, arch, (thread,)) == ALLOW
    assert evaluate(program, clone, arch, (fork,)) == ALLOW
    assert evaluate(program, clone, arch, (0x80 | 17,)) == ALLOW  # 0x80 is signal bits here
    for flag in (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000,
                 0x40000000):  # fmt: skip
        assert evaluate(program, clone, arch, (fork | flag,)) == EPERM, hex(flag)
    assert evaluate(program, table.numbers["clone3"], arch) == ENOSYS


@pytest.mark.parametrize(("program", "table"), CASES)
def test_personality_allows_only_dockers_values(program: list[Instruction],
                                                table: ArchTable) -> None:  # fmt: skip
    nr, arch = table.numbers["personality"], table.audit_arch
    for value in (0, 8, 0x20000, 0x20008, 0xFFFFFFFF):
        assert evaluate(program, nr, arch, (value,)) == ALLOW, hex(value)
    for value in (0x0040000, 0x0400000, 0x0040008, 1):  # ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC
        assert evaluate(program, nr, arch, (value,)) == EPERM, hex(value)


def test_x32_calls_are_all_refused() -> None:
    for nr in (0, 1, 59, 60, 231, 512, 545):  # read, write, execve, exit, exit_group, x32-only
        assert evaluate(X86_PROGRAM, nr | 0x40000000, X86_64.audit_arch) == EPERM
    assert evaluate(X86_PROGRAM, -1, X86_64.audit_arch) == EPERM  # no syscall at all


def test_conventions_without_a_table_are_killed() -> None:
    arm = 0x40000028  # AUDIT_ARCH_ARM: 32-bit arm, on an AArch32-capable arm64 host
    riscv64 = 0xC00000F3
    assert evaluate(X86_PROGRAM, 0, AARCH64.audit_arch) == KILL
    assert evaluate(X86_PROGRAM, 0, riscv64) == KILL
    assert evaluate(ARM64_PROGRAM, 0, X86_64.audit_arch) == KILL
    assert evaluate(ARM64_PROGRAM, 0, I386.audit_arch) == KILL
    assert evaluate(ARM64_PROGRAM, 0, arm) == KILL


def test_a_host_without_a_table_is_refused() -> None:
    with pytest.raises(seccomp.SeccompUnsupported, match="s390x"):
        seccomp.host_program("s390x")


def test_programs_fit_and_pack() -> None:
    for program in (X86_PROGRAM, ARM64_PROGRAM):
        assert len(program) <= seccomp.BPF_MAXINSNS
        assert len(seccomp.pack(program)) == 8 * len(program)


# --- the numbers, against this machine's kernel headers ---------------------------------

HEADERS = {
    "x86_64": (X86_64, Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")),
    "i386": (I386, Path("/usr/include/x86_64-linux-gnu/asm/unistd_32.h")),
    "aarch64": (AARCH64, Path("/usr/include/asm-generic/unistd.h")),
}

_HEADER_ALIASES = {("i386", "mmap"): "mmap2", ("i386", "newfstatat"): "fstatat64",
                   ("aarch64", "newfstatat"): "fstatat"}  # fmt: skip


def _header_numbers(path: Path) -> dict[str, int]:
    """`#define __NR_name 123` (and the generic header's `__NR3264_name 123`)."""
    pattern = re.compile(r"^#define __NR(?:3264)?_(\w+)\s+(\d+)\s*$", re.MULTILINE)
    return {name: int(nr) for name, nr in pattern.findall(path.read_text())}


@pytest.mark.parametrize("arch", HEADERS)
def test_numbers_match_the_kernel_headers(arch: str) -> None:
    table, header = HEADERS[arch]
    if not header.exists():
        pytest.skip(f"{header} is not on this machine (linux-libc-dev)")
    numbers = _header_numbers(header)
    assert {name: numbers.get(name) for name in table.numbers} == dict(table.numbers)
    missing = {name for name in seccomp.DENIED | seccomp.SPECIAL if name in numbers}
    missing -= set(table.numbers)
    if arch == "aarch64":  # the generic header also numbers the 32-bit-only time calls
        missing -= {"clock_settime64", "clock_adjtime64"}
    assert not missing, f"the header has these, the table does not: {sorted(missing)}"
    assert {name: nr for name, nr in EVERYDAY_NUMBERS[arch].items()} == {
        name: numbers[_HEADER_ALIASES.get((arch, name), name)] for name in EVERYDAY
    }


# --- the real kernel --------------------------------------------------------------------

PROBE_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Each call is made so that the kernel, unfiltered, would answer something else
   than the filter does (success, EBADF, EFAULT, EINVAL, ENOENT), and so that
   running it unfiltered, even as real root, changes nothing outside itself. */
static void report(const char *name, long rc, int err) {
    if (rc < 0) printf("%s=%s\n", name, strerrorname_np(err));
    else printf("%s=ok\n", name);
}
#define CALL(name, expr) do { errno = 0; long rc_ = (expr); report(name, rc_, errno); } while (0)

static void *thread_main(void *arg) { return arg; }

static long clone_and_reap(unsigned long flags) {
    long pid = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid(pid, NULL, 0);
    return pid;
}

static void native(void) {
    printf("pointer_bits=%d\n", (int)(8 * sizeof(void *)));
    CALL("unshare", syscall(SYS_unshare, CLONE_NEWUSER));
    CALL("clone_newuser", clone_and_reap(CLONE_NEWUSER));
    CALL("clone_newnet", clone_and_reap(CLONE_NEWNET));
    CALL("clone_plain", clone_and_reap(0));
    CALL("clone3", syscall(SYS_clone3, NULL, 0));
    errno = 0;
    pid_t pid = fork();
    int fork_errno = errno;
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid(pid, NULL, 0);
    report("fork", pid, fork_errno);
    pthread_t thread;
    int err = pthread_create(&thread, NULL, thread_main, NULL);
    if (err == 0) pthread_join(thread, NULL);
    report("thread", err ? -1 : 0, err);
    CALL("setns", syscall(SYS_setns, -1, 0));
    CALL("mount", syscall(SYS_mount, "none", "/nonexistent-farm-probe", "tmpfs", 0, NULL));
    CALL("keyctl", syscall(SYS_keyctl, 0, -3, 0)); /* KEYCTL_GET_KEYRING_ID, session */
    CALL("bpf", syscall(SYS_bpf, -1, NULL, 0));
    CALL("io_uring_setup", syscall(SYS_io_uring_setup, 0, NULL));
    CALL("perf_event_open", syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));
    CALL("userfaultfd", syscall(SYS_userfaultfd, -1));
    CALL("name_to_handle_at", syscall(SYS_name_to_handle_at, -1, "", NULL, NULL, 0));
    CALL("personality_query", syscall(SYS_personality, 0xffffffffUL));
    CALL("personality_norandom", syscall(SYS_personality, ADDR_NO_RANDOMIZE));
    CALL("getpid", syscall(SYS_getpid));
}

#ifdef __x86_64__
/* The i386 convention from a 64-bit process: int $0x80 with i386 numbers
   (<asm/unistd_32.h>); the kernel reports AUDIT_ARCH_I386 to seccomp. */
static long sys32(long nr, long a1, long a2, long a3) {
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a1), "c"(a2), "d"(a3)
                     : "memory", "r8", "r9", "r10", "r11");
    ret = (int)ret;
    if (ret < 0 && ret > -4096) { errno = (int)-ret; return -1; }
    return ret;
}

static long clone32_and_reap(long flags) {
    long pid = sys32(120, flags | SIGCHLD, 0, 0);
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid(pid, NULL, 0);
    return pid;
}

static void i386(void) {
    /* Without IA32 emulation int $0x80 is a SIGSEGV: try it in a child first. */
    int status = 0;
    pid_t child = fork();
    if (child == 0) _exit(sys32(20, 0, 0, 0) == getpid() ? 0 : 1);
    waitpid(child, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) { printf("ia32=unavailable\n"); return; }
    CALL("getpid", sys32(20, 0, 0, 0));
    CALL("clone_newuser", clone32_and_reap(CLONE_NEWUSER));
    CALL("clone_plain", clone32_and_reap(0));
    CALL("clone3", sys32(435, 0, 0, 0));
    CALL("setns", sys32(346, -1, 0, 0));
    CALL("keyctl", sys32(288, 0, -3, 0));
    CALL("io_uring_setup", sys32(425, 0, 0, 0));
    CALL("perf_event_open", sys32(336, 0, 0, -1));
    CALL("userfaultfd", sys32(374, -1, 0, 0));
    CALL("personality_query", sys32(136, 0xffffffffL, 0, 0));
    CALL("personality_norandom", sys32(136, ADDR_NO_RANDOMIZE, 0, 0));
    /* x32: a 64-bit syscall with __X32_SYSCALL_BIT; getpid is 39 */
    CALL("x32_getpid", syscall(0x40000000 | 39));
    CALL("unshare", sys32(310, CLONE_NEWUSER, 0, 0));
}
#endif

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
#ifdef __x86_64__
    if (argc > 1 && strcmp(argv[1], "i386") == 0) { i386(); return 0; }
#endif
    native();
    return 0;
}
"""

EXPECTED = {
    "unshare": "EPERM", "clone_newuser": "EPERM", "clone_newnet": "EPERM", "clone_plain": "ok",
    "clone3": "ENOSYS", "fork": "ok", "thread": "ok", "setns": "EPERM", "mount": "EPERM",
    "keyctl": "EPERM", "bpf": "EPERM", "io_uring_setup": "EPERM", "perf_event_open": "EPERM",
    "userfaultfd": "EPERM", "name_to_handle_at": "EPERM", "personality_query": "ok",
    "personality_norandom": "EPERM", "getpid": "ok",
}  # fmt: skip

EXPECTED_I386 = {
    "getpid": "ok", "clone_newuser": "EPERM", "clone_plain": "ok", "clone3": "ENOSYS",
    "setns": "EPERM", "keyctl": "EPERM", "io_uring_setup": "EPERM", "perf_event_open": "EPERM",
    "userfaultfd": "EPERM", "personality_query": "ok", "personality_norandom": "EPERM",
    "x32_getpid": "EPERM", "unshare": "EPERM",
}  # fmt: skip

#: What a 32-bit binary sees whether the kernel runs it or qemu-i386 (binfmt_misc)
#: translates it to host calls: in both cases the filter answers.
EXPECTED_32_BIT_BINARY = {
    "pointer_bits": "32", "unshare": "EPERM", "setns": "EPERM", "mount": "EPERM",
    "personality_norandom": "EPERM", "fork": "ok", "thread": "ok", "getpid": "ok",
}  # fmt: skip


def _compile_probe(dest: Path, *flags: str) -> Path:
    """A static probe in dest/farm-probe/probe, to use as a lower layer."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed (Debian package gcc)")
    layer = dest / "farm-probe-layer"
    (layer / "farm-probe").mkdir(parents=True)
    source = dest / "probe.c"
    source.write_text(PROBE_C)
    binary = layer / "farm-probe" / "probe"
    result = subprocess.run([gcc, *flags, "-static", "-pthread", "-O1", "-o", str(binary),
                             str(source)], capture_output=True, text=True)  # fmt: skip
    if result.returncode != 0:
        if "-m32" in flags:
            pytest.skip(f"gcc -m32 -static fails; install gcc-multilib: {result.stderr[-300:]}")
        raise AssertionError(result.stderr)
    return layer


def _probe_results(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@pytest.fixture(scope="module")
def probe64(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _compile_probe(tmp_path_factory.mktemp("probe64"))


@pytest.fixture(scope="module")
def probe32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _compile_probe(tmp_path_factory.mktemp("probe32"), "-m32")


def _on_x86_64() -> bool:
    return platform.machine() == "x86_64"


@pytest.mark.skipif(not _on_x86_64(), reason="the probe is compiled for x86_64")
@pytest.mark.sandbox
@pytest.mark.timeout(120)
def test_the_step_is_filtered(run_step: Runner, amd64_root: Path, probe64: Path) -> None:
    ran = run_step(argv=("/farm-probe/probe",), lowers=(str(probe64), str(amd64_root)))
    assert ran.result.exit_code == 0, ran.text
    assert _probe_results(ran.text) == {"pointer_bits": "64", **EXPECTED}


@pytest.mark.skipif(not _on_x86_64(), reason="the probe is compiled for x86_64")
@pytest.mark.sandbox
@pytest.mark.timeout(120)
def test_i386_calls_are_filtered_by_i386_numbers(run_step: Runner, amd64_root: Path,
                                                 probe64: Path) -> None:  # fmt: skip
    ran = run_step(argv=("/farm-probe/probe", "i386"), lowers=(str(probe64), str(amd64_root)))
    assert ran.result.exit_code == 0, ran.text
    if "ia32=unavailable" in ran.text:
        pytest.skip("this kernel has no i386 system calls (CONFIG_IA32_EMULATION)")
    assert _probe_results(ran.text) == EXPECTED_I386


@pytest.mark.skipif(not _on_x86_64(), reason="i386 binaries run on x86_64 hosts")
@pytest.mark.sandbox
@pytest.mark.timeout(120)
def test_32_bit_binaries_are_filtered(run_step: Runner, amd64_root: Path, probe32: Path) -> None:
    ran = run_step(argv=("/farm-probe/probe",), lowers=(str(probe32), str(amd64_root)))
    if ran.result.exit_code == 126 and "Exec format error" in ran.text:
        pytest.skip("this host runs no i386 binaries (no IA32 emulation, no qemu-i386 binfmt)")
    assert ran.result.exit_code == 0, ran.text
    results = _probe_results(ran.text)
    assert {name: results.get(name) for name in EXPECTED_32_BIT_BINARY} == EXPECTED_32_BIT_BINARY


@pytest.mark.sandbox
@pytest.mark.timeout(60)
def test_seccomp_is_on_and_everyday_commands_work(run_step: Runner) -> None:
    ran = run_step(
        "grep -E '^Seccomp(_filters)?:' /proc/self/status; "
        "mkdir -p /w/a/b && cp /etc/passwd /w/a/b/p && ls /w/a/b && echo a | cat; "
        "sh -c 'exit 3'; echo sub=$?; (sleep 0.1 & wait); linux32 uname -m; "
        "busybox unshare -U true; echo unshare=$?"
    )
    assert ran.result.exit_code == 0, ran.text
    lines = ran.text.splitlines()
    assert "Seccomp:\t2" in lines and "Seccomp_filters:\t1" in lines
    assert {"p", "a", "sub=3", "i686", "unshare=1"} <= set(lines), ran.text
    assert "unshare(0x10000000): Operation not permitted" in ran.text


@pytest.mark.skipif(not _binfmt_can_run_arm64(), reason="no binfmt_misc qemu-aarch64 (F flag)")
@pytest.mark.sandbox
@pytest.mark.timeout(120)
def test_arm64_under_qemu_runs_filtered(run_step: Runner) -> None:
    ran = run_step(
        "uname -m; echo a | cat; sh -c 'echo b | cat | cat'; (sleep 0.1 & wait); "
        "grep -E '^Seccomp:' /proc/self/status; busybox unshare -U true; echo unshare=$?",
        lowers=(str(busybox_rootfs("arm64")),),
    )
    assert ran.result.exit_code == 0, ran.text
    lines = ran.text.splitlines()
    assert lines[:3] == ["aarch64", "a", "b"]
    assert "Seccomp:\t2" in lines and "unshare=1" in lines
    assert "Operation not permitted" in ran.text
