#!/usr/bin/env bash
# Installs what the real-VS-Code e2e suite needs, from the registries only, and does nothing
# when it is already there: Debian's chromium (driven headless) and the headers code-server's
# native modules build against; code-server 4.100.3 (VS Code 1.100.3, the last release whose
# engines.node is 20) and playwright-core (no browser download) from npm, into $CACHE. (The
# VSIX is packaged with the extension's own @vscode/vsce devDependency: `npm run package`.)
# Exits non-zero with a one-line reason when something cannot be installed.
set -euo pipefail
CACHE=${COPYSPEC_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/copyspec-vscode-e2e}
CS_VERSION=4.100.3
PW_VERSION=1.65.1
APT_PACKAGES=(chromium ripgrep build-essential pkg-config python3 libkrb5-dev libx11-dev libxkbfile-dev libsecret-1-dev)
fail() { echo "e2e install FAILED: $*" >&2; exit 1; }

missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "e2e install: apt packages ${missing[*]}"
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq || fail "apt-get update"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null \
    || fail "apt-get install ${missing[*]}"
fi
command -v chromium >/dev/null || fail "chromium is not on PATH after apt"

mkdir -p "$CACHE"
if ! "$CACHE/cs/node_modules/.bin/code-server" --version 2>/dev/null | grep -q "^$CS_VERSION "; then
  echo "e2e install: code-server $CS_VERSION from npm (a few minutes)"
  # @vscode/ripgrep's postinstall downloads rg from GitHub unless its cache (in os.tmpdir())
  # already holds the asset: seed it with Debian's rg.
  rgcache="$(dirname "$(mktemp -u)")/vscode-ripgrep-cache-1.15.11"
  mkdir -p "$rgcache" "$CACHE/rgpack" && cp /usr/bin/rg "$CACHE/rgpack/rg"
  tar czf "$rgcache/ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz" -C "$CACHE/rgpack" rg
  mkdir -p "$CACHE/cs"
  [ -f "$CACHE/cs/package.json" ] || (cd "$CACHE/cs" && npm init -y >/dev/null)
  # nodedir: build native modules against /usr/include/node instead of downloading headers;
  # unsafe_perm: code-server's postinstall refuses root otherwise; yes: node-pty's postinstall
  # runs `npx node-gyp`. argon2/kerberos fail to fetch a GitHub prebuilt and build from source.
  (cd "$CACHE/cs" && npm_config_nodedir=/usr npm_config_unsafe_perm=true npm_config_yes=true \
    npm install --no-audit --no-fund --foreground-scripts "code-server@$CS_VERSION" \
    > "$CACHE/cs-install.log" 2>&1) || { tail -30 "$CACHE/cs-install.log" >&2; fail "npm install code-server@$CS_VERSION (log: $CACHE/cs-install.log)"; }
  # code-server writes a default config under $XDG_CONFIG_HOME on first run: keep it in CACHE.
  XDG_CONFIG_HOME="$CACHE/xdg" "$CACHE/cs/node_modules/.bin/code-server" --version 2>/dev/null | grep -q "^$CS_VERSION " \
    || fail "code-server $CS_VERSION does not run"
fi

driver="$CACHE/driver/node_modules"
if [ "$(node -p "require('$driver/playwright-core/package.json').version" 2>/dev/null)" != "$PW_VERSION" ]; then
  echo "e2e install: playwright-core $PW_VERSION from npm"
  mkdir -p "$CACHE/driver"
  [ -f "$CACHE/driver/package.json" ] || (cd "$CACHE/driver" && npm init -y >/dev/null)
  (cd "$CACHE/driver" && npm install --no-audit --no-fund "playwright-core@$PW_VERSION" >/dev/null) \
    || fail "npm install playwright-core@$PW_VERSION"
fi
echo "e2e install: ready in $CACHE"
