"""Lays out the printable board's HTML as a PDF, in a process of its own.

`storyboard.printing` runs this as `python -m storyboard.pdfrender STYLESHEET`: the HTML on
stdin, the PDF on stdout, the page count and size (and any refused URL) on stderr. A separate
process because WeasyPrint changes Pillow for the whole process when it is imported (it turns on
`ImageFile.LOAD_TRUNCATED_IMAGES`, which upload inspection relies on being off, see media.py),
and because a large layout's memory and CPU then belong to a short-lived child, not to a web
server. No Django here: every image arrives inside the HTML as a data: URI, and nothing else
is ever fetched.
"""

from __future__ import annotations

import sys

# Exit statuses the parent tells apart.
NO_PANGO = 3


def main(stylesheet: str) -> int:
    try:
        import weasyprint
        from weasyprint.urls import URLFetcher
    except OSError as e:  # the package is there, the system's Pango is not
        print(e, file=sys.stderr)
        return NO_PANGO

    class DataOnly(URLFetcher):
        def fetch(self, url: str, headers: dict | None = None):
            if not url.startswith("data:"):
                print(f"refused {url}", file=sys.stderr)
                raise ValueError(f"The printed board loads nothing from outside: {url!r}")
            return super().fetch(url, headers)

    html = sys.stdin.buffer.read().decode()
    document = weasyprint.HTML(string=html, url_fetcher=DataOnly(allowed_protocols=["data"]),
                               base_url="data:,").render(
        stylesheets=[weasyprint.CSS(filename=stylesheet)])
    sys.stdout.buffer.write(document.write_pdf())
    first = document.pages[0]
    # Page size in points (CSS pixels are 3/4 of a point), for the parent's record and tests.
    print(f"pages={len(document.pages)} size={first.width * 0.75:.0f}x{first.height * 0.75:.0f}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
