#!/usr/bin/env bash
# Offline MathJax for the HTML book (called by scripts/setup.sh; safe to run any number of times).
#
# The book must typeset its equations with no network, so MathJax is served from the build
# (`_static/mathjax/`) instead of a CDN. This script puts a pinned, checksum-verified MathJax 3
# release into `book/_vendor/mathjax/`; `_config.yml` lists `book/_vendor` in `html_static_path`
# and points `mathjax_path` at it. The folder sits under book/ so that the staged copies of the
# book sources (scripts/build_book.py) carry it, and it ignores itself in git (it holds
# third-party code, never committed).
#
# Where the release comes from, first that works:
#   1. MATHJAX_TARBALL=/path/to/mathjax-3.2.2.tgz   (for machines with no registry access)
#   2. `npm pack mathjax@3.2.2` (the npm cache makes later runs offline)
#   3. as root with apt-get and no npm: install Debian's npm, then 2.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=3.2.2
SHA256=1b9c0a1c44df864e915690558e72adb9cc5203360daefd385084ced3b6c64c09  # of mathjax-3.2.2.tgz on npm
VENDOR=book/_vendor
TARGET="$VENDOR/mathjax"
STAMP="$TARGET/.installed-$VERSION-${SHA256:0:16}"

if [ -f "$STAMP" ] && [ -f "$TARGET/tex-mml-chtml.js" ]; then
  exit 0
fi

fail() {
  echo "[fetch_mathjax] error: $*" >&2
  echo "[fetch_mathjax]   The book needs a local MathJax $VERSION to show equations offline." >&2
  echo "[fetch_mathjax]   Fix: install node/npm (Debian: apt-get install npm) and rerun 'make setup', or run" >&2
  echo "[fetch_mathjax]   'npm pack mathjax@$VERSION' on a machine with npm access, copy the .tgz here and run" >&2
  echo "[fetch_mathjax]   MATHJAX_TARBALL=/path/to/mathjax-$VERSION.tgz bash scripts/fetch_mathjax.sh" >&2
  exit 1
}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [ -n "${MATHJAX_TARBALL:-}" ]; then
  [ -f "$MATHJAX_TARBALL" ] || fail "MATHJAX_TARBALL=$MATHJAX_TARBALL does not exist"
  cp "$MATHJAX_TARBALL" "$work/mathjax-$VERSION.tgz"
else
  if ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "[fetch_mathjax] apt-get install npm (to fetch MathJax)"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null \
        || fail "apt-get could not install npm"
    else
      fail "npm is not installed and MATHJAX_TARBALL is not set"
    fi
  fi
  echo "[fetch_mathjax] npm pack mathjax@$VERSION"
  (cd "$work" && npm pack --silent --prefer-offline "mathjax@$VERSION" >/dev/null 2>"$work/npm.log") \
    || { cat "$work/npm.log" >&2; fail "npm could not fetch mathjax@$VERSION"; }
fi

echo "$SHA256  $work/mathjax-$VERSION.tgz" | sha256sum --check --status \
  || fail "checksum mismatch for mathjax-$VERSION.tgz (expected sha256 $SHA256)"

tar -xzf "$work/mathjax-$VERSION.tgz" -C "$work"
es5="$work/package/es5"
# Keep what the CommonHTML renderer of tex-mml-chtml.js can load (TeX extensions, CHTML fonts,
# accessibility menu and speech); drop the SVG renderer, the combined "full" bundles and node-only code.
rm -rf "$es5"/output/svg* "$es5"/*svg*.js "$es5"/*-full*.js "$es5"/node-main.js

staging="$VENDOR/.mathjax-staging"
rm -rf "$staging"
mkdir -p "$VENDOR"
printf '# third-party files fetched by scripts/fetch_mathjax.sh: never committed\n*\n' > "$VENDOR/.gitignore"
cp -r "$es5" "$staging"
cp "$work/package/LICENSE" "$staging/LICENSE"
touch "$staging/.installed-$VERSION-${SHA256:0:16}"
rm -rf "$TARGET"
mv "$staging" "$TARGET"  # the finished folder appears in one step: an interrupted run leaves no half copy
echo "[fetch_mathjax] MathJax $VERSION in $TARGET ($(du -sh "$TARGET" | cut -f1))"
