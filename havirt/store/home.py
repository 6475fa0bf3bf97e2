"""The home (conf/, var/, config.yaml), and the paths that name it or the
configuration: --home, $HAVIRT_HOME, --config. A path given empty, or with a
control character in it (HAVIRT_HOME=$'\\n' would make a home named newline),
is refused with one line."""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from havirt.errors import ConfigError
from havirt.names import printable
from havirt.store.files import check_link, writable_folder


@dataclass
class Home:
    """Where conf/, var/ and config.yaml live."""

    root: Path

    @property
    def conf(self) -> Path:
        return self.root / "conf"

    @property
    def var(self) -> Path:
        return self.root / "var"

    @property
    def state_file(self) -> Path:
        return self.var / "state.yaml"

    @property
    def lock_file(self) -> Path:
        return self.var / "havirt.lock"

    @property
    def audit_file(self) -> Path:
        return self.var / "audit.log"

    def ensure(self) -> None:
        """conf/ and var/ exist, and are not links someone else planted."""
        for d in (self.conf, self.var):
            writable_folder(d, self.root)


def given_path(what: str, text: str, wanted: str) -> str:
    """`text`, a path given as `what` (an option, a variable): refused when
    empty or when it holds a control character. `wanted` says what to give."""
    if any(unicodedata.category(c) == "Cc" for c in text):
        shown = printable(text if len(text) <= 60 else text[:60] + "...")
        raise ConfigError(f"{what} '{shown}' holds a control character: give {wanted}, "
                          "named without one")
    if not text.strip():
        raise ConfigError(f"{what} is empty: give {wanted}")
    return text


def resolve_home(option: str | None, script_dir: Path | None) -> Home:
    """--home DIR, else $HAVIRT_HOME, else the folder that holds havirt.py."""
    home = "the folder of the havirt home"
    if option is not None:
        chosen = given_path("--home", option, home)
    elif os.environ.get("HAVIRT_HOME"):          # set but empty: as if not set
        chosen = given_path("$HAVIRT_HOME", os.environ["HAVIRT_HOME"], home)
    elif script_dir is not None and (script_dir / "havirt.py").exists():
        chosen = str(script_dir)
    else:
        raise ConfigError("no havirt home: give --home DIR or set HAVIRT_HOME")
    root = Path(chosen).expanduser()
    check_link(root)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"havirt home {root} is not a folder")
    return Home(root.resolve())


def resolve_config(option: str | None) -> Path | None:
    """--config FILE, checked as --home is (None: HOME/config.yaml)."""
    if option is None:
        return None
    return Path(given_path("--config", option, "the configuration file, or leave --config out"))
