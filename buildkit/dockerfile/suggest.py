"""Small helpers the build checks share: "did you mean" suggestions and the
secret-looking names of SecretsUsedInArgOrEnv."""

from __future__ import annotations

from collections.abc import Mapping

_SECRET_TOKENS = frozenset(
    {"apikey", "auth", "credential", "credentials", "key", "password", "pword", "passwd"}
    | {"secret", "token"}
)
_ALLOW_TOKENS = frozenset({"public", "file", "version"})


def looks_secret(key: str) -> bool:
    """BuildKit's rule: one of the name's `_`-separated words is a secret-ish
    token (`GITHUB_TOKEN`, `api_key`) and none is an allowed one (`PUBLIC_KEY`)."""
    words = set(key.lower().split("_"))
    return bool(words & _SECRET_TOKENS) and not (words & _ALLOW_TOKENS)


def undefined_var_message(name: str, env: Mapping[str, str]) -> str:
    text = f"Usage of undefined variable '${name}'"
    suggestion = suggest(name, list(env))
    if suggestion:
        text += f" (did you mean ${suggestion}?)"
    return text


def suggest(name: str, options: list[str]) -> str:
    """The closest option within a small edit distance (case counts as one
    edit less), as BuildKit's suggest package does; "" when none is close."""
    best, best_dist = "", 0
    limit = max(1, len(name) // 3) if len(name) > 2 else 0
    for opt in options:
        dist = _distance(name.lower(), opt.lower())
        if opt.lower() == name.lower():
            return opt
        if dist <= limit and (not best or dist < best_dist):
            best, best_dist = opt, dist
    return best


def _distance(a: str, b: str) -> int:
    """Edit distance counting a swap of neighbours as one edit ($PAHT → $PATH)."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]
