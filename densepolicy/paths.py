"""The checkout's own places, named once: the project root (its environments, scripts, logs) and
the default data directory. Everything that needs one of them imports it from here."""
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent   # the checkout: densepolicy/ sits at its top
SHARED_DATA = ROOT.parent / "shared" / "data"    # where the datasets sit beside a checkout


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The data directory: `explicit`, else $DATA_DIR, else ../shared/data beside the checkout
    when it exists, else ./data in the checkout."""
    if explicit:
        return Path(explicit)
    if os.environ.get("DATA_DIR"):
        return Path(os.environ["DATA_DIR"])
    return SHARED_DATA if SHARED_DATA.is_dir() else ROOT / "data"
