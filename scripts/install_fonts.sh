#!/usr/bin/env bash
# More fonts for the `glyphs` data source (meta-training data; never an evaluation dataset).
# The glyph set depends on the fonts installed: install the same list on every machine that
# continues a run (the cache key of the rendered glyphs includes the font files).
set -euo pipefail
PACKAGES="fonts-dejavu-core fonts-liberation fonts-freefont-ttf fonts-urw-base35 fonts-crosextra-carlito
fonts-crosextra-caladea fonts-linuxlibertine fonts-texgyre"
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq $PACKAGES >/dev/null
python3 - <<'PY' 2>/dev/null || true
import glob
print(f"install_fonts: {len(glob.glob('/usr/share/fonts/**/*.[ot]tf', recursive=True))} font files under /usr/share/fonts")
PY
