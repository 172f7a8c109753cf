"""Write the HTML template `dvc plots show` uses (`plots.html_template` in .dvc/config), with
Vega, Vega-Lite and vega-embed inlined, so that the charts draw on a closed network.

DVC's own page loads the three libraries from a CDN and stays blank without the internet.
`make install` installs them from the npm registry (versions pinned in package-lock.json beside
this script) and runs::

    python scripts/offline_plots/make_template.py NODE_MODULES OUT_HTML

The template holds DVC's placeholders ``{plot_divs}`` and ``{refresh_tag}`` but not
``{scripts}``, where DVC would put its CDN ``<script>`` tags.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

LIBRARIES = (  # load order: vega-embed needs vega and vega-lite
    ("vega", "build/vega.min.js"),
    ("vega-lite", "build/vega-lite.min.js"),
    ("vega-embed", "build/vega-embed.min.js"),
)
DVC_PLACEHOLDERS = ("{plot_divs}", "{refresh_tag}", "{scripts}")

PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot (riskml, offline)</title>
    <!-- {versions}: inlined by scripts/offline_plots/make_template.py, no network needed -->
{inline_scripts}
    <style>
        table {{ border-spacing: 15px; }}
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def _script(node_modules: Path, package: str, build: str) -> tuple[str, str]:
    """The ``<script>`` element inlining ``package``'s ``build`` file, and ``package@version``."""
    folder = node_modules / package
    try:
        code = (folder / build).read_text(encoding="utf-8")
        version = json.loads((folder / "package.json").read_text(encoding="utf-8"))["version"]
    except FileNotFoundError as exc:
        raise SystemExit(
            f"{folder / build}: not found; install the libraries first "
            f"(npm ci --prefix {node_modules.parent}, as `make install` does)"
        ) from exc
    found = [p for p in DVC_PLACEHOLDERS if p in code]
    if found:  # DVC would substitute inside the library's code
        raise SystemExit(f"{folder / build}: holds DVC's placeholder(s) {found}; cannot inline it")
    code = code.replace("</script", "<\\/script")  # cannot close the inline element early
    return f'    <script type="text/javascript">\n{code}\n    </script>', f"{package}@{version}"


def template(node_modules: Path) -> str:
    """The page with the three libraries inlined."""
    scripts, versions = zip(*(_script(node_modules, p, b) for p, b in LIBRARIES), strict=True)
    return PAGE.format(
        refresh_tag="{refresh_tag}",
        plot_divs="{plot_divs}",
        versions=", ".join(versions),
        inline_scripts="\n".join(scripts),
    )


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit(__doc__)
    node_modules, out = Path(argv[0]), Path(argv[1])
    page = template(node_modules)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    print(f"{out}: DVC plots template with Vega inlined ({len(page) / 1e6:.1f} MB)")


if __name__ == "__main__":
    main(sys.argv[1:])
