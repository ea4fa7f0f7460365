"""Re-sign expert folders written before manifest format 2: `python -m t2cli.experts.resign FOLDER...`.

Format 2 manifests record each file's size and a checksum of the manifest itself (`manifest_sha256`);
t2 refuses older manifests, since nothing shows whether their fields were edited. Re-signing checks the
folder's files against the checksums the old manifest records, then rewrites the manifest in format 2. It
trusts the old manifest's other fields: run it only on folders whose origin you trust (how the bundled
bank in `registry/` was converted).
"""

from __future__ import annotations

import sys
from pathlib import Path

from t2cli.errors import IntegrityError, T2Error
from t2cli.experts.files import expected_sha256, load_expert, read_manifest_text, verify_files, write_manifest
from t2cli.experts.manifest import DIGEST_FIELD, FORMAT_VERSION, MAX_MANIFEST_BYTES, Manifest, manifest_digest
from t2cli.experts.manifest_fields import MANIFEST_FILE, Z_FILE
from t2cli.fsutil import file_sha256, read_text_bounded
from t2cli.safeyaml import dump_yaml, load_yaml


def resign(folder: Path) -> bool:
    """Rewrite one expert folder's manifest in the current format; False when it already is."""
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    data = load_yaml(
        read_text_bounded(path, MAX_MANIFEST_BYTES, what="a manifest", follow=False, error=IntegrityError),
        str(path),
        error=IntegrityError,
        limit=MAX_MANIFEST_BYTES,
    )
    if isinstance(data, dict) and data.get("format_version") == FORMAT_VERSION:
        read_manifest_text(folder)  # already signed: it must verify as it is
        return False
    if not isinstance(data, dict) or not isinstance(data.get("files", {}), dict):
        raise IntegrityError(f"{path} is not a manifest; restore it from a remote")
    names = [Z_FILE, *(data.get("files") or {})]
    data["format_version"] = FORMAT_VERSION
    data["sizes"] = {name: (folder / name).lstat().st_size for name in names if (folder / name).exists()}
    unsigned = Manifest.from_yaml(_signed(data), str(path))
    for name in names:  # the old manifest's checksums must hold before it is signed
        if file_sha256(folder / name) != expected_sha256(unsigned, name):
            raise IntegrityError(f"{folder}: checksum mismatch on {name}; not re-signing an expert that fails")
    verify_files(folder, unsigned)
    write_manifest(folder, unsigned)
    load_expert(folder)
    return True


def _signed(data: dict) -> str:
    data[DIGEST_FIELD] = manifest_digest(data, "manifest")
    return dump_yaml(data)


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m t2cli.experts.resign FOLDER...  (expert version folders)", file=sys.stderr)
        return 2
    for folder in argv:
        try:
            changed = resign(Path(folder))
        except (T2Error, OSError) as error:
            print(f"error: {folder}: {error}", file=sys.stderr)
            return getattr(error, "exit_code", 1)
        print(f"{'re-signed' if changed else 'already signed'}: {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
