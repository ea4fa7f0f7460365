"""A YAML file of settings (a command's `--config`): a mapping of setting names to values, read bounded
and safely. Each refusal is one line naming the file and the setting, raised before anything loads."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

from t2cli.errors import BadInputError
from t2cli.fsutil import read_text_bounded
from t2cli.safeyaml import load_yaml

MAX_SETTINGS_BYTES = 1 << 20


def read_settings(path: str | Path, known: Collection[str], what: str) -> dict[str, Any]:
    """The settings a file sets (`what`: whose, e.g. "training"); a name not in `known` is refused."""
    path = Path(path).expanduser()
    raw = load_yaml(read_text_bounded(path, MAX_SETTINGS_BYTES, what=f"a {what} config"), str(path))
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise BadInputError(f"{path}: a config must be a YAML mapping of {what} settings (field: value)")
    unknown = sorted(map(str, set(raw) - set(known)))
    if unknown:
        raise BadInputError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return raw
