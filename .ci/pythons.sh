# shellcheck shell=bash
# The core suite (tests/core, tests/compat, which runs CPython's own test_sqlite3, and
# tests/reliability, whose differential runs compare mpsqlite with that Python's sqlite3
# step by step) on each supported Python besides the main venv's; sourced by .ci/run, or
# by hand:
#   source .ci/pythons.sh && core_suites 3.10 3.12 3.13
# Each Python gets its own venv, .venv-X.Y, with the `test` extra installed editable.
# Interpreters come from pyenv ($(pyenv root)/versions/X.Y.*), else pythonX.Y on PATH.

CORE_TESTS=(tests/core tests/compat tests/reliability)

# The interpreter of Python X.Y: pyenv's newest X.Y.*, else pythonX.Y on PATH.
python_for() {
    local version=$1 root="" dir
    if command -v pyenv >/dev/null 2>&1; then
        root=$(pyenv root)
    fi
    root=${root:-${PYENV_ROOT:-$HOME/.pyenv}}
    dir=$(ls -d "$root/versions/$version".* 2>/dev/null | grep -E "/$version\.[0-9]+$" | sort -V | tail -n 1)
    if [ -n "$dir" ] && [ -x "$dir/bin/python$version" ]; then
        echo "$dir/bin/python$version"
    elif command -v "python$version" >/dev/null 2>&1; then
        command -v "python$version"
    else
        return 1
    fi
}

# Run the core suite on each given X.Y; prints one summary line per Python and
# returns non-zero when any of them could not be set up or had a failure.
core_suites() {
    local version py venv log started status=0 rc summary=()
    for version in "$@"; do
        started=$SECONDS
        venv=".venv-$version"
        echo "== core suite on Python $version"
        if ! py=$(python_for "$version"); then
            echo "no Python $version (pyenv or python$version on PATH)"
            summary+=("Python $version: MISSING")
            status=1
            continue
        fi
        rc=0
        log=$(mktemp "/tmp/mpsqlite-core-$version.XXXXXX")
        { "$py" -m venv "$venv" && "$venv/bin/pip" install -q -e '.[test]'; } || rc=$?
        if [ "$rc" -ne 0 ]; then
            summary+=("Python $version: venv/install failed (rc $rc)")
            rm -f "$log"
            status=1
            continue
        fi
        { "$venv/bin/python" -m pytest -q "${CORE_TESTS[@]}"; echo $? >"$log.rc"; } 2>&1 | tee "$log"
        rc=$(cat "$log.rc")
        summary+=("Python $("$venv/bin/python" -c 'import platform; print(platform.python_version())'): $(tail -n 1 "$log" | sed 's/^=* *//; s/ *=*$//') [$((SECONDS - started)) s with setup]")
        rm -f "$log" "$log.rc"
        [ "$rc" -eq 0 ] || status=1
    done
    echo "== core suite summary"
    printf '  %s\n' "${summary[@]}"
    return $status
}
