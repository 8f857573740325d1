#!/usr/bin/env bash
# Checks that a run split in two (`cargo nextest run --partition
# hash:K/2`, as two CI runners would) gives the same verdict for every
# case as one run, and that `dmconf merge` makes one bundle of the two.
# Both partitions use one RabbitMQ, each in a vhost of its own, as two
# runners would share a lab's broker; and the DMF server cases run alone
# on a fresh vhost, as a part that holds only them would.
#
#   scripts/check-partitions.sh
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d /tmp/dmconf-partitions.XXXXXX)
container=""
cleanup() {
  [[ -z $container ]] || docker rm -f "$container" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

image="${DMCONF_RABBITMQ_IMAGE:-dmconf/rabbitmq:offline}"
password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
echo "check-partitions: one RabbitMQ ($image) for both partitions"
container=$(docker run -d --label dmconf.broker=rabbitmq -p 127.0.0.1::5672 \
  -e RABBITMQ_DEFAULT_USER=lab -e RABBITMQ_DEFAULT_PASS="$password" "$image")
port=$(docker port "$container" 5672/tcp | head -n 1 | sed 's/.*://')
for _ in $(seq 120); do
  docker exec "$container" rabbitmqctl -q await_startup >/dev/null 2>&1 && break
  sleep 1
done
for k in 1 2 3; do
  docker exec "$container" rabbitmqctl -q add_vhost "runner-$k" >/dev/null
  docker exec "$container" rabbitmqctl -q set_permissions -p "runner-$k" lab '.*' '.*' '.*' >/dev/null
  docker exec "$container" rabbitmqctl -q trace_on -p "runner-$k" >/dev/null
done

cargo build --quiet --bin dmconf
cargo nextest run --test conformance --no-run >/dev/null 2>&1
# At the same time, as two runners would.
pids=()
for k in 1 2; do
  echo "check-partitions: cargo nextest run --partition hash:$k/2, vhost runner-$k"
  DMCONF_AMQP_URL="amqp://lab:$password@127.0.0.1:$port/runner-$k" \
    DMCONF_REPORT_DIR="$work/part-$k" \
    cargo nextest run --test conformance --partition "hash:$k/2" >"$work/part-$k.log" 2>&1 &
  pids+=($!)
done
for k in 1 2; do
  wait "${pids[$((k - 1))]}" || {
    tail -n 30 "$work/part-$k.log" >&2
    exit 1
  }
done

# A part may hold server cases only, on a vhost where nothing has run:
# no verdict may depend on what ran before it.
echo "check-partitions: the DMF server cases alone, on a fresh vhost"
DMCONF_AMQP_URL="amqp://lab:$password@127.0.0.1:$port/runner-3" DMCONF_REPORT_DIR="$work/alone" \
  cargo test --quiet --test conformance -- dmf::server >"$work/alone.log" 2>&1 || {
  tail -n 30 "$work/alone.log" >&2
  exit 1
}

echo "check-partitions: dmconf merge"
target/debug/dmconf merge --out "$work/merged" "$work"/part-1/nextest-*/ "$work"/part-2/nextest-*/ ||
  { echo "check-partitions: the merge failed" >&2; exit 1; }

echo "check-partitions: one run, cargo test --test conformance"
DMCONF_REPORT_DIR="$work/one" cargo test --quiet --test conformance >"$work/one.log" 2>&1 || {
  tail -n 30 "$work/one.log" >&2
  exit 1
}

python3 scripts/same-verdicts.py check-partitions "one run" "$work/one" "two partitions, merged" "$work/merged"
