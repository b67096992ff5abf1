"""The step cache: content-addressed keys for build steps, and their index in the store.

- `keys`: `base_key`, `step_key` (pure: what a step's key covers);
- `contents`: `hash_sources`, `hash_tree` (the files a COPY or a bind mount
  reads: the only I/O of a key);
- `index`: `lookup`, `record`, `list_records`, `delete_record` (JSON records
  under `cache/` in the store, so a shared store is a shared cache).
- `local`, `registry`: `--cache-to`/`--cache-from` in a directory or a
  registry (`options` parses the flags; `artifact` is the cache manifest both use).

A hit gives a layer blob; `buildkit.snapshots.Snapshots.layer` turns it into
an overlay lower directory on a machine that does not have it yet.
"""

from buildkit.cache.contents import FileDigests, hash_sources, hash_tree
from buildkit.cache.index import (
    CachedLayer,
    CacheRecord,
    delete_record,
    list_records,
    lookup,
    record,
)
from buildkit.cache.keys import base_key, is_filesystem_step, step_key

__all__ = [
    "CacheRecord",
    "CachedLayer",
    "FileDigests",
    "base_key",
    "delete_record",
    "hash_sources",
    "hash_tree",
    "is_filesystem_step",
    "list_records",
    "lookup",
    "record",
    "step_key",
]
