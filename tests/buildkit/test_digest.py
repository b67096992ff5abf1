"""`Digest` accepts exactly `<algorithm>:<hex>`, nothing before or after."""

from __future__ import annotations

import pytest

from buildkit.digest import Digest, InvalidDigest, is_digest

HEX = "a" * 64


def test_a_well_formed_digest():
    assert Digest(f"sha256:{HEX}").hex == HEX
    assert is_digest(f"sha512:{'b' * 128}")


@pytest.mark.parametrize(
    "text",
    [
        f"sha256:{HEX}\n",
        f"sha256:{HEX}\r\n",
        f"sha256:{HEX} ",
        f" sha256:{HEX}",
        f"\nsha256:{HEX}",
        f"sha256:{HEX.upper()}",
        f"sha256:{HEX[:-1]}",
        f"sha512:{HEX}",
        f"md5:{HEX}",
    ],
)
def test_anything_around_or_off_is_invalid(text):
    with pytest.raises(InvalidDigest):
        Digest(text)
    assert not is_digest(text)
