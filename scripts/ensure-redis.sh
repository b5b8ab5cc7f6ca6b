#!/usr/bin/env bash
# Usage: scripts/ensure-redis.sh [REDIS_URL]
# Make sure a Redis answers at REDIS_URL. If nothing answers and the URL points
# at loopback, start a local, durable (AOF, fsync always) redis-server under
# ./var/redis on the URL's port. Refuses to start anything for non-loopback URLs.
set -euo pipefail

url="${1:-${REDIS_URL:-redis://127.0.0.1:6379/0}}"

log() { printf 'ensure-redis: %s\n' "$*"; }
die() { printf 'ensure-redis: ERROR: %s\n' "$*" >&2; exit 1; }

command -v redis-cli >/dev/null 2>&1 || die "redis-cli not found; run scripts/install-deps.sh"

ping() { redis-cli -u "$url" ping 2>/dev/null | tr -d '\r' || true; }

if [[ "$(ping)" == "PONG" ]]; then
    log "redis at $url answered PONG"
    exit 0
fi

# Parse redis[s]://[user[:pass]@]host[:port][/db]
case "$url" in
    redis://*) rest="${url#redis://}" ;;
    rediss://*) die "$url uses TLS (rediss://); refusing to start a local plain-text redis for it" ;;
    *) die "unsupported Redis URL '$url' (expected redis://host[:port][/db])" ;;
esac
rest="${rest%%/*}"      # strip /db
rest="${rest##*@}"      # strip credentials
if [[ "$rest" == \[* ]]; then          # [ipv6]:port
    host="${rest%%]*}"; host="${host#[}"
    after="${rest#*]}"
    port="${after#:}"
else
    host="${rest%%:*}"
    if [[ "$rest" == *:* ]]; then port="${rest##*:}"; else port=""; fi
fi
port="${port:-6379}"
[[ "$port" =~ ^[0-9]+$ ]] && ((port > 0 && port < 65536)) || die "bad port '$port' in '$url'"

case "$host" in
    127.*|localhost|::1) ;;
    *) die "nothing answers at $url and host '$host' is not loopback; start that Redis yourself (this script only starts a local one)" ;;
esac

command -v redis-server >/dev/null 2>&1 || die "redis-server not found; run scripts/install-deps.sh"

dir="$PWD/var/redis"
mkdir -p "$dir"
log "no PONG from $url; starting local redis-server on 127.0.0.1:$port (data: $dir)"

# Absolute paths: redis chdirs into `dir`, so relative log/pid paths would be ambiguous.
# "-::1" = also bind IPv6 loopback if available (the leading '-' makes it optional).
redis-server \
    --port "$port" \
    --bind "127.0.0.1 -::1" \
    --daemonize yes \
    --appendonly yes \
    --appendfsync always \
    --dir "$dir" \
    --logfile "$dir/redis.log" \
    --pidfile "$dir/redis.pid" \
    || die "redis-server failed to start; see $dir/redis.log"

for _ in $(seq 1 50); do
    if [[ "$(ping)" == "PONG" ]]; then
        log "redis at $url answered PONG (pid $(cat "$dir/redis.pid" 2>/dev/null || echo '?'); stop with: make clean-var)"
        exit 0
    fi
    sleep 0.1
done

printf 'ensure-redis: ERROR: redis did not answer PONG at %s within 5 s; last log lines:\n' "$url" >&2
tail -n 20 "$dir/redis.log" >&2 2>/dev/null || true
exit 1
