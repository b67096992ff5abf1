import os
import stat

from buildkit.snapshots import Snapshots


def test_farm_home_is_private_to_its_owner(tmp_path):
    """Snapshots hold what build steps wrote (setuid programs among them): no
    other user of the host may reach them through FARM_HOME."""
    fresh = tmp_path / "fresh"
    Snapshots(fresh)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700

    open_home = tmp_path / "open"
    open_home.mkdir(mode=0o755)
    os.chmod(open_home, 0o755)
    Snapshots(open_home)
    assert stat.S_IMODE(open_home.stat().st_mode) == 0o700
