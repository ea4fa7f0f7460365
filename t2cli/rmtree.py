"""Delete a folder tree however deep, without following links: for folders a hostile program wrote (the
sandbox's working folder). Standard library only, so the sandbox imports nothing else of t2."""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path

_MAX_OPEN_LEVELS = 64
_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_folder(name: str, parent: int | None) -> int:
    """A folder (never a link) opened for listing; one without read or search permission is given 0700 first,
    through a descriptor of that very folder (chmod by name could follow a link swapped in meanwhile)."""
    try:
        return os.open(name, _FOLDER_FLAGS, dir_fd=parent)
    except PermissionError:
        if not hasattr(os, "O_PATH"):  # not Linux
            raise
        handle = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        try:
            os.chmod(f"/proc/self/fd/{handle}", 0o700)
            return os.open(".", _FOLDER_FLAGS, dir_fd=handle)
        finally:
            os.close(handle)


def remove_tree(path: Path) -> None:
    """Delete a folder and everything below it, however deep, without following links.

    shutil.rmtree recurses once per level (RecursionError past ~1000 levels on Python < 3.12) and gives up on
    folders without write or search permission. This walks with an explicit stack of open folder
    descriptors, moving a branch deeper than _MAX_OPEN_LEVELS up below the top, so depth costs no Python
    stack and few descriptors, paths never grow past PATH_MAX, and a folder a hostile program chmod-ed
    to 000 is opened up first. A missing path is a no-op.
    """
    try:
        top = _open_folder(str(path), None)
    except FileNotFoundError:
        return
    except OSError:  # a file or a link, not a folder
        os.unlink(path)
        return
    stack: list[int] = [top]
    try:
        while stack:
            fd = stack[-1]
            os.fchmod(fd, 0o700)  # the owner (or root) may always do this; lets us list and unlink
            child = None
            with os.scandir(fd) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        try:
                            os.rmdir(entry.name, dir_fd=fd)  # empty: done without descending
                        except OSError as problem:
                            if problem.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                                raise
                            if len(stack) < _MAX_OPEN_LEVELS:
                                child = _open_folder(entry.name, fd)
                                break
                            # Deep enough: move the rest of this branch up below the top, which a later scan
                            # of the top finds, so at most _MAX_OPEN_LEVELS folders are ever open at once.
                            os.rename(entry.name, f".t2-deep-{secrets.token_hex(8)}", src_dir_fd=fd, dst_dir_fd=top)
                    else:
                        os.unlink(entry.name, dir_fd=fd)
            if child is not None:
                stack.append(child)
                continue
            stack.pop()  # fd's folder is empty now: the next scan of its parent removes it
            os.close(fd)
        os.rmdir(path)
    finally:
        for fd in stack:
            os.close(fd)
