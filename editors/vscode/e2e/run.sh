#!/usr/bin/env bash
# The real-VS-Code end-to-end suite: builds and packages the extension (`npm run package`: the
# VSIX users install, copyspec-vscode-<version>.vsix) and installs that VSIX, starts code-server
# (VS Code 1.100.3) on 127.0.0.1 with a throwaway profile and workspace, drives it with
# headless chromium (suite.js) against the real copyspec-lsp and its default model
# (SmolLM2-135M-Instruct with our adapter; its base weights fetched once into the user's cache),
# and stops everything it started by process group. Exit 0 = every scenario passed.
#   bash editors/vscode/e2e/run.sh [--update-images]   (--update-images: refresh docs/images/)
# Screenshots go to $E2E_ARTIFACTS (default: a new folder per run, kept and printed only when the
# run fails); failures add error shots. Nothing of an earlier run is read: profile, workspace,
# logs, caches and the test gate (COPYSPEC_TEST_GATE, see suite.js) live in a per-run temp dir;
# only the installed rig and the model's base weights are shared.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
CACHE=${COPYSPEC_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/copyspec-vscode-e2e}
T0=$(date +%s)
step() { echo "=== e2e [$(( $(date +%s) - T0 ))s] $*"; }

bash "$HERE/install.sh" || { echo "e2e FAILED: the real-VS-Code rig could not be installed (see above)" >&2; exit 1; }
PYTHON=$(command -v python || command -v python3) || { echo "e2e FAILED: no python on PATH" >&2; exit 1; }
"$PYTHON" -c "import copyspec_lsp" 2>/dev/null || [ -d "$REPO/copyspec_lsp" ] || { echo "e2e FAILED: copyspec_lsp not importable" >&2; exit 1; }

# The default model's base weights (fetched and verified once, a no-op once cached): the run's
# own cache below links to them, so the server finds them under its per-run XDG_CACHE_HOME.
WEIGHTS=$(cd "$REPO" && "$PYTHON" -m engine.fetch smollm2) || { echo "e2e FAILED: the default model's base weights could not be fetched (python -m engine.fetch smollm2)" >&2; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/copyspec-e2e.XXXXXX")
# The shots: in the folder named (kept, with the shots an earlier run left there removed:
# --update-images must never copy a stale one), or in a new folder kept only if the run fails.
RC=1
OWN_ART=""
if [ -n "${E2E_ARTIFACTS:-}" ]; then
  ART=$E2E_ARTIFACTS
  mkdir -p "$ART" && rm -f "$ART"/streaming-diff.png "$ART"/hunk-review.png "$ART"/preview.png "$ART"/error-*.png
else
  ART=$(mktemp -d "${TMPDIR:-/tmp}/copyspec-e2e-shots.XXXXXX")
  OWN_ART=1
fi
mkdir -p "$TMP"/{data/User,exts,ws,logs,bin,xdg,cache/copyspec}
ln -s "$(dirname "$WEIGHTS")" "$TMP/cache/copyspec/weights"
# The server's test gate: while this file exists a stream holds after each edit (suite.js
# closes it around the mid-stream scenarios). Exported so code-server's extension host, and so
# the server it starts, inherit it; the server wrapper below names it too.
export COPYSPEC_TEST_GATE=$TMP/gate
PGID=""
cleanup() {
  if [ -n "$PGID" ]; then
    kill -TERM -- -"$PGID" 2>/dev/null || true
    for _ in $(seq 1 50); do
      [ -z "$(ps -eo pgid= | awk -v g="$PGID" '$1==g')" ] && break
      sleep 0.2
    done
    kill -KILL -- -"$PGID" 2>/dev/null || true
  fi
  [ -n "${E2E_KEEP:-}" ] || rm -rf "$TMP"
  # Only a failed run that took shots leaves its own shots folder behind.
  if [ -n "$OWN_ART" ] && { [ "$RC" = 0 ] || [ -z "$(ls -A "$ART" 2>/dev/null)" ]; }; then
    rm -rf "$ART"
  fi
}
trap cleanup EXIT

step "build and package the extension (npm run package)"
VSIX=$REPO/editors/vscode/copyspec-vscode-$(node -p "require('$REPO/editors/vscode/package.json').version").vsix
rm -f "$VSIX"
(cd "$REPO/editors/vscode" && { [ -d node_modules/@vscode/vsce ] || npm ci --no-audit --no-fund >/dev/null; } \
  && npm run -s package >/dev/null)
[ -f "$VSIX" ] || { echo "e2e FAILED: npm run package made no $VSIX" >&2; exit 1; }

# The server from this checkout (PYTHONPATH first), whatever an editable install points at.
cat > "$TMP/bin/copyspec-lsp" <<SH
#!/bin/sh
export PYTHONPATH="$REPO\${PYTHONPATH:+:\$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export COPYSPEC_TEST_GATE="$COPYSPEC_TEST_GATE"
exec "$PYTHON" -m copyspec_lsp "\$@"
SH
chmod +x "$TMP/bin/copyspec-lsp"
PORT=$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf 'bind-addr: 127.0.0.1:%s\nauth: none\ncert: false\n' "$PORT" > "$TMP/cs-config.yaml"
# Default log level on purpose: the suite checks that the output channel stays quiet.
cat > "$TMP/data/User/settings.json" <<JSON
{
  "copyspec.server.path": "$TMP/bin/copyspec-lsp",
  "copyspec.threads": 1,
  "copyspec.maxNewTokens": 160,
  "copyspec.server.args": ["--log-file", "$TMP/logs/server.log"],
  "security.workspace.trust.enabled": false,
  "workbench.startupEditor": "none",
  "workbench.tips.enabled": false,
  "workbench.enableExperiments": false,
  "telemetry.telemetryLevel": "off",
  "extensions.autoUpdate": false,
  "extensions.autoCheckUpdates": false,
  "extensions.ignoreRecommendations": true,
  "update.mode": "none",
  "editor.minimap.enabled": false,
  "files.autoSave": "off",
  "files.hotExit": "off",
  "chat.commandCenter.enabled": false,
  "window.commandCenter": false
}
JSON
CS=("$CACHE/cs/node_modules/.bin/code-server" --config "$TMP/cs-config.yaml" --user-data-dir "$TMP/data"
    --extensions-dir "$TMP/exts")
export XDG_CONFIG_HOME=$TMP/xdg XDG_DATA_HOME=$TMP/xdg XDG_CACHE_HOME=$TMP/cache
step "install $(basename "$VSIX") into the temp profile"
"${CS[@]}" --install-extension "$VSIX" --force >/dev/null

step "start code-server on 127.0.0.1:$PORT"
setsid "${CS[@]}" --disable-telemetry --disable-update-check --disable-workspace-trust \
  --disable-getting-started-override "$TMP/ws" > "$TMP/logs/code-server.out" 2>&1 &
PGID=$!  # setsid: code-server leads its own process group; the server and chromium join ours
for _ in $(seq 1 150); do
  curl -fsS -o /dev/null "http://127.0.0.1:$PORT/healthz" 2>/dev/null && break
  sleep 0.2
done
curl -fsS -o /dev/null "http://127.0.0.1:$PORT/healthz" || { cat "$TMP/logs/code-server.out"; echo "e2e FAILED: code-server did not start" >&2; exit 1; }

step "drive it (suite.js)"
RC=0
E2E_URL="http://127.0.0.1:$PORT/" E2E_WS="$TMP/ws" E2E_SHOTS="$ART" E2E_DATA="$TMP/data" E2E_GATE="$COPYSPEC_TEST_GATE" \
  PLAYWRIGHT_CORE="$CACHE/driver/node_modules/playwright-core" \
  node "$HERE/suite.js" || RC=$?
if [ "$RC" != 0 ]; then
  echo "--- extension host errors:"
  grep -hiE '\[error\]' "$TMP"/data/logs/*/exthost*/remoteexthost.log 2>/dev/null | tail -20 || true
  echo "--- CopySpec output channel:"
  cat "$TMP"/data/logs/*/exthost*/output_logging_*/*CopySpec.log 2>/dev/null | tail -40 || true
  echo "--- server log:"
  tail -30 "$TMP/logs/server.log" 2>/dev/null || true
  echo "e2e FAILED (screenshots in $ART)" >&2
elif [ "${1:-}" = "--update-images" ]; then
  cp "$ART/streaming-diff.png" "$ART/hunk-review.png" "$ART/preview.png" "$REPO/docs/images/"  # taken by this run
  step "docs/images updated"
fi
if [ "$RC" != 0 ] || [ -z "$OWN_ART" ]; then
  step "done (exit $RC); screenshots in $ART"
else
  step "done (exit $RC)"
fi
exit "$RC"
