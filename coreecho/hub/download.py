"""Downloading one published file over HTTP(S): Google Drive's confirmation step, resume, progress, clear timeouts.

coreecho's own small client on :mod:`urllib`, rather than a dependency such as ``gdown``: the one file it fetches
(the authors' ``best.pth``) needs four things that must be tested here, against a local server, without the
network: Google Drive's confirmation page for large files (an HTML page whose form or link carries ``confirm=``,
and ``uuid=`` on ``drive.usercontent.google.com``; the page is parsed, never trusted: only a link back to the same
file is followed), resuming a partial ``.part`` file with an HTTP ``Range`` request (a transfer cut short, a
``Content-Length`` larger than what arrived, is resumed, up to :data:`ATTEMPTS` times), progress on the terminal
(``tqdm``, off when stderr is not a terminal), and a timeout that says what happened (no byte for
:data:`DOWNLOAD_TIMEOUT` seconds). Nothing here knows about models or checksums beyond the expected size:
:mod:`coreecho.hub.published` fingerprints what arrives.

Example:
    >>> drive_file_id("https://drive.google.com/file/d/1ZNF4lMTLEnaZyhVHHTUW_MctB7kDGP6o/view?usp=sharing")
    '1ZNF4lMTLEnaZyhVHHTUW_MctB7kDGP6o'
    >>> direct_url("https://drive.google.com/file/d/abc_123/view")
    'https://drive.usercontent.google.com/download?id=abc_123&export=download'
"""

from __future__ import annotations

import html
import http.client
import re
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from http.cookiejar import CookieJar
from pathlib import Path

from coreecho._atomic import install
from coreecho._version import __version__
from coreecho.errors import ChecksumError, ModelNotFoundError

__all__ = ["download", "drive_file_id", "direct_url", "confirmation_url", "is_url", "local_path", "DOWNLOAD_TIMEOUT",
           "ATTEMPTS", "PART_SUFFIX"]

#: Seconds without a byte from the server before a download stops (the partial file is kept for a resume).
DOWNLOAD_TIMEOUT = 30.0
#: Transfers cut short are resumed (HTTP ``Range``) this many times in one call before giving up.
ATTEMPTS = 4
#: Suffix of the partial file next to the target; a later call resumes it.
PART_SUFFIX = ".part"
_MAX_PAGES = 3  # confirmation pages followed for one transfer
_CHUNK = 1 << 20


def drive_file_id(url: str) -> str | None:
    """The file id of a Google Drive link (``/file/d/ID``, ``?id=ID``), or ``None`` for another URL."""
    parts = urllib.parse.urlparse(url)
    if not (parts.hostname or "").endswith(("drive.google.com", "drive.usercontent.google.com", "docs.google.com")):
        return None
    match = re.search(r"/file/d/([\w-]+)", parts.path)
    if match:
        return match.group(1)
    ids = urllib.parse.parse_qs(parts.query).get("id")
    return ids[0] if ids else None


def direct_url(url: str) -> str:
    """The URL that serves the file itself: Google Drive viewer links become their download endpoint."""
    file_id = drive_file_id(url)
    if file_id is None or "usercontent" in (urllib.parse.urlparse(url).hostname or ""):
        return url
    return f"https://drive.usercontent.google.com/download?id={file_id}&export=download"


class _Forms(HTMLParser):
    """Forms (action + hidden inputs) and links of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((a.get("action", ""), {}))
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1][1][a["name"]] = a.get("value", "")
        elif tag == "a" and a.get("href"):
            self.links.append(a["href"])


def confirmation_url(page: str, page_url: str) -> str | None:
    """The "download anyway" URL of a confirmation page (a form with ``confirm``, a link or a bare token).

    Example:
        >>> page = ('<form action="/download" method="get"><input type="hidden" name="id" value="F">'
        ...         '<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="u1"></form>')
        >>> confirmation_url(page, "http://host/download?id=F")
        'http://host/download?id=F&confirm=t&uuid=u1'
    """
    parser = _Forms()
    try:
        parser.feed(page)
    except Exception:  # noqa: BLE001 - a malformed page is simply not a confirmation page
        return None
    for action, fields in parser.forms:
        if "confirm" in fields:
            target = urllib.parse.urljoin(page_url, html.unescape(action) or page_url)
            return target.split("?")[0] + "?" + urllib.parse.urlencode(fields)
    for href in parser.links:
        if "confirm=" in href:
            return urllib.parse.urljoin(page_url, html.unescape(href))
    token = re.search(r"confirm=([0-9A-Za-z_-]+)", page)
    if token:
        sep = "&" if "?" in page_url else "?"
        return f"{page_url}{sep}confirm={token.group(1)}"
    return None


def _same_file(first: str, then: str) -> bool:
    """A confirmation link may only lead back to the same file (same Drive id, or the same host)."""
    a, b = drive_file_id(first), drive_file_id(then)
    if a is not None or b is not None:
        return a == b
    return urllib.parse.urlparse(first).hostname == urllib.parse.urlparse(then).hostname


def _progress(total: int | None, initial: int, name: str, show: bool | None):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    disable = (not sys.stderr.isatty()) if show is None else not show
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
                disable=disable, file=sys.stderr, leave=False)


def download(url: str, target: str | Path, *, expected_size: int | None = None,
             timeout: float = DOWNLOAD_TIMEOUT, progress: bool | None = None) -> Path:
    """Download ``url`` to ``target`` (atomically), through confirmation pages, resuming a ``.part`` file.

    Args:
        url: ``http(s)://`` URL; a Google Drive viewer link is turned into its download endpoint.
        target: the file to write (its folder is created).
        expected_size: bytes the file must have, when known (a different size is refused, the part deleted).
        timeout: seconds without data before giving up (the part file is kept: a next call resumes it).
        progress: show a progress bar (``None``: when stderr is a terminal).

    Returns:
        ``target``.

    Raises:
        ModelNotFoundError: the server cannot be reached, answers with an error, keeps sending a page instead of
            the file, times out, or the transfer stays incomplete after :data:`ATTEMPTS` tries.
        ChecksumError: the file's size differs from ``expected_size``.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + PART_SUFFIX)
    start = direct_url(url)
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    fetch_url, why = start, ""
    for _attempt in range(ATTEMPTS):
        done, fetch_url, why = _transfer(opener, start, fetch_url, part, expected_size, timeout, progress)
        if done:
            break
    else:
        raise ModelNotFoundError(f"{url}: the transfer stayed incomplete after {ATTEMPTS} attempts ({why}); the "
                                 f"partial file {part} is kept and the next try resumes it.")
    size = part.stat().st_size
    if expected_size is not None and size != expected_size:
        part.unlink(missing_ok=True)
        raise ChecksumError(f"{url}: received {size} bytes, but the published file has {expected_size}; the file "
                            "was discarded (a changed upstream file, or a page instead of the file).")
    return install(part, target)


def _open(opener: urllib.request.OpenerDirector, url: str, offset: int, timeout: float
          ) -> http.client.HTTPResponse:
    headers = {"User-Agent": f"coreecho/{__version__} (+https://github.com/BioMedIA-MBZUAI/CoReEcho)"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416:
            return err  # type: ignore[return-value] - handled by the caller (the part may be complete)
        raise ModelNotFoundError(f"{url}: the server answered HTTP {err.code} {err.reason}.") from err
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise ModelNotFoundError(f"{url}: no answer within {timeout:g} s (timeout).") from err
        raise ModelNotFoundError(f"{url}: cannot connect ({reason}).") from err


def _transfer(opener: urllib.request.OpenerDirector, start: str, url: str, part: Path, expected_size: int | None,
              timeout: float, progress: bool | None) -> tuple[bool, str, str]:
    """One request (after any confirmation pages), appended to ``part``: (complete?, URL to resume, why not)."""
    offset = part.stat().st_size if part.is_file() else 0
    for _page in range(_MAX_PAGES + 1):
        resp = _open(opener, url, offset, timeout)
        if resp.status == 416:  # nothing left to send: the part is the whole file, or is wrong
            resp.close()
            if expected_size is None or offset == expected_size:
                return True, url, ""
            part.unlink(missing_ok=True)
            return False, url, f"the server refused to resume at byte {offset}"
        kind = resp.headers.get_content_type()
        if kind != "text/html":
            break
        page = resp.read(2 << 20).decode("utf-8", "replace")
        resp.close()
        nxt = confirmation_url(page, resp.geturl())
        if nxt is None or not _same_file(start, nxt):
            title = re.search(r"<title>(.*?)</title>", page, re.S | re.I)
            raise ModelNotFoundError(
                f"{url}: the server sent a web page instead of the file"
                f"{' (' + title.group(1).strip()[:120] + ')' if title else ''}: the download quota may be exceeded "
                "or the file moved. Download it in a browser instead (see below).")
        url = nxt
    else:
        raise ModelNotFoundError(f"{url}: still a confirmation page after {_MAX_PAGES} confirmations.")
    if offset and resp.status != 206:  # the server ignored the Range: start again from byte 0
        offset = 0
    length = resp.headers.get("Content-Length")
    total = offset + int(length) if length and length.isdigit() else expected_size
    bar = _progress(total, offset, part.name[: -len(PART_SUFFIX)], progress)
    received = offset
    why = ""
    try:
        with open(part, "ab" if offset else "wb") as fh:
            while True:
                try:
                    block = resp.read1(_CHUNK)  # what has arrived: a stall keeps every byte before it
                except http.client.IncompleteRead as err:
                    fh.write(err.partial)
                    received += len(err.partial)
                    why = f"connection closed at byte {received} of {total}"
                    break
                except (socket.timeout, TimeoutError) as err:
                    raise ModelNotFoundError(
                        f"{url}: no data for {timeout:g} s (timeout) after {received} bytes; the partial file "
                        f"{part} is kept and the next try resumes it.") from err
                except OSError as err:
                    why = f"connection lost at byte {received} ({err})"
                    break
                if not block:
                    break
                fh.write(block)
                received += len(block)
                if bar is not None:
                    bar.update(len(block))
    finally:
        resp.close()
        if bar is not None:
            bar.close()
    if total is not None and received < total:
        return False, url, why or f"received {received} of {total} bytes"
    return True, url, ""


def is_url(text: str) -> bool:
    """Whether ``text`` is an ``http(s)://`` or ``file://`` URL."""
    return urllib.parse.urlparse(str(text)).scheme in ("http", "https", "file")


def local_path(text: str) -> Path:
    """The path of a ``file://`` URL (or the text itself)."""
    parts = urllib.parse.urlparse(str(text))
    return Path(urllib.request.url2pathname(parts.path)) if parts.scheme == "file" else Path(text).expanduser()

