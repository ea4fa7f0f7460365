"""File-system helpers every reader and writer uses: atomic writes, sha256, bounded reads of regular files,
a verified copy, and JSON parsing that cannot blow the stack."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator, Mapping
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


def _umask() -> int:
    """The process umask, read without changing it where /proc allows (os.umask can only set it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, data: bytes) -> None:
    """Write a file so readers see the old content or the new one, never a part. The file gets the
    permissions a plain open() would give it (mkstemp's private 0600 would hide registry files and
    plots from other users)."""
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        os.fchmod(handle, 0o666 & ~_umask())
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
            f"{source.parent}: checksum mismatch on {source.name} ({'more' if copied > size else 'fewer'} bytes than "
            f"the {size:,} its manifest records); re-pull or republish the expert"
        )
    if digest.hexdigest() != sha256:
        raise IntegrityError(
            f"{source.parent}: checksum mismatch on {source.name} (corrupted or edited); "
            "re-pull or republish the expert"
        )


@contextmanager
def _sink(destination: Path | None) -> Iterator[IO[bytes]]:
    if destination is None:
        with open(os.devnull, "wb") as out:
            yield out
    else:
        with destination.open("xb") as out:
            yield out


# One JSONL line (a prompt, a task record) is far smaller; a longer one is a wrong or hostile file.
MAX_LINE_BYTES = 64 << 20


@contextmanager
def open_text_lines(path: Path) -> Iterator[Iterator[str]]:
    """The UTF-8 lines of a regular text file (gunzipped when it ends in .gz), each at most MAX_LINE_BYTES.

    A FIFO or device (`/dev/zero`) is refused before anything is read, and an endless line is cut off at the
    cap, so no input file can exhaust memory.
    """
    import gzip
    import io

    with open_regular(Path(path)) as raw:
        binary: IO[bytes] = gzip.GzipFile(fileobj=raw) if Path(path).name.endswith(".gz") else raw  # type: ignore[assignment]
        text = io.TextIOWrapper(binary, encoding="utf-8")  # type: ignore[arg-type]
        yield _bounded_lines(text, path)


def _bounded_lines(text: IO[str], path: Path) -> Iterator[str]:
    while line := text.readline(MAX_LINE_BYTES + 1):
        if len(line) > MAX_LINE_BYTES:
            raise BadInputError(f"{path} has a line longer than {MAX_LINE_BYTES:,} characters; is it a JSONL file?")
        yield line


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


def jsonl_line(row: Mapping[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False, default=str) + "\n"


def write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """A JSONL file written in one atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, "".join(jsonl_line(row) for row in rows).encode())


@contextmanager
def staged_folder(folder: Path, *, replace: bool = False) -> Iterator[Path]:
    """A staging folder beside `folder` that becomes `folder` in one rename when the block succeeds, and is
    removed when it fails, so readers never see a half-written folder.

    If `folder` exists by then: with `replace` it is replaced; without, it wins (another process finished
    the same work first) and the staged copy is dropped.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        yield staging
        if folder.exists() and not replace:
            shutil.rmtree(staging)
            return
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
