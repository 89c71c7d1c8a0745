# Helpers shared by ops/build.sh and ops/deploy.sh (sourced, not run).
# shellcheck shell=bash

OPS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck disable=SC2034  # used by the scripts that source this file
REPO_ROOT="$(dirname "$OPS_DIR")"
RENDERER="$OPS_DIR/render_task_def.py"
SCRIPT_NAME="${0##*/}"

die() {
    printf '%s: %s\n' "$SCRIPT_NAME" "$*" >&2
    exit 2
}

note() {
    printf '%s: %s\n' "$SCRIPT_NAME" "$*"
}

# quoted CMD...: a command the way it would be typed (single quotes where needed).
quoted() {
    local word out=()
    for word in "$@"; do
        if [[ "$word" =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
            out+=("$word")
        else
            out+=("'${word//\'/\'\\\'\'}'")
        fi
    done
    printf '%s' "${out[*]}"
}

# show CMD...: print a command, "+ " first.
show() {
    printf '+ %s\n' "$(quoted "$@")"
}

# run CMD...: print a command, then run it unless this is a dry run.
run() {
    show "$@"
    if [[ "$DRY_RUN" == 1 ]]; then
        return 0
    fi
    "$@"
}

# DRY_RUN from the environment: 1/true/yes or 0/false/no/empty.
normalise_dry_run() {
    case "${DRY_RUN:-0}" in
        1 | true | yes) DRY_RUN=1 ;;
        0 | false | no | "") DRY_RUN=0 ;;
        *) die "DRY_RUN: expected 1 or 0, got '$DRY_RUN'" ;;
    esac
}

need_python() {
    command -v python3 >/dev/null 2>&1 || die "python3 is required (to read ENV_FILE and render the task definition)"
}

# ENV_FILE (optional): NAME=value lines, read literally; its non-empty values
# replace the environment's.
load_env_file() {
    [[ -n "${ENV_FILE:-}" ]] || return 0
    [[ -f "$ENV_FILE" ]] || die "ENV_FILE=$ENV_FILE: no such file"
    need_python
    local exports
    exports="$(python3 "$RENDERER" --exports "$ENV_FILE")" || die "ENV_FILE=$ENV_FILE: cannot read it"
    eval "$exports"
    note "read variables from $ENV_FILE"
}

# missing NAME...: print the names that are unset or empty, space-separated.
missing() {
    local name found=()
    for name in "$@"; do
        [[ -n "${!name:-}" ]] || found+=("$name")
    done
    printf '%s' "${found[*]}"
}

# need_commands CMD...: exit naming the first command that is not on PATH.
need_commands() {
    local cmd
    for cmd in "$@"; do
        command -v "$cmd" >/dev/null 2>&1 || die "$cmd is required and was not found on PATH"
    done
}
