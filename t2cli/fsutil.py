"""File-system helpers every reader and writer uses: atomic writes, sha256, bounded reads of regular files,
a verified copy, and JSON parsing that cannot blow the stack."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from t2cli.errors import BadInputError, IntegrityError, NotFoundError, T2Error

_BLOCK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open_regular(path, follow=False, error=IntegrityError) as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """Write a file so readers see the old content or the new one, never a part."""
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


@contextmanager
def open_regular(path: Path, *, follow: bool = True, error: type[T2Error] = BadInputError) -> Iterator[IO[bytes]]:
    """Open a regular file for reading; a FIFO, device, directory (or, with follow=False, a symlink) is refused.

    The check is made on the opened descriptor (O_NONBLOCK keeps a FIFO from blocking the open), so the
    file cannot be swapped between the check and the read.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise NotFoundError(f"{path} does not exist; check the path") from None
    except OSError as problem:
        if not follow and Path(path).is_symlink():
            raise error(f"{path} is a symbolic link, not a file; replace it with the file itself") from None
        raise error(f"cannot read {path} ({problem.strerror}); check the path and its permissions") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
            raise error(f"{path} is {kind}; pass a regular file")
        os.set_blocking(fd, True)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        yield handle


def read_bounded(
    path: Path, limit: int, *, what: str, follow: bool = True, error: type[T2Error] = BadInputError
) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (a larger one is refused before it is read)."""
    with open_regular(path, follow=follow, error=error) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise error(f"{path} is larger than {limit:,} bytes, too large for {what}; check the file")
    return data


def decode_utf8(data: bytes, source: str, *, error: type[T2Error] = BadInputError) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as problem:
        raise error(f"{source} is not UTF-8 text (bad byte at offset {problem.start}); save it as UTF-8") from None


def read_text_bounded(
    path: Path, limit: int, *, what: str, follow: bool = True, error: type[T2Error] = BadInputError
) -> str:
    return decode_utf8(read_bounded(path, limit, what=what, follow=follow, error=error), str(path), error=error)


def copy_verified(source: Path, destination: Path | None, *, size: int, sha256: str) -> None:
    """Check that `source` is a regular file (never a link) of exactly `size` bytes with this sha256, copying it
    to `destination` (when given) while reading.

    At most size + 1 bytes are read, so a file that grows or never ends costs no more than the declared size.
    """
    digest = hashlib.sha256()
    copied = 0
    with open_regular(source, follow=False, error=IntegrityError) as handle, _sink(destination) as out:
        while copied <= size:
            block = handle.read(min(_BLOCK, size + 1 - copied))
            if not block:
                break
            copied += len(block)
            digest.update(block)
            out.write(block)
    if copied != size:
        raise IntegrityError(
            f"{source} is {'larger' if copied > size else 'smaller'} than the {size:,} bytes its manifest records; "
            "re-pull or republish the expert"
        )
    if digest.hexdigest() != sha256:
        raise IntegrityError(f"{source}: checksum mismatch (corrupted or edited); re-pull or republish the expert")


@contextmanager
def _sink(destination: Path | None) -> Iterator[IO[bytes]]:
    if destination is None:
        with open(os.devnull, "wb") as out:
            yield out
    else:
        with destination.open("xb") as out:
            yield out


class JsonProblem(ValueError):
    """A JSON text that is malformed, nested too deep or holds a number Python refuses to convert."""


def json_loads(text: str) -> Any:
    """json.loads whose every failure is a JsonProblem with a short reason (never RecursionError)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as problem:
        raise JsonProblem(f"malformed JSON ({problem.msg})") from None
    except RecursionError:
        raise JsonProblem("JSON nested too deeply") from None
    except ValueError as problem:  # e.g. an integer longer than sys.get_int_max_str_digits()
        raise JsonProblem(f"JSON value out of range ({str(problem).split(';')[0]})") from None
