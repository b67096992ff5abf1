"""`--cache-to` / `--cache-from` as buildx reads them: local and registry forms."""

from __future__ import annotations

import pytest

from buildkit.cache.options import CacheError, CacheOption, parse_cache_option


@pytest.mark.parametrize(
    ("text", "flag", "want"),
    [
        ("type=registry,ref=reg:5000/app:cache", "--cache-to", CacheOption("registry", ref="reg:5000/app:cache")),
        ("type=registry,ref=reg:5000/app:cache,mode=max", "--cache-to",
         CacheOption("registry", ref="reg:5000/app:cache", mode="max")),
        ("type=registry,ref=r/app,ignore-error=true", "--cache-from",
         CacheOption("registry", ref="r/app", ignore_error=True)),
        ("reg:5000/app:cache", "--cache-from", CacheOption("registry", ref="reg:5000/app:cache")),
        (" ghcr.io/o/app:buildcache ", "--cache-to", CacheOption("registry", ref="ghcr.io/o/app:buildcache")),
        (f"type=registry,ref=r/app@sha256:{'a' * 64}", "--cache-from",
         CacheOption("registry", ref=f"r/app@sha256:{'a' * 64}")),
        ("Type=registry,REF=r/app:c,image-manifest=true,oci-mediatypes=true", "",
         CacheOption("registry", ref="r/app:c")),
        ("type=local,dest=out", "--cache-to", CacheOption("local", dest="out")),
        ("type=local,dest=out,mode=max", "--cache-to", CacheOption("local", dest="out", mode="max")),
        ("type=local,src=in", "--cache-from", CacheOption("local", src="in")),
        ("type=local, src=in ,ignore-error=true", "", CacheOption("local", src="in", ignore_error=True)),
        ("type=local,src=in,ignore-error=1", "--cache-from", CacheOption("local", src="in", ignore_error=True)),
    ],
)  # fmt: skip
def test_parse(text, flag, want):
    assert parse_cache_option(text, flag=flag) == want


def test_where_names_the_place():
    assert parse_cache_option("r/app:c").where == "r/app:c"
    assert parse_cache_option("type=local,dest=d").where == "d"
    assert parse_cache_option("type=local,src=s").where == "s"


@pytest.mark.parametrize(
    ("text", "flag", "match"),
    [
        ("type=registry", "--cache-to", "needs ref=REF"),
        ("type=registry,ref=", "--cache-from", "needs ref=REF"),
        ("type=registry,ref=Bad Name:x", "--cache-to", "invalid --cache-to ref 'Bad Name:x'"),
        ("a/b:1,c/d:2", "--cache-from", "invalid --cache-from ref"),
        ("type=registry,ref=r/app,mode=all", "--cache-to", "mode 'all'"),
        ("type=registry,ref=r/app,dest=x", "--cache-to", "unknown --cache-to options: dest"),
        ("type=local,dest=x,ref=r/app", "--cache-to", "unknown --cache-to options: ref"),
        ("type=local,dest=x,image-manifest=true", "--cache-to", "options: image-manifest"),
        ("type=registry,ref=r/app,ignore-error=maybe", "--cache-to", "ignore-error 'maybe'"),
        ("type=s3,ref=r/app", "--cache-to", "type=s3 is not supported.*type=registry"),
        ("type=floppy,ref=x", "--cache-to", "type must be local or registry.*'floppy'"),
        ("type=gha", "--cache-to", "type=gha is not supported"),
        ("dest=x", "--cache-to", "type must be local or registry"),
        ("type=local,dest=x,mode=all", "--cache-to", "mode 'all'"),
        ("type=local,dest=x,colour=red", "--cache-to", "unknown --cache-to options: colour"),
        ("type=local,src=x", "--cache-to", "needs dest=DIR"),
        ("type=local,dest=x", "--cache-from", "needs src=DIR"),
        ("type=local,dest", "--cache-to", "'dest' is not key=value"),
    ],
)
def test_errors(text, flag, match):
    with pytest.raises(CacheError, match=match):
        parse_cache_option(text, flag=flag)
