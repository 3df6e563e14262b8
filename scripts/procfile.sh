#!/bin/sh
# Runs one line of the Procfile by its name, the way honcho or a PaaS would: `procfile.sh web`.
#
# The container image's entrypoint (Dockerfile, compose.yaml, deploy/k8s): containers name a Procfile
# line instead of carrying a copy of its command, so the Procfile stays the one source of the production
# commands. The line runs under `sh -c` (its `exec` replaces the shell, so signals reach the server);
# extra arguments are appended to it as "$@", as scripts/stack.py does for Celery's options.
# `procfile.sh --print NAME` prints the command instead of running it.
set -eu

usage="usage: procfile.sh [--print] <process type> [extra arguments...]"
print=
if [ "${1:-}" = "--print" ]; then
    print=1
    shift
fi
name="${1:?$usage}"
shift
procfile="${PROCFILE:-$(dirname "$0")/../Procfile}"

# `name: command` lines; blank lines and lines starting with # are skipped; the last line of a name wins
# (scripts/stack.py reads the file the same way).
command="$(awk -v want="$name" '
    /^[[:space:]]*(#|$)/ { next }
    {
        i = index($0, ":")
        if (i == 0) next
        key = substr($0, 1, i - 1)
        gsub(/^[[:space:]]+|[[:space:]]+$/, "", key)
        if (key != want) next
        found = substr($0, i + 1)
        gsub(/^[[:space:]]+|[[:space:]]+$/, "", found)
    }
    END { if (found != "") print found }
' "$procfile")"

if [ -z "$command" ]; then
    echo "procfile.sh: no '$name:' line in $procfile; $usage" >&2
    exit 64
fi
if [ -n "$print" ]; then
    printf '%s\n' "$command"
    exit 0
fi
if [ "$#" -gt 0 ]; then
    exec sh -c "$command \"\$@\"" "$name" "$@"
fi
exec sh -c "$command" "$name"
