"""File-system helpers every reader and writer uses: atomic writes, sha256, bounded reads of regular files,
a verified copy, and JSON parsing that cannot blow the stack."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
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


_WHERE_TO = "point T2_HOME, --registry or -o at another folder"


def write_error(problem: OSError, where: Path | str | None = None, what: str | None = None) -> T2Error | None:
    """One line for a failure of the machine rather than of t2: a full disk or quota, a read-only file system,
    a folder without permission (None for any other error). `where`: the folder or file (default: the
    error's own file name); `what`: what was being written, if known."""
    where = where if where is not None else problem.filename
    place = f" {where}" if where is not None else ""
    message = {
        errno.ENOSPC: f"no space left on the disk holding{place or ' it'}; free space there or {_WHERE_TO}",
        errno.EDQUOT: f"disk quota exceeded on{place or ' a disk'}; free space there or {_WHERE_TO}",
        errno.EROFS: f"{where or 'the folder'} is on a read-only file system; {_WHERE_TO}",
        errno.EACCES: f"permission denied on {where or 'a file or folder'}; check its permissions or {_WHERE_TO}",
        errno.EPERM: f"operation not permitted on {where or 'a file or folder'}; check its permissions or {_WHERE_TO}",
    }.get(problem.errno or 0)
    if message is None:
        return None
    return T2Error(f"cannot write {what}: {message}" if what else message)


@contextmanager
def disk_errors(where: Path, what: str) -> Iterator[None]:
    """Turn a full disk or an unwritable folder (OSError, or safetensors' own error for the same) into one
    line naming the folder; other errors pass through unchanged."""
    try:
        yield
    except OSError as problem:
        error = write_error(problem, where, what)
        if error is None:
            raise
        raise error from None
    except Exception as problem:
        if type(problem).__name__ != "SafetensorError":
            raise
        found = re.search(r"os error (\d+)", str(problem))  # "I/O error: No space left on device (os error 28)"
        error = write_error(OSError(int(found[1]), str(problem)), where, what) if found else None
        if error is None:
            raise
        raise error from None


def default_permissions(folder: Path) -> None:
    """Give a folder made private by mkdtemp (0700) and everything in it the modes a plain mkdir/open would
    (0777/0666 less the umask), so exports and caches are readable like any other file the user writes."""
    mask = _umask()
    for current, folders, files in os.walk(folder):
        os.chmod(current, 0o777 & ~mask)
        for name in files:
            path = os.path.join(current, name)
            if not os.path.islink(path):
                os.chmod(path, 0o666 & ~mask)
        folders[:] = [name for name in folders if not os.path.islink(os.path.join(current, name))]


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
# A text input (decompressed, for .gz) holds at most this many characters and lines, blank ones included:
# a gzip bomb of short or blank lines stops here instead of filling memory or running for minutes.
MAX_TEXT_BYTES = 2 << 30
MAX_TEXT_LINES = 2_000_000


@contextmanager
def open_text_lines(path: Path) -> Iterator[Iterator[str]]:
    """The UTF-8 lines of a regular text file (gunzipped when it ends in .gz): each at most MAX_LINE_BYTES,
    at most MAX_TEXT_LINES of them and MAX_TEXT_BYTES in all.

    A FIFO or device (`/dev/zero`) is refused before anything is read, an endless line is cut off at the
    cap, and a corrupt or truncated .gz is a BadInputError, so no input file can exhaust memory or raise
    anything but a one-line T2Error.
    """
    import gzip
    import io
    import zlib

    with open_regular(Path(path)) as raw:
        binary: IO[bytes] = gzip.GzipFile(fileobj=raw) if Path(path).name.endswith(".gz") else raw  # type: ignore[assignment]
        text = io.TextIOWrapper(binary, encoding="utf-8")  # type: ignore[arg-type]
        try:
            yield _bounded_lines(text, path)
        except (EOFError, zlib.error, gzip.BadGzipFile) as problem:
            raise BadInputError(f"cannot read {path} as gzip ({problem}); re-create or re-download it") from None
        except UnicodeDecodeError as problem:
            raise BadInputError(f"cannot read {path} as UTF-8 text ({problem.reason}); save it as UTF-8") from None


def _bounded_lines(text: IO[str], path: Path) -> Iterator[str]:
    total = 0
    for count in range(1, MAX_TEXT_LINES + 2):
        line = text.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_LINE_BYTES:
            raise BadInputError(f"{path} has a line longer than {MAX_LINE_BYTES:,} characters; is it a JSONL file?")
        total += len(line)
        if count > MAX_TEXT_LINES or total > MAX_TEXT_BYTES:
            raise BadInputError(
                f"{path} has more than {MAX_TEXT_LINES:,} lines or {MAX_TEXT_BYTES:,} characters (decompressed), "
                "t2's limit for one input file; split it into smaller files"
            )
        yield line


def lenient_rows(path: Path, *, follow: bool = True) -> Iterator[dict[str, Any]]:
    """The JSON objects of a file t2 wrote itself (an output, a resume journal): a line that is torn, not
    UTF-8, not an object, nested too deep or longer than MAX_LINE_BYTES is skipped, never fatal. A missing
    file has no rows; a FIFO, device or folder (or, with follow=False, a symlink) is a BadInputError."""
    try:
        with open_regular(path, follow=follow) as handle:
            while line := handle.readline(MAX_LINE_BYTES + 1):
                if len(line) > MAX_LINE_BYTES:  # skip the rest of an over-long line
                    while line and not line.endswith(b"\n"):
                        line = handle.readline(MAX_LINE_BYTES)
                    continue
                try:
                    row = json_loads(line.decode("utf-8"))
                except (UnicodeDecodeError, JsonProblem):
                    continue
                if isinstance(row, dict):
                    yield row
    except NotFoundError:
        return


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
    removed when it fails, so readers never see a half-written folder. It gets the permissions a plain
    mkdir and open would give (see default_permissions).

    If `folder` exists by then: with `replace` it is replaced; without, it wins (another process finished
    the same work first) and the staged copy is dropped.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        yield staging
        default_permissions(staging)
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
