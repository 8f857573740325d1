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

python3 - "$work/by-cargo" "$work/installed" <<'PY'
import glob, json, sys

def verdicts(folder):
    [summary] = glob.glob(f"{folder}/*/summary.json")
    s = json.load(open(summary))
    assert s["status"] == "finished", f"{summary}: {s['status']}"
    return {c["case"]: c["result"] for c in s["cases"]}

cargo, installed = verdicts(sys.argv[1]), verdicts(sys.argv[2])
differ = sorted(c for c in cargo.keys() | installed.keys() if cargo.get(c) != installed.get(c))
for c in differ:
    print(f"check-install: {c}: cargo test {cargo.get(c)}, installed {installed.get(c)}", file=sys.stderr)
results = set(cargo.values())
if differ or not {"passed", "failed"} <= results:
    sys.exit(1)
failed = sum(r == "failed" for r in cargo.values())
print(f"check-install: the same verdict for all {len(cargo)} cases ({failed} failed in both)")
PY
