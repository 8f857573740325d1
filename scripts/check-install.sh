#!/usr/bin/env bash
# Checks that an installed `dmconf`, run from another folder with no Rust
# toolchain on its PATH, gives the same verdict for every case as
# `cargo test --test conformance`, on a SUT that fails some cases (the
# platform reference with its fault `ignores-version`).
#
#   scripts/check-install.sh
#
# It installs the binary (`cargo install --path . --debug`, which reuses
# the checkout's build) into a folder of its own with suites/, schemas/
# and fixtures/ beside it, as a lab would unpack a release, and compares
# the two runs' summary.json.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d /tmp/dmconf-install.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "check-install: installing into $work/dmconf"
cargo install --quiet --locked --debug --path . --root "$work/dmconf"
cp -r suites schemas fixtures "$work/dmconf/"

printf '[sut]\nprotocol = "ability"\nreference = "server"\nfault = "ignores-version"\n' >"$work/profile.toml"
export DMCONF_PROFILE="$work/profile.toml"
# Both runs fail the fault's cases: exit 101, not 0, and nothing else.
ran() {
  local code=0
  "$@" || code=$?
  [[ $code == 101 ]] || { echo "check-install: exit $code, not 101" >&2; return 1; }
}

echo "check-install: cargo test --test conformance"
ran env DMCONF_REPORT_DIR="$work/by-cargo" cargo test --quiet --test conformance >"$work/cargo.log" 2>&1 || {
  tail -n 30 "$work/cargo.log" >&2
  exit 1
}

# Only the system's own programs: no cargo, no rustc.
bare_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
if env -i PATH="$bare_path" sh -c 'command -v cargo || command -v rustc' >/dev/null; then
  echo "check-install: cargo or rustc is on $bare_path; the check needs a PATH without them" >&2
  exit 1
fi
mkdir "$work/elsewhere"
pass=()
for v in $(env | grep -o '^\(DMCONF_[A-Z_]*\|DOCKER_[A-Z_]*\)=' | tr -d =); do
  [[ $v == DMCONF_REPORT_DIR || $v == DMCONF_ROOT ]] || pass+=("$v=${!v}")
done
echo "check-install: $work/dmconf/bin/dmconf, from another folder, PATH=$bare_path"
(cd "$work/elsewhere" && ran env -i HOME="$HOME" PATH="$bare_path" "${pass[@]}" \
  DMCONF_REPORT_DIR="$work/installed" "$work/dmconf/bin/dmconf") >"$work/installed.log" 2>&1 || {
  tail -n 30 "$work/installed.log" >&2
  exit 1
}

python3 scripts/same-verdicts.py check-install "cargo test" "$work/by-cargo" installed "$work/installed" --mixed
