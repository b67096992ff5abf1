"""The step's seccomp-BPF filter: a denylist in the spirit of Docker's default profile.

Docker's default profile is an allowlist that, for a container without
CAP_SYS_ADMIN, leaves out the system calls below; the step already runs
without CAP_SYS_ADMIN (and most other capabilities), so this filter only
closes what the kernel would still allow an unprivileged process: new
namespaces (unshare, setns, clone with CLONE_NEW* flags), the keyring, bpf,
perf, userfaultfd, io_uring, and, as defence in depth, the calls a missing
capability already refuses (mount, modules, kexec, reboot, swap, the clock).

What the filter answers, per system call convention (`seccomp_data.arch`):

    x86_64   the DENIED calls -> EPERM; clone with a CLONE_NEW* flag -> EPERM;
             clone3 -> ENOSYS (its flags sit behind a pointer the filter cannot
             read; glibc then falls back to clone, as under Docker);
             personality other than Docker's five values -> EPERM;
             any x32 call (nr with __X32_SYSCALL_BIT) -> EPERM
    i386     the same rules by i386 numbers (int 0x80, 32-bit binaries)
    aarch64  the same rules by the generic table's numbers
    other    SECCOMP_RET_KILL_PROCESS: a convention we have no table for
             cannot be filtered, so it cannot run (an arm/v7 binary executed
             natively by an AArch32-capable arm64 host is such a case)

Only the host's own conventions are accepted (x86_64 and i386 on an x86_64
host, aarch64 on an arm64 one). A step emulated by qemu-user through
binfmt_misc is filtered by QEMU's host system calls (QEMU translates the
guest's), so the host table is the one that matters; threads and forks
(clone without CLONE_NEW* flags), mmap and the rest that QEMU needs stay open.
ptrace stays allowed, as in Docker on kernels >= 4.8 (where a tracer can no
longer skip the filter). On a host without a table, `host_program` raises
and the step does not start.

Syscall numbers are the kernel's, as its UAPI headers give them
(<asm/unistd_64.h>, <asm/unistd_32.h>, <asm-generic/unistd.h>, Linux 6.1);
tests/buildkit/sandbox/test_seccomp.py checks them against the headers of
the machine it runs on. Other constants: <linux/seccomp.h>, <linux/audit.h>,
<linux/filter.h>, <linux/personality.h>, seccomp(2), prctl(2).
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from buildkit.sandbox import linux

# <linux/audit.h>: EM_* machine | __AUDIT_ARCH_64BIT (0x80000000) | __AUDIT_ARCH_LE (0x40000000)
AUDIT_ARCH_X86_64 = 0xC000003E  # EM_X86_64 = 62
AUDIT_ARCH_I386 = 0x40000003  # EM_386 = 3
AUDIT_ARCH_AARCH64 = 0xC00000B7  # EM_AARCH64 = 183
X32_SYSCALL_BIT = 0x40000000

# <linux/seccomp.h>, <linux/prctl.h>
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_MODE_FILTER = 2
PR_SET_SECCOMP = 22

# <linux/bpf_common.h>
BPF_LD, BPF_JMP, BPF_RET = 0x00, 0x05, 0x06
BPF_W, BPF_ABS, BPF_K = 0x00, 0x20, 0x00
BPF_JEQ, BPF_JSET = 0x10, 0x40
BPF_MAXINSNS = 4096

# struct seccomp_data { int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]; }
# Every convention here is little-endian: the low half of args[0] is at 16.
OFFSET_NR = 0
OFFSET_ARCH = 4
OFFSET_ARG0_LOW = 16

# <linux/sched.h>. Only the low 32 bits of clone's flags count (kernel/fork.c),
# and the low byte is the exit signal: CLONE_NEWTIME (0x80) is for clone3/unshare.
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NAMESPACE_FLAGS = (
    CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER
    | CLONE_NEWPID | CLONE_NEWNET
)  # fmt: skip

#: personality(2) values Docker allows: PER_LINUX, PER_LINUX32, UNAME26,
#: UNAME26|PER_LINUX32 and 0xffffffff (query). Anything else (ADDR_NO_RANDOMIZE,
#: READ_IMPLIES_EXEC, ...) -> EPERM. The kernel reads an unsigned int: low half only.
PERSONALITY_ALLOWED = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

#: Refused with EPERM wherever the architecture has them.
DENIED = frozenset(
    {
        # namespaces and mounts
        "unshare", "setns", "mount", "umount", "umount2", "pivot_root", "move_mount",
        "open_tree", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
        # kernel keyring
        "keyctl", "add_key", "request_key",
        # kernel attack surface reachable without capabilities
        "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
        "io_uring_register", "lookup_dcookie", "open_by_handle_at", "name_to_handle_at",
        "fanotify_init",
        # modules and kexec
        "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
        "create_module", "get_kernel_syms", "query_module",
        # the machine: accounting, swap, reboot, kernel log, quotas, the clock, I/O ports
        "acct", "swapon", "swapoff", "reboot", "syslog", "quotactl", "quotactl_fd",
        "settimeofday", "stime", "clock_settime", "clock_settime64", "adjtimex",
        "clock_adjtime", "clock_adjtime64", "vm86", "vm86old", "iopl", "ioperm",
        # obsolete
        "uselib", "nfsservctl", "_sysctl",
    }
)  # fmt: skip

#: Calls with a rule of their own (see `_arch_section`).
SPECIAL = frozenset({"clone", "clone3", "personality"})

# <asm/unistd_64.h> (arch/x86/entry/syscalls/syscall_64.tbl, "common"/"64" entries).
X86_64_NUMBERS: Mapping[str, int] = {
    "clone": 56, "clone3": 435, "personality": 135,
    "unshare": 272, "setns": 308, "mount": 165, "umount2": 166, "pivot_root": 155,
    "move_mount": 429, "open_tree": 428, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
    "fspick": 433, "mount_setattr": 442,
    "keyctl": 250, "add_key": 248, "request_key": 249,
    "bpf": 321, "perf_event_open": 298, "userfaultfd": 323, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "lookup_dcookie": 212,
    "open_by_handle_at": 304, "name_to_handle_at": 303, "fanotify_init": 300,
    "kexec_load": 246, "kexec_file_load": 320, "init_module": 175, "finit_module": 313,
    "delete_module": 176, "create_module": 174, "get_kernel_syms": 177, "query_module": 178,
    "acct": 163, "swapon": 167, "swapoff": 168, "reboot": 169, "syslog": 103,
    "quotactl": 179, "quotactl_fd": 443, "settimeofday": 164, "clock_settime": 227,
    "adjtimex": 159, "clock_adjtime": 305, "iopl": 172, "ioperm": 173,
    "uselib": 134, "nfsservctl": 180, "_sysctl": 156,
}  # fmt: skip

# <asm/unistd_32.h> (arch/x86/entry/syscalls/syscall_32.tbl). No kexec_file_load.
I386_NUMBERS: Mapping[str, int] = {
    "clone": 120, "clone3": 435, "personality": 136,
    "unshare": 310, "setns": 346, "mount": 21, "umount": 22, "umount2": 52, "pivot_root": 217,
    "move_mount": 429, "open_tree": 428, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
    "fspick": 433, "mount_setattr": 442,
    "keyctl": 288, "add_key": 286, "request_key": 287,
    "bpf": 357, "perf_event_open": 336, "userfaultfd": 374, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "lookup_dcookie": 253,
    "open_by_handle_at": 342, "name_to_handle_at": 341, "fanotify_init": 338,
    "kexec_load": 283, "init_module": 128, "finit_module": 350, "delete_module": 129,
    "create_module": 127, "get_kernel_syms": 130, "query_module": 167,
    "acct": 51, "swapon": 87, "swapoff": 115, "reboot": 88, "syslog": 103,
    "quotactl": 131, "quotactl_fd": 443, "settimeofday": 79, "stime": 25,
    "clock_settime": 264, "clock_settime64": 404, "adjtimex": 124, "clock_adjtime": 343,
    "clock_adjtime64": 405, "vm86": 166, "vm86old": 113, "iopl": 110, "ioperm": 101,
    "uselib": 86, "nfsservctl": 169, "_sysctl": 149,
}  # fmt: skip

# <asm-generic/unistd.h> (include/uapi/asm-generic/unistd.h), the 64-bit entries
# arm64 uses. It has no umount, iopl, vm86 or the *64 time calls.
AARCH64_NUMBERS: Mapping[str, int] = {
    "clone": 220, "clone3": 435, "personality": 92,
    "unshare": 97, "setns": 268, "mount": 40, "umount2": 39, "pivot_root": 41,
    "move_mount": 429, "open_tree": 428, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
    "fspick": 433, "mount_setattr": 442,
    "keyctl": 219, "add_key": 217, "request_key": 218,
    "bpf": 280, "perf_event_open": 241, "userfaultfd": 282, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "lookup_dcookie": 18,
    "open_by_handle_at": 265, "name_to_handle_at": 264, "fanotify_init": 262,
    "kexec_load": 104, "kexec_file_load": 294, "init_module": 105, "finit_module": 273,
    "delete_module": 106,
    "acct": 89, "swapon": 224, "swapoff": 225, "reboot": 142, "syslog": 116,
    "quotactl": 60, "quotactl_fd": 443, "settimeofday": 170, "clock_settime": 112,
    "adjtimex": 171, "clock_adjtime": 266, "nfsservctl": 42,
}  # fmt: skip


@dataclass(frozen=True)
class ArchTable:
    """One system call convention: its AUDIT_ARCH value and syscall numbers."""

    name: str
    audit_arch: int
    numbers: Mapping[str, int]
    x32_bit: bool = False  # x86_64: numbers with __X32_SYSCALL_BIT are the x32 ABI

    def denied_numbers(self) -> list[int]:
        return sorted(self.numbers[name] for name in DENIED if name in self.numbers)


X86_64 = ArchTable("x86_64", AUDIT_ARCH_X86_64, X86_64_NUMBERS, x32_bit=True)
I386 = ArchTable("i386", AUDIT_ARCH_I386, I386_NUMBERS)
AARCH64 = ArchTable("aarch64", AUDIT_ARCH_AARCH64, AARCH64_NUMBERS)

#: The conventions a host's processes can use, by `platform.machine()`.
HOST_ARCHES: Mapping[str, tuple[ArchTable, ...]] = {
    "x86_64": (X86_64, I386),
    "aarch64": (AARCH64,),
}

#: One BPF instruction, as struct sock_filter: (code, jt, jf, k).
Instruction = tuple[int, int, int, int]


class SeccompUnsupported(Exception):
    """No syscall table for this host: the step cannot be filtered."""


class _Assembler:
    """Classic BPF with labels; conditional jumps are forward and at most 255 long."""

    def __init__(self) -> None:
        self._items: list[tuple[int, int, str | None, str | None]] = []
        self._labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self._labels[name] = len(self._items)

    def load(self, offset: int) -> None:
        self._items.append((BPF_LD | BPF_W | BPF_ABS, offset, None, None))

    def ret(self, value: int) -> None:
        self._items.append((BPF_RET | BPF_K, value, None, None))

    def jump(self, op: int, k: int, jt: str | None = None, jf: str | None = None) -> None:
        """If (A op k) go to `jt`, else to `jf`; None is the next instruction."""
        self._items.append((BPF_JMP | op | BPF_K, k, jt, jf))

    def program(self) -> list[Instruction]:
        out: list[Instruction] = []
        for index, (code, k, jt, jf) in enumerate(self._items):
            out.append((code, self._offset(index, jt), self._offset(index, jf), k))
        if len(out) > BPF_MAXINSNS:
            raise ValueError(f"seccomp program of {len(out)} instructions is too long")
        return out

    def _offset(self, index: int, label: str | None) -> int:
        if label is None:
            return 0
        offset = self._labels[label] - index - 1
        if not 0 <= offset <= 255:
            raise ValueError(f"jump to {label} is out of range ({offset})")
        return offset


def _arch_section(asm: _Assembler, table: ArchTable) -> None:
    """The rules for one convention; starts with the syscall number not yet loaded."""
    allow, deny, enosys = f"{table.name}.allow", f"{table.name}.deny", f"{table.name}.enosys"
    clone, personality = f"{table.name}.clone", f"{table.name}.personality"
    asm.label(table.name)
    asm.load(OFFSET_NR)
    if table.x32_bit:
        asm.jump(BPF_JSET, X32_SYSCALL_BIT, jt=deny)
    asm.jump(BPF_JEQ, table.numbers["clone"], jt=clone)
    asm.jump(BPF_JEQ, table.numbers["clone3"], jt=enosys)
    asm.jump(BPF_JEQ, table.numbers["personality"], jt=personality)
    for number in table.denied_numbers():
        asm.jump(BPF_JEQ, number, jt=deny)
    asm.ret(SECCOMP_RET_ALLOW)

    asm.label(clone)
    asm.load(OFFSET_ARG0_LOW)
    asm.jump(BPF_JSET, CLONE_NAMESPACE_FLAGS, jt=deny, jf=allow)

    asm.label(personality)
    asm.load(OFFSET_ARG0_LOW)
    for value in PERSONALITY_ALLOWED:
        asm.jump(BPF_JEQ, value, jt=allow)
    asm.ret(SECCOMP_RET_ERRNO | errno.EPERM)

    asm.label(allow)
    asm.ret(SECCOMP_RET_ALLOW)
    asm.label(deny)
    asm.ret(SECCOMP_RET_ERRNO | errno.EPERM)
    asm.label(enosys)
    asm.ret(SECCOMP_RET_ERRNO | errno.ENOSYS)


def build_program(arches: Sequence[ArchTable]) -> list[Instruction]:
    """The filter for processes that may use `arches`; any other convention is killed."""
    asm = _Assembler()
    asm.load(OFFSET_ARCH)
    for table in arches:
        asm.jump(BPF_JEQ, table.audit_arch, jt=table.name)
    asm.ret(SECCOMP_RET_KILL_PROCESS)
    for table in arches:
        _arch_section(asm, table)
    return asm.program()


def host_program(machine: str | None = None) -> list[Instruction]:
    """The filter for this host (or for `machine`, a `platform.machine()` name)."""
    machine = machine or platform.machine()
    arches = HOST_ARCHES.get(machine)
    if arches is None:
        raise SeccompUnsupported(f"no seccomp syscall table for {machine}")
    return build_program(arches)


def pack(program: Sequence[Instruction]) -> bytes:
    """The program as an array of struct sock_filter."""
    return b"".join(struct.pack("=HBBI", *insn) for insn in program)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(program: Sequence[Instruction]) -> None:
    """Install `program` on the calling thread (needs no_new_privs or CAP_SYS_ADMIN).

    It is inherited across fork and execve and cannot be removed.
    """
    code = ctypes.create_string_buffer(pack(program))
    fprog = _SockFprog(len(program), ctypes.addressof(code))
    linux.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog))
