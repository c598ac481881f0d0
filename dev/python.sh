# Sourced by the dev scripts: find_python X.Y prints the path of a Python X.Y (pyenv's, else PATH's).
find_python() {
  local want="$1" candidate
  for candidate in "$(pyenv root 2>/dev/null)/versions/$want".*/bin/python3 "python$want"; do
    if command -v "$candidate" >/dev/null 2>&1; then command -v "$candidate"; return 0; fi
  done
  return 1
}
