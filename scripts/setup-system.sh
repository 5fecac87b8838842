#!/usr/bin/env bash
# Installs the system packages Tabtune's tests need on Debian:
#   - a Vulkan driver that WebGPU (Dawn, in Node) accepts without a GPU: Mesa lavapipe >= 25
#     (package mesa-vulkan-drivers; on bookworm it comes from bookworm-backports, since the 22.3 in
#     bookworm main is rejected by Dawn),
#   - Debian's Chromium (/usr/bin/chromium) for the browser tests (WebGPU on its SwiftShader).
# Idempotent: exits at once when both are present (no apt-get update). As root on Debian it
# installs what is missing; otherwise it prints what to install and exits 1.
# Called by scripts/ensure.mjs (npm test / npm run bench); can also be run by hand.
set -euo pipefail

LVP_ICD=/usr/share/vulkan/icd.d/lvp_icd.json
CHROMIUM=/usr/bin/chromium
MIN_MESA=25

# Major version of a Debian version string ("1:25.0.7-2~bpo12+1" -> 25); empty when none.
major_of() {
  local v=${1#*:}
  v=${v%%.*}
  [[ $v =~ ^[0-9]+$ ]] && echo "$v" || true
}

mesa_ok() {
  [ -f "$LVP_ICD" ] || return 1
  local m
  m=$(major_of "$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)")
  [ -n "$m" ] && [ "$m" -ge "$MIN_MESA" ]
}

need_mesa=0
need_chromium=0
mesa_ok || need_mesa=1
[ -x "$CHROMIUM" ] || need_chromium=1
if [ "$need_mesa" = 0 ] && [ "$need_chromium" = 0 ]; then exit 0; fi

if [ "$(id -u)" != 0 ] || [ ! -f /etc/debian_version ] || ! command -v apt-get >/dev/null; then
  echo "tabtune: missing system packages for the GPU tests:" >&2
  if [ "$need_mesa" = 1 ]; then
    echo "  - Mesa lavapipe Vulkan driver >= $MIN_MESA ($LVP_ICD). Debian 12: enable bookworm-backports, then" >&2
    echo "      apt-get install -t bookworm-backports mesa-vulkan-drivers" >&2
  fi
  if [ "$need_chromium" = 1 ]; then
    echo "  - Chromium at $CHROMIUM. Debian: apt-get install chromium" >&2
  fi
  echo "Run this script as root on Debian (bash scripts/setup-system.sh) to install them." >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[ -n "$codename" ] || { echo "tabtune: cannot tell the Debian release (no VERSION_CODENAME in /etc/os-release)" >&2; exit 1; }

# Adds <codename>-backports next to the existing Debian entry (same mirror, same keyring): a copy of
# the deb822 stanza whose Suites line holds the plain codename, or of the one-line entry.
enable_backports() {
  if grep -rqsE "(^|[[:space:]])${codename}-backports([[:space:]]|$)" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    return 0
  fi
  local src=/etc/apt/sources.list.d/debian.sources
  local out=/etc/apt/sources.list.d/tabtune-backports.sources
  if [ -f "$src" ]; then
    awk -v c="$codename" '
      BEGIN { RS = ""; ORS = "\n" }
      !done {
        n = split($0, line, "\n"); match_ = 0; text = ""
        for (i = 1; i <= n; i++) {
          if (line[i] ~ /^Suites:/) {
            m = split(line[i], word, /[ \t]+/)
            for (j = 2; j <= m; j++) if (word[j] == c) match_ = 1
            line[i] = "Suites: " c "-backports"
          }
          text = text line[i] "\n"
        }
        if (match_) { printf "%s", text; done = 1 }
      }' "$src" > "$out.tmp"
    if [ -s "$out.tmp" ]; then mv "$out.tmp" "$out"; else rm -f "$out.tmp"; fi
  fi
  if [ ! -f "$out" ] && [ -f /etc/apt/sources.list ]; then
    local entry
    entry=$(grep -E "^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?[^[:space:]]+[[:space:]]+${codename}[[:space:]]" /etc/apt/sources.list | head -n1 || true)
    if [ -n "$entry" ]; then
      echo "$entry" | sed -E "s/[[:space:]]${codename}[[:space:]]/ ${codename}-backports /" > /etc/apt/sources.list.d/tabtune-backports.list
    fi
  fi
  if [ ! -f "$out" ] && [ ! -f /etc/apt/sources.list.d/tabtune-backports.list ]; then
    echo "tabtune: found no Debian '${codename}' entry in the APT sources to derive ${codename}-backports from" >&2
    return 1
  fi
}

echo "tabtune: installing system packages for the GPU tests (Debian ${codename})"
apt-get update -qq
if [ "$need_chromium" = 1 ]; then
  apt-get install -y -qq chromium >/dev/null
fi
if [ "$need_mesa" = 1 ]; then
  candidate=$(apt-cache policy mesa-vulkan-drivers 2>/dev/null | awk '/Candidate:/ { print $2 }')
  cmajor=$(major_of "$candidate")
  if [ -n "$cmajor" ] && [ "$cmajor" -ge "$MIN_MESA" ]; then
    apt-get install -y -qq mesa-vulkan-drivers >/dev/null
  else
    enable_backports
    apt-get update -qq
    apt-get install -y -qq -t "${codename}-backports" mesa-vulkan-drivers >/dev/null
  fi
fi

mesa_ok || { echo "tabtune: Mesa lavapipe >= $MIN_MESA is still missing after the install" >&2; exit 1; }
[ -x "$CHROMIUM" ] || { echo "tabtune: $CHROMIUM is still missing after the install" >&2; exit 1; }
echo "tabtune: system packages ready: mesa-vulkan-drivers $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers), $("$CHROMIUM" --version 2>/dev/null || echo chromium)"
