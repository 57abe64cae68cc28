"""Where data files live, and how a missing one is fetched safely.

Two kinds of copies exist. *Offline copies* (a folder named by ``FEDLEARN_DATA_DIR``, e.g. the
course's shared data folder on a machine without internet) may have been re-saved by someone
else, so they are trusted only after the caller's schema check. *Downloads* come from the
publisher and are verified against the published md5 before they ever reach the cache, so a
half-written or tampered file is never picked up by a later run.

Search order for ``{subdir}/{filename}``:

1. ``root`` argument, if given: ``root/{subdir}/{filename}``, then ``root/{filename}``
   (an explicit argument wins over the environment, and downloads go there too);
2. otherwise ``$FEDLEARN_DATA_DIR/{subdir}/{filename}``, then ``$FEDLEARN_DATA_DIR/{filename}``;
3. then the cache, ``cache_dir()/{subdir}/{filename}``, where downloads are stored.

``cache_dir()`` is ``$FEDLEARN_CACHE_DIR`` if set, else the repository's git-ignored ``data/``
folder when running from a checkout (recognised by its ``README.md``), else ``~/.cache/fedlearn``.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.request
from pathlib import Path

from tqdm import tqdm

from fedlearn.data.errors import ChecksumError, CorruptFileError, DataNotFoundError

__all__ = [
    "ENV_DATA_DIR",
    "ENV_CACHE_DIR",
    "project_data_dir",
    "cache_dir",
    "candidate_paths",
    "md5sum",
    "download_file",
    "locate",
]

ENV_DATA_DIR = "FEDLEARN_DATA_DIR"
ENV_CACHE_DIR = "FEDLEARN_CACHE_DIR"
_CHUNK = 1 << 16


def project_data_dir() -> Path | None:
    """The checkout's ``data/`` folder, or None when fedlearn is installed elsewhere.

    The README marker keeps an installed package (site-packages has no ``data/README.md``)
    from scattering downloads next to the interpreter.
    """
    folder = Path(__file__).resolve().parents[2] / "data"
    return folder if (folder / "README.md").is_file() else None


def cache_dir(root: str | Path | None = None) -> Path:
    """Folder that receives downloads: ``root``, ``$FEDLEARN_CACHE_DIR``, repo ``data/``, home."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser()
    return project_data_dir() or Path.home() / ".cache" / "fedlearn"


def candidate_paths(subdir: str, filename: str, root: str | Path | None = None) -> list[Path]:
    """Every local path where ``filename`` may be, in the order they are tried."""
    if root is not None:
        base = Path(root).expanduser()
        return [base / subdir / filename, base / filename]
    paths: list[Path] = []
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        base = Path(env).expanduser()
        paths += [base / subdir / filename, base / filename]
    paths.append(cache_dir() / subdir / filename)
    unique: list[Path] = []
    for path in paths:
        if path not in unique:
            unique.append(path)
    return unique


def md5sum(path: str | Path) -> str:
    """Hex md5 of a file, read in chunks so large archives do not fill memory."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(
    url: str,
    dest: str | Path,
    md5: str | None,
    *,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Stream ``url`` to ``dest`` through a temporary file, verifying ``md5`` before the move.

    The temporary file sits next to ``dest`` so the final ``os.replace`` is atomic: readers see
    either no file or the complete, verified one. Any failure deletes the temporary file.
    Network problems surface as ``OSError``/``http.client.HTTPException`` (the caller turns
    them into :class:`DataNotFoundError`); a wrong md5 raises :class:`ChecksumError`.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    digest = hashlib.md5()
    written = 0
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length else None
            with tqdm(
                total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress
            ) as bar:
                while chunk := resp.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
        if total is not None and written != total:
            raise CorruptFileError(
                f"download of {url} to {dest} stopped after {written} of {total} bytes",
                path=dest,
            )
        if md5 is not None and digest.hexdigest() != md5.lower():
            raise ChecksumError(
                f"md5 of the file downloaded from {url} is {digest.hexdigest()}, expected {md5}; "
                f"the download was discarded and nothing was written to {dest}",
                path=dest,
            )
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def locate(
    subdir: str,
    filename: str,
    *,
    url: str,
    md5: str | None,
    root: str | Path | None = None,
    download: bool = True,
    progress: bool = True,
) -> Path:
    """Return a local path for ``subdir/filename``, downloading it into the cache if needed.

    Local files are returned unverified (the caller schema-checks them); only fresh downloads
    are md5-checked. Raises :class:`DataNotFoundError` listing every searched path when there
    is no local copy and downloading is disabled or fails.
    """
    searched = candidate_paths(subdir, filename, root)
    for path in searched:
        if path.is_file():
            return path
    target = cache_dir(root) / subdir / filename
    listing = "\n".join(f"  - {path}" for path in searched)
    advice = (
        f"Put the official file ({url}) at one of these paths, or set {ENV_DATA_DIR} to a "
        f"folder that contains {subdir}/{filename}."
    )
    if not download:
        raise DataNotFoundError(
            f"{filename} not found and download=False. Searched:\n{listing}\n{advice}",
            path=target,
            searched=tuple(searched),
        )
    try:
        return download_file(url, target, md5, progress=progress)
    except (OSError, http.client.HTTPException) as exc:
        raise DataNotFoundError(
            f"{filename} not found locally and downloading {url} to {target} failed "
            f"({type(exc).__name__}: {exc}). Searched:\n{listing}\n{advice}",
            path=target,
            searched=tuple(searched),
        ) from exc
