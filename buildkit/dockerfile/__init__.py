"""The Dockerfile frontend: syntax → typed instructions → per-platform plan."""

from buildkit.dockerfile.instructions import parse_dockerfile

__all__ = ["parse_dockerfile"]
