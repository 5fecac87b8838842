#!/usr/bin/env bash
# Installs the system packages Tabtune's tests need: a Vulkan driver that WebGPU (Dawn) can use in
# Node (Mesa lavapipe >= 25 from bookworm-backports) and Debian's Chromium for browser tests.
# Idempotent: does nothing when both are present. As root on Debian it installs them; otherwise it
# prints what to install and exits non-zero.
set -euo pipefail

LVP_ICD=/usr/share/vulkan/icd.d/lvp_icd.json
CHROMIUM=/usr/bin/chromium

mesa_ok() {
  [ -f "$LVP_ICD" ] || return 1
  local v
  v=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)
  # Dawn rejects Mesa 22.x lavapipe; we need 25.x or newer.
  local major=${v%%.*}; major=${major##*:}
  [ -n "$major" ] && [ "$major" -ge 25 ] 2>/dev/null
}

need_mesa=0; need_chromium=0
mesa_ok || need_mesa=1
[ -x "$CHROMIUM" ] || need_chromium=1
if [ $need_mesa = 0 ] && [ $need_chromium = 0 ]; then exit 0; fi

if [ "$(id -u)" != 0 ] || [ ! -f /etc/debian_version ]; then
  echo "tabtune: missing system packages for the GPU tests:" >&2
  [ $need_mesa = 1 ] && echo "  - Mesa lavapipe Vulkan driver >= 25 (Debian: mesa-vulkan-drivers from bookworm-backports; expects $LVP_ICD)" >&2
  [ $need_chromium = 1 ] && echo "  - Chromium at $CHROMIUM (Debian: apt-get install chromium)" >&2
  echo "Install them (as root: bash scripts/setup-system.sh) and run again." >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
if [ $need_mesa = 1 ]; then
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
  src=/etc/apt/sources.list.d/debian.sources
  bp=/etc/apt/sources.list.d/tabtune-backports.sources
  if ! grep -rqs "${codename}-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    if [ -f "$src" ]; then
      # Copy the stanza whose Suites line holds the plain codename, with that line renamed.
      awk -v c="$codename" '
        BEGIN { RS = ""; ORS = "\n\n" }
        {
          n = split($0, lines, "\n"); hit = 0; out = ""
          for (i = 1; i <= n; i++) {
            if (lines[i] ~ /^Suites:/) {
              m = split(lines[i], w, /[ \t]+/)
              for (j = 2; j <= m; j++) if (w[j] == c) hit = 1
              lines[i] = "Suites: " c "-backports"
            }
            out = out lines[i] (i < n ? "\n" : "")
          }
          if (hit && !done) { print out; done = 1 }
        }' "$src" > "$bp.tmp"
      if [ -s "$bp.tmp" ]; then mv "$bp.tmp" "$bp"; else rm -f "$bp.tmp"; fi
    fi
    if [ ! -f "$bp" ] && [ -f /etc/apt/sources.list ]; then
      line=$(grep -E "^deb [^ ]+ ${codename} " /etc/apt/sources.list | head -n1 || true)
      [ -n "$line" ] && echo "$line" | sed -E "s/ ${codename} / ${codename}-backports /" > /etc/apt/sources.list.d/tabtune-backports.list
    fi
  fi
fi
apt-get update -qq
[ $need_chromium = 1 ] && apt-get install -y -qq chromium >/dev/null
if [ $need_mesa = 1 ]; then
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
  apt-get install -y -qq -t "${codename}-backports" mesa-vulkan-drivers >/dev/null
fi
mesa_ok || { echo "tabtune: lavapipe >= 25 still missing after install" >&2; exit 1; }
[ -x "$CHROMIUM" ] || { echo "tabtune: chromium still missing after install" >&2; exit 1; }
echo "tabtune: system packages ready (mesa-vulkan-drivers $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers), $($CHROMIUM --version 2>/dev/null))"
