# Shared by the ensure-*.sh scripts: install what is missing from Debian's
# packages when we may (root, apt-get present), or say exactly what to run.

# ensure_installed COMMAND PACKAGE: PACKAGE provides COMMAND.
ensure_installed() {
  local command=$1 package=$2
  command -v "$command" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing $package (apt)..."
    export DEBIAN_FRONTEND=noninteractive
    # policy-rc.d may forbid starting services here; the ensure scripts start them.
    if ! apt-get install -y -qq --no-install-recommends "$package" >/dev/null 2>&1; then
      apt-get update -qq >/dev/null
      apt-get install -y -qq --no-install-recommends "$package" >/dev/null
    fi
    command -v "$command" >/dev/null 2>&1 && return 0
    echo "installing $package did not provide $command" >&2
    exit 1
  fi
  echo "$command is missing; install it with: sudo apt-get install -y $package" >&2
  exit 1
}

# ensure_pip_installed COMMAND PACKAGE: PACKAGE (from PyPI) provides COMMAND.
ensure_pip_installed() {
  local command=$1 package=$2
  command -v "$command" >/dev/null 2>&1 && return 0
  echo "installing $package (pip)..."
  python3 -m pip install --quiet --disable-pip-version-check "$package"
  # pyenv-managed Pythons only see new console scripts after a rehash.
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
  command -v "$command" >/dev/null 2>&1 && return 0
  echo "installing $package did not provide $command" >&2
  exit 1
}
