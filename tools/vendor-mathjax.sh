#!/usr/bin/env bash
# Re-create _vendor/mathjax: MathJax 3 served by the book itself, so equations are
# typeset with no network (readers offline, the browser test in tests/test_site.py).
# Takes only what the book loads: es5/tex-chtml-full.js (TeX input with every
# extension built in, so nothing is fetched on demand), the CommonHTML woff-v2
# fonts it loads from [mathjax]/output/chtml/fonts/woff-v2, and the licence.
# Usage: tools/vendor-mathjax.sh [version]   (needs npm; default 3.2.2)
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:-3.2.2}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "mathjax@$version" >/dev/null && tar xzf mathjax-*.tgz)
dest=_vendor/mathjax
rm -rf "$dest"
mkdir -p "$dest/output/chtml/fonts"
cp "$work/package/es5/tex-chtml-full.js" "$dest/"
cp -r "$work/package/es5/output/chtml/fonts/woff-v2" "$dest/output/chtml/fonts/"
cp "$work/package/LICENSE" "$dest/LICENSE"
cat > "$dest/VENDORED.txt" <<TXT
MathJax $version (Apache License 2.0, see LICENSE), from the npm package mathjax@$version:
  es5/tex-chtml-full.js, es5/output/chtml/fonts/woff-v2/*.woff.
Re-create with tools/vendor-mathjax.sh. _config.yml copies _vendor/ into _static/ of the site (html_static_path)
and points sphinx.config.mathjax_path at _static/mathjax/tex-chtml-full.js.
TXT
du -sh "$dest"
