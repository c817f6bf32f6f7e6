#!/usr/bin/env bash
# Run the full event_store suite (scripts/run-tests.sh: pg_regress,
# isolation, TAP, bench smoke) on every tested PostgreSQL major:
#
#   15   on this machine (Debian 12's own packages)
#   17   in a Debian trixie chroot (Debian's postgresql-17)
#   18   in a Debian forky chroot  (Debian's postgresql-18)
#
# and end with one line per major and one total line "N passed, N failed".
# PostgreSQL 16 has no package in any Debian suite: src/compat.h keeps it
# building, nothing here tests it (README.md, "Supported PostgreSQL
# versions").
#
# The chroots are made on first use and kept (about 80 s each, plus the
# packages), exactly as issue 24 describes:
#   debootstrap --variant=minbase SUITE DIR MIRROR /usr/share/debootstrap/scripts/sid
#   mount /proc, bind /dev, policy-rc.d that exits 101 (no server starts)
#   apt-get -o Acquire::Check-Valid-Until=false update
#   apt-get install --no-install-recommends postgresql-NN postgresql-server-dev-NN
#           postgresql-NN-cron build-essential libipc-run-perl
# plus nodejs and npm for the Message DB TAP tests and the bench smoke test.
# MIRROR is the first "URIs:" line of this machine's apt sources (or the
# first "deb" line of sources.list).  forky's Release file may carry a
# Valid-Until date that has passed on a mirror copy, hence the option.
#
# After the suite on 15, test/cross-major/dump_restore.sh makes a database
# there (events, snapshots, projections, subscriptions) and dumps it; after
# the suite on 17 and 18 the dump is restored in the chroot and checked
# (every event byte for byte, append-only, projections and subscriptions
# resume).  Its checks count in that major's total.
#
# A major whose chroot cannot be made, or whose run does not finish with a
# count, is reported as NOT RUN with the step that failed; it counts as one
# failure, never as passed, and the exit status is non-zero.  The run goes
# on with the other majors.
#
# Run as root (debootstrap, chroot, mount).  Environment:
#   ES_CHROOT_DIR    where the chroots live    (default /var/tmp/es-chroots)
#   ES_MATRIX        majors to run             (default "15 17 18")
#   ES_MIRROR        Debian mirror for new chroots (default: from apt sources)
#   ES_SKIP_BENCH=1  leave the bench smoke test out (passed on to run-tests.sh)
#   ES_XMAJOR_BIN    bin directory of the server the cross-major dump is made
#                    with (default /usr/lib/postgresql/15/bin)
#   ES_XMAJOR_FROM   a directory made by "dump_restore.sh make" to restore
#                    when 15 is not part of the run
# Logs: test/results/matrix/pgNN.log (and pgNN/, the suite's result files).
set -uo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
CHROOTS=${ES_CHROOT_DIR:-/var/tmp/es-chroots}
MAJORS=${ES_MATRIX:-15 17 18}
LOGDIR=$ROOT/test/results/matrix
HOST_MAJOR=15

declare -A SUITE=([17]=trixie [18]=forky)

rm -rf "$LOGDIR"
mkdir -p "$LOGDIR"

# --------------------------------------------------------------------------
# The Debian mirror apt already uses here.
mirror() {
    if [[ -n "${ES_MIRROR:-}" ]]; then
        echo "$ES_MIRROR"
        return
    fi
    local m
    m=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
    [[ -z "$m" ]] && m=$(sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]*\).*/\2/p' /etc/apt/sources.list 2>/dev/null | head -1)
    echo "${m:-http://deb.debian.org/debian}"
}

# Mounts this run made, undone at exit (ones that were already there are
# left alone, so two runs can share a chroot one after the other).
MOUNTED=()
cleanup() {
    local i
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTED[i]}" 2>/dev/null || umount -l "${MOUNTED[i]}" 2>/dev/null || true
    done
}
trap cleanup EXIT

ensure_mount() {    # ensure_mount TARGET mount-args...
    local target=$1
    shift
    mountpoint -q "$target" && return 0
    mkdir -p "$target"
    mount "$@" "$target" || return 1
    MOUNTED+=("$target")
}

# step NAME command...: runs one step of making a chroot, logging to $LOG;
# on failure remembers which step it was.
FAILED_STEP=""
step() {
    local name=$1
    shift
    echo "-- $name" >>"$LOG"
    if ! "$@" >>"$LOG" 2>&1; then
        FAILED_STEP=$name
        return 1
    fi
}

in_chroot() { chroot "$DIR" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive "$@"; }

installed_in_chroot() {
    local p
    for p in "$@"; do
        in_chroot dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || return 1
    done
}

# make_chroot MAJOR: make or reuse $CHROOTS/SUITE with PostgreSQL MAJOR.
make_chroot() {
    local major=$1 suite=${SUITE[$1]}
    local pkgs=("postgresql-$major" "postgresql-server-dev-$major" "postgresql-$major-cron"
        build-essential libipc-run-perl python3)
    DIR=$CHROOTS/$suite
    mkdir -p "$CHROOTS"
    if [[ ! -x $DIR/usr/bin/apt-get ]]; then
        if ! command -v debootstrap >/dev/null; then
            step "install debootstrap on this machine" \
                bash -c 'export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -q debootstrap' || return 1
        fi
        local fresh=""
        [[ -e $DIR ]] || fresh=1
        if ! step "debootstrap $suite from $(mirror)" \
            debootstrap --variant=minbase "$suite" "$DIR" "$(mirror)" \
            /usr/share/debootstrap/scripts/sid; then
            # a half-made root would be taken for a made one next time
            [[ -n $fresh ]] && ! mountpoint -q "$DIR/proc" && ! mountpoint -q "$DIR/dev" && rm -rf "$DIR"
            return 1
        fi
    fi
    step "mount /proc in the chroot" ensure_mount "$DIR/proc" -t proc proc || return 1
    step "bind /dev into the chroot" ensure_mount "$DIR/dev" --bind /dev || return 1
    step "policy-rc.d (no server starts from package scripts)" \
        bash -c "printf '#!/bin/sh\nexit 101\n' >'$DIR/usr/sbin/policy-rc.d' && chmod +x '$DIR/usr/sbin/policy-rc.d'" || return 1
    # The chroot resolves names and trusts certificates as this machine
    # does (a proxy's CA in /usr/local/share/ca-certificates, npm's cafile).
    cp /etc/resolv.conf "$DIR/etc/resolv.conf" 2>/dev/null || true
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        mkdir -p "$DIR/usr/local/share/ca-certificates"
        cp /usr/local/share/ca-certificates/*.crt "$DIR/usr/local/share/ca-certificates/"
    fi
    [[ -f /etc/npmrc ]] && cp /etc/npmrc "$DIR/etc/npmrc"
    if ! installed_in_chroot "${pkgs[@]}" nodejs npm ca-certificates; then
        step "apt-get update in the chroot" \
            in_chroot apt-get -o Acquire::Check-Valid-Until=false update || return 1
        step "apt-get install ${pkgs[*]}" \
            in_chroot apt-get install -y -q --no-install-recommends "${pkgs[@]}" || return 1
        step "apt-get install nodejs npm ca-certificates (Message DB tests, bench)" \
            in_chroot apt-get install -y -q --no-install-recommends nodejs npm ca-certificates || return 1
    fi
    [[ -d $DIR/usr/local/share/ca-certificates ]] && in_chroot update-ca-certificates >>"$LOG" 2>&1
    return 0
}

# copy_tree DEST: the working tree (tracked and untracked, not ignored files).
copy_tree() {
    local dest=$1
    rm -rf "$dest"
    mkdir -p "$dest"
    if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        (cd "$ROOT" && git ls-files -co --exclude-standard -z | tar --null -cf - -T -) | tar -xf - -C "$dest"
    else
        (cd "$ROOT" && tar --exclude=./test/results -cf - .) | tar -xf - -C "$dest"
    fi
}

# The count line run-tests.sh ends with.
counts() { grep -E '^[0-9]+ passed, [0-9]+ failed$' "$1" | tail -1; }

total_passed=0
total_failed=0
not_run=0
declare -A LINE XMAJOR_LINE
XMAJOR=$LOGDIR/xmajor
# A run without 15 can still check a dump made earlier by
# "test/cross-major/dump_restore.sh make" (ES_XMAJOR_FROM=that directory).
if [[ -n "${ES_XMAJOR_FROM:-}" && -f $ES_XMAJOR_FROM/dump.custom ]]; then
    cp -r "$ES_XMAJOR_FROM" "$XMAJOR"
fi

for major in $MAJORS; do
    LOG=$LOGDIR/pg$major.log
    : >"$LOG"
    if [[ $major == "$HOST_MAJOR" ]]; then
        where="this machine"
        echo "== PostgreSQL $major on $where"
        ES_TEST_OUT=$ROOT/test/results/pg$major PG_MAJOR=$major bash scripts/run-tests.sh >"$LOG" 2>&1
        # The database the other majors restore (issue 24 item 5): made with
        # the extension run-tests.sh just installed.
        if bash test/cross-major/dump_restore.sh make "${ES_XMAJOR_BIN:-/usr/lib/postgresql/$major/bin}" \
            "$XMAJOR" >"$LOGDIR/xmajor-make.log" 2>&1; then
            echo "  $(tail -1 "$LOGDIR/xmajor-make.log")"
        else
            echo "  cross-major dump on $major: FAILED (see $LOGDIR/xmajor-make.log)"
            total_failed=$((total_failed + 1))
        fi
    elif [[ -n "${SUITE[$major]:-}" ]]; then
        where="chroot ${SUITE[$major]}"
        echo "== PostgreSQL $major in the $where ($CHROOTS/${SUITE[$major]})"
        FAILED_STEP=""
        if ! make_chroot "$major"; then
            LINE[$major]="PostgreSQL $major ($where): NOT RUN, step failed: $FAILED_STEP (see $LOG)"
            echo "${LINE[$major]}"
            tail -5 "$LOG"
            not_run=$((not_run + 1))
            total_failed=$((total_failed + 1))
            continue
        fi
        copy_tree "$DIR/build"
        in_chroot env PG_MAJOR="$major" ES_SKIP_BENCH="${ES_SKIP_BENCH:-}" \
            bash /build/scripts/run-tests.sh >>"$LOG" 2>&1
        rm -rf "$ROOT/test/results/pg$major"
        cp -r "$DIR/build/test/results" "$ROOT/test/results/pg$major" 2>/dev/null || true
        # Restore the dump made on the host's major, with the extension the
        # suite just installed in the chroot (test/cross-major/dump_restore.sh).
        XLOG=$LOGDIR/xmajor-pg$major.log
        if [[ -f $XMAJOR/dump.custom ]]; then
            cp -r "$XMAJOR" "$DIR/build/xmajor"
            in_chroot bash /build/test/cross-major/dump_restore.sh check \
                "/usr/lib/postgresql/$major/bin" /build/xmajor >"$XLOG" 2>&1
            xc=$(counts "$XLOG")
            if [[ -n "$xc" ]]; then
                xp=${xc%% passed*}
                xf=${xc#*passed, }
                xf=${xf%% failed*}
            else
                xp=0 xf=1
            fi
            grep '^not ok' "$XLOG" | sed 's/^/  /'
            echo "  dump/restore $HOST_MAJOR -> $major: $xp passed, $xf failed ($XLOG)"
            XMAJOR_LINE[$major]="dump/restore $HOST_MAJOR -> $major: $xp passed, $xf failed"
            total_passed=$((total_passed + xp))
            total_failed=$((total_failed + xf))
        else
            echo "  dump/restore $HOST_MAJOR -> $major: not run (no dump from $HOST_MAJOR in this run)"
        fi
    else
        LINE[$major]="PostgreSQL $major: NOT RUN, no way to reach it (tested majors: 15 on this machine, 17 and 18 in chroots)"
        echo "${LINE[$major]}"
        not_run=$((not_run + 1))
        total_failed=$((total_failed + 1))
        continue
    fi
    c=$(counts "$LOG")
    version=$(sed -n 's/^dependencies: ok (PostgreSQL \(.*\))$/\1/p' "$LOG" | tail -1)
    if [[ -z "$c" ]]; then
        LINE[$major]="PostgreSQL $major ($where): NOT RUN, step failed: run-tests.sh ended without a count (see $LOG)"
        tail -20 "$LOG"
        not_run=$((not_run + 1))
        total_failed=$((total_failed + 1))
    else
        p=${c%% passed*}
        f=${c#*passed, }
        f=${f%% failed*}
        total_passed=$((total_passed + p))
        total_failed=$((total_failed + f))
        LINE[$major]="PostgreSQL ${version:-$major} ($where): $p passed, $f failed"
        grep -q '^build: FAILED' "$LOG" &&
            LINE[$major]+=" (step failed: build with -Wall -Wextra -Werror; see $LOG)"
        grep -E '^(regress|isolation|tap|bench): |^---- ' "$LOG" | sed 's/^/  /'
    fi
    echo "${LINE[$major]}"
done

echo
echo "== summary"
for major in $MAJORS; do
    echo "${LINE[$major]}"
    [[ -n "${XMAJOR_LINE[$major]:-}" ]] && echo "  ${XMAJOR_LINE[$major]}"
done
((not_run)) && echo "$not_run major(s) not run: counted as failed"
echo "$total_passed passed, $total_failed failed"
((total_failed == 0 && not_run == 0))
