"""The pieces behind `buildkit/context.py`: paths inside a root, tarballs, git.

`buildkit.context` is the entry point; these modules hold what it needs from
the outside world: `paths` (resolving a path inside a root without leaving
it), `archive` (recognising and safely unpacking tarballs), `git` (Docker's
git URLs and a shallow fetch) and `files` (walking a context with its ignore
rules, and packing it as a deterministic tar).
"""
