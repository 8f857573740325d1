#!/usr/bin/env bash
# Builds the offline broker images from Debian packages, with no container
# registry: debootstrap a Debian root file system that holds RabbitMQ and
# Mosquitto, then `docker import` it twice, once per broker.
#
#   scripts/build-images.sh           build the images that are missing
#   scripts/build-images.sh --force   rebuild both
#
# The Debian mirror is read from this machine's own apt sources; set
# DMCONF_DEBIAN_MIRROR to override it.
set -euo pipefail

SUITE="${DMCONF_DEBIAN_SUITE:-bookworm}"
RABBIT_IMAGE="${DMCONF_RABBITMQ_OFFLINE_IMAGE:-dmconf/rabbitmq:offline}"
MOSQ_IMAGE="${DMCONF_MOSQUITTO_OFFLINE_IMAGE:-dmconf/mosquitto:offline}"

# Raised when what goes into the images changes, so older images are rebuilt.
VERSION=4
have() {
  [[ $(docker image inspect --format '{{ index .Config.Labels "dmconf.images" }}' "$1" 2>/dev/null) == "$VERSION" ]]
}

if [[ "${1:-}" != "--force" ]] && have "$RABBIT_IMAGE" && have "$MOSQ_IMAGE"; then
  echo "build-images: $RABBIT_IMAGE and $MOSQ_IMAGE are present (version $VERSION)"
  exit 0
fi

mirror() {
  if [[ -n "${DMCONF_DEBIAN_MIRROR:-}" ]]; then echo "$DMCONF_DEBIAN_MIRROR"; return; fi
  local f url
  # deb822 sources first (URIs: ...), then one-line sources (deb URL suite ...).
  for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -r "$f" ]] || continue
    url=$(awk '
      /^Types:/ { deb = ($0 ~ /(^|[ \t])deb([ \t]|$)/) }
      /^URIs:/ && deb { uri = $2 }
      /^Suites:/ && deb && uri != "" { for (i = 2; i <= NF; i++) if ($i == "'"$SUITE"'") { print uri; exit } }
      /^deb[ \t]/ { u = $2; if (u ~ /^\[/) u = $3; for (i = 3; i <= NF; i++) if ($i == "'"$SUITE"'") { print u; exit } }
    ' "$f")
    if [[ -n "$url" ]]; then echo "$url"; return; fi
  done
  echo "build-images: no apt source for '$SUITE' found; set DMCONF_DEBIAN_MIRROR" >&2
  exit 1
}

if ! command -v cc >/dev/null; then
  echo "build-images: a C compiler (cc) is missing, for Mosquitto's login plugin" >&2
  exit 1
fi

if ! command -v debootstrap >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null
  else
    echo "build-images: debootstrap is missing (apt-get install debootstrap)" >&2
    exit 1
  fi
fi

MIRROR=$(mirror)
WORK=$(mktemp -d /tmp/dmconf-rootfs.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
ROOT="$WORK/root"

echo "build-images: debootstrap $SUITE from $MIRROR"
debootstrap --variant=minbase --include=rabbitmq-server,mosquitto,mosquitto-dev,libmosquitto-dev,ca-certificates \
  "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
  tail -n 40 "$WORK/debootstrap.log" >&2
  exit 1
}

# RabbitMQ: the guest user may log in from outside the container; no plugins.
mkdir -p "$ROOT/etc/rabbitmq"
cat >"$ROOT/etc/rabbitmq/rabbitmq.conf" <<'CONF'
loopback_users = none
listeners.tcp.default = 5672
CONF
echo '[].' >"$ROOT/etc/rabbitmq/enabled_plugins"
cat >"$ROOT/usr/local/bin/dmconf-rabbitmq" <<'SH'
#!/bin/sh
# The node name follows the container's host name, which Docker sets.
chown -R rabbitmq:rabbitmq /var/lib/rabbitmq /var/log/rabbitmq
export HOME=/var/lib/rabbitmq
exec /usr/sbin/rabbitmq-server
SH
chmod +x "$ROOT/usr/local/bin/dmconf-rabbitmq"

# Mosquitto: the harness mounts or passes its own configuration; this default
# listens on 1883 without authentication.
mkdir -p "$ROOT/mosquitto/config"
cat >"$ROOT/mosquitto/config/mosquitto.conf" <<'CONF'
listener 1883
allow_anonymous true
CONF
# The plugin that keeps runs apart (see its source), and the folder of
# runs it reads, which only the mosquitto user may enter.
mkdir -p "$ROOT/usr/lib/dmconf"
MOSQ_IDS=$(awk -F: '$1 == "mosquitto" { print $3 ":" $4 }' "$ROOT/etc/passwd")
mkdir -m 700 "$ROOT/mosquitto/runs"
chown "${MOSQ_IDS:?no mosquitto user in the image}" "$ROOT/mosquitto/runs"
cc -std=c99 -Wall -Wextra -Werror -O2 -fPIC -shared -idirafter "$ROOT/usr/include" \
  -o "$ROOT/usr/lib/dmconf/mosquitto-run-ids.so" "$(dirname "$0")/mosquitto-run-ids.c"

rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/*

# Each image says which broker version it holds, for the run's report.
pkg_version() { dpkg-query --admindir="$ROOT/var/lib/dpkg" -W -f='${Version}' "$1"; }
RABBIT_VERSION="RabbitMQ $(pkg_version rabbitmq-server)"
MOSQ_VERSION="Mosquitto $(pkg_version mosquitto)"

echo "build-images: importing $RABBIT_IMAGE"
tar -C "$ROOT" -c . | docker import \
  --change 'CMD ["/usr/local/bin/dmconf-rabbitmq"]' \
  --change 'EXPOSE 5672' \
  --change 'ENV LANG=C.UTF-8' \
  --change "LABEL dmconf.images=$VERSION" \
  --change "LABEL org.opencontainers.image.version=\"$RABBIT_VERSION\"" \
  - "$RABBIT_IMAGE" >/dev/null

echo "build-images: importing $MOSQ_IMAGE"
tar -C "$ROOT" -c . | docker import \
  --change 'CMD ["/usr/sbin/mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]' \
  --change 'EXPOSE 1883' \
  --change "LABEL dmconf.images=$VERSION" \
  --change "LABEL org.opencontainers.image.version=\"$MOSQ_VERSION\"" \
  --change "LABEL dmconf.runs=/mosquitto/runs" \
  - "$MOSQ_IMAGE" >/dev/null

echo "build-images: done"
