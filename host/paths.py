"""Where the project's files are, and the applet's identity read from applet/applet.properties.

A leaf module: every layer may import it; it imports nothing of the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BUILD_DIR = PROJECT_ROOT / "build"
APPLET_PROPERTIES = PROJECT_ROOT / "applet" / "applet.properties"


@dataclass(frozen=True)
class AppletInfo:
    aid: bytes
    applet_class: str
    package_aid: bytes


def applet_info(path: Path = APPLET_PROPERTIES) -> AppletInfo:
    """Reads the applet's AID and class from applet/applet.properties (never copied by hand)."""
    props: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")) and "=" in line:
            key, value = line.split("=", 1)
            props[key.strip()] = value.strip()
    try:
        return AppletInfo(
            aid=bytes.fromhex(props["applet.aid"].replace(":", "")),
            applet_class=props["applet.class"],
            package_aid=bytes.fromhex(props["package.aid"].replace(":", "")),
        )
    except KeyError as e:
        raise ValueError(f"{path} lacks the key {e}") from None
