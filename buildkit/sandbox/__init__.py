"""Running one build step in isolation: `base` holds the types, `namespaces` the Linux sandbox."""

from buildkit.sandbox.base import (
    BindMount,
    Limits,
    Mount,
    NetworkMode,
    OutputCallback,
    Sandbox,
    SandboxError,
    StepResult,
    StepSpec,
    TmpfsMount,
)
from buildkit.sandbox.namespaces import NamespaceSandbox, default_resolv_conf

__all__ = [
    "BindMount",
    "Limits",
    "Mount",
    "NamespaceSandbox",
    "NetworkMode",
    "OutputCallback",
    "Sandbox",
    "SandboxError",
    "StepResult",
    "StepSpec",
    "TmpfsMount",
    "default_resolv_conf",
]
