#!/usr/bin/env python3
"""Vendors the NHS.UK frontend's stylesheet for the dashboard (assets/nhsuk/).

    python3 tools/vendor_nhsuk.py [path/to/nhsuk-frontend-VERSION.tgz]

Without a path it runs `npm pack nhsuk-frontend@VERSION` in a temporary directory. The
stylesheet is changed in two ways, so the dashboard's Content-Security-Policy (`style-src 'self';
font-src 'none'`) holds and the browser asks nothing of any other site:

- the Frutiger `@font-face` rules, which load fonts from assets.nhs.uk, are removed (the
  frontend's own font stack falls back to Arial, as it does wherever Frutiger is unavailable);
- its icon URLs (`/assets/images/...`) are pointed at the dashboard's own copies
  (`/dashboard/assets/images/...`), vendored beside it.
"""

import json
import pathlib
import re
import subprocess
import sys
import tarfile
import tempfile

VERSION = "10.6.1"
ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "assets" / "nhsuk"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if len(sys.argv) > 1:
            tgz = pathlib.Path(sys.argv[1])
        else:
            subprocess.run(
                ["npm", "pack", f"nhsuk-frontend@{VERSION}", "--silent"],
                cwd=tmp,
                check=True,
            )
            tgz = pathlib.Path(tmp) / f"nhsuk-frontend-{VERSION}.tgz"
        with tarfile.open(tgz) as archive:
            package = json.load(archive.extractfile("package/package.json"))
            assert package["version"] == VERSION, package["version"]
            css = archive.extractfile("package/dist/nhsuk/nhsuk-frontend.min.css").read().decode()
            fonts = re.findall(r"@font-face\{[^}]*\}", css)
            assert len(fonts) == 2 and all("assets.nhs.uk" in f for f in fonts), fonts
            css = re.sub(r"@font-face\{[^}]*\}", "", css)
            icons = sorted(set(re.findall(r"url\(/assets/images/([a-z0-9-]+\.svg)\)", css)))
            css = css.replace("url(/assets/images/", "url(/dashboard/assets/images/")
            remote = re.findall(r"url\((?!/dashboard/assets/)[^)]*\)", css)
            assert not remote, remote
            OUT.mkdir(parents=True, exist_ok=True)
            (OUT / "images").mkdir(exist_ok=True)
            (OUT / "nhsuk-frontend.min.css").write_text(css)
            for icon in icons:
                data = archive.extractfile(f"package/dist/nhsuk/assets/images/{icon}").read()
                (OUT / "images" / icon).write_bytes(data)
            (OUT / "NOTICE").write_text(
                f"nhsuk-frontend {VERSION} (https://github.com/nhsuk/nhsuk-frontend), "
                f"licence {package['license']}, by {package.get('author', {}).get('name', 'NHS England')}.\n"
                "Vendored by tools/vendor_nhsuk.py: the Frutiger @font-face rules removed, icon URLs\n"
                "pointed at /dashboard/assets/images/. Icons: " + ", ".join(icons) + "\n"
            )
    print(f"vendored nhsuk-frontend {VERSION}: {len(css)} bytes of CSS, {len(icons)} icons")


if __name__ == "__main__":
    main()
