"""Serving a stored file to someone already allowed to see it: byte ranges from local disk,
or a short-lived signed URL when the storage is a bucket (the bytes then never pass through
a web server). Every caller checks access first; this module only serves."""

from __future__ import annotations

from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect


class Slice:
    """`length` bytes of an open file from where it stands, read in chunks (FileResponse)."""

    def __init__(self, handle, length: int) -> None:
        self.handle, self.left = handle, length

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        data = self.handle.read(size) if size else b""
        self.left -= len(data)
        return data

    def close(self) -> None:
        self.handle.close()


def byte_range(header: str, size: int) -> tuple[int, int] | str | None:
    """The one byte range a `Range` header asks for, "unsatisfiable", or None for the whole
    file (no header, several ranges, or one we do not understand: RFC 9110 lets us ignore it)."""
    if not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[6:].strip().partition("-")
    if not (first.isdigit() or last.isdigit()) or (first and not first.isdigit()) \
            or (last and not last.isdigit()):
        return None
    if not first:  # the last N bytes
        length = int(last)
        return (max(0, size - length), size - 1) if length and size else "unsatisfiable"
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        return "unsatisfiable"
    return start, end


def serve_file(field, content_type: str, *, request: HttpRequest,
               download_name: str = "") -> HttpResponse:
    """`download_name`: offered as a download under that name, else shown inline (players)."""
    disposition = f'attachment; filename="{download_name}"' if download_name else "inline"
    storage = field.storage
    try:
        storage.path(field.name)
    except NotImplementedError:
        # Object storage: hand out a short-lived signed URL instead of proxying the bytes, so
        # media never passes through a web server. Only after the caller's access check; the
        # bucket answers with the type we validated, shown inline, whatever was stored.
        response = HttpResponseRedirect(storage.url(field.name, parameters={
            "ResponseContentType": content_type, "ResponseContentDisposition": disposition}))
        # The address expires (S3_URL_EXPIRY): a cached redirect would outlive it.
        response["Cache-Control"] = "private, no-store"
        return response
    size = storage.size(field.name) if storage.exists(field.name) else None
    if size is None:
        # A row whose file is gone (media restored from an older backup): a missing picture,
        # not a server error per card.
        raise Http404("No such file")
    wanted = byte_range(request.headers.get("Range", ""), size)
    if wanted == "unsatisfiable":
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
        return response
    handle = storage.open(field.name, "rb")
    if wanted:
        # Players seek by asking for part of the file; Chromium cannot seek a video whose
        # server answers every request with the whole file.
        start, end = wanted
        handle.seek(start)
        response = FileResponse(Slice(handle, end - start + 1), content_type=content_type,
                                status=206)
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
        response["Content-Length"] = str(end - start + 1)
    else:
        response = FileResponse(handle, content_type=content_type)
    response["Accept-Ranges"] = "bytes"
    response["Content-Disposition"] = disposition
    # Even a file that slipped through must not run as a page on our origin.
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, max-age=3600"
    return response
