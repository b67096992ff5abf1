"""The pieces behind `buildkit/context.py`: names inside a context, tarballs, git.

`buildkit.context` is the entry point; these modules hold what it needs from
the outside world: `paths` (checking names that must stay inside a context,
and making a tar member's parents without going through a symlink),
`archive` (recognising and safely unpacking tarballs), `git` (Docker's git
URLs and a shallow fetch) and `files` (walking a context with its ignore
rules, and packing it as a deterministic tar). Paths inside an unpacked
context are resolved with `buildkit.fsutil`, as everywhere else.
"""
