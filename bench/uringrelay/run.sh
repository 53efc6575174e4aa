#!/usr/bin/env bash
# CPU per request of bench/uringrelay's modes, interleaved in rounds.
# The relay runs alone on CPU 1 (GOMAXPROCS=1); nginx (the backend, /small
# as in bench/cmd/sidebyside) and wrk share CPU 0. Everything on 127.0.0.1,
# every load run bounded by -d.
#
#   bench/uringrelay/run.sh [rounds] [seconds] [conns] [modes...]
#   bench/uringrelay/run.sh 4 5 64 epoll uring uringw uring:defer
#   STRACE=1 bench/uringrelay/run.sh 1 3 64 epoll uring   # system calls per request
set -euo pipefail
rounds=${1:-3}; secs=${2:-5}; conns=${3:-64}; shift 3 || true
modes=("$@"); [ ${#modes[@]} -gt 0 ] || modes=(epoll uring uringw)
cd "$(dirname "$0")/../.."
mkdir -p bench/out
go build -o bench/out/uringrelay ./bench/uringrelay
dir=$(mktemp -d)
trap 'kill $(cat "$dir"/*.pid 2>/dev/null) 2>/dev/null || true; rm -rf "$dir"' EXIT
bport=18091 rport=18100
cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/t; proxy_temp_path $dir/t; fastcgi_temp_path $dir/t;
    uwsgi_temp_path $dir/t; scgi_temp_path $dir/t;
    keepalive_requests 10000000;
    server {
        listen 127.0.0.1:$bport backlog=4096;
        location = /small { return 200 "hello from the bench backend\n"; }
    }
}
EOF
taskset -c 0 nginx -c "$dir/nginx.conf" -p "$dir" >/dev/null 2>&1 &
echo $! >"$dir/nginx-master.pid"
sleep 0.5
curl -sf http://127.0.0.1:$bport/small >/dev/null
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
nm=${#modes[@]}
for round in $(seq "$rounds"); do
  for k in $(seq 0 $((nm - 1))); do
    m=${modes[$(((round - 1 + k) % nm))]}   # the order rotates from round to round
    mode=${m%%:*}; flags=coop; [ "$m" != "$mode" ] && flags=${m#*:}
    rport=$((rport + 1))
    GOMAXPROCS=1 taskset -c 1 bench/out/uringrelay -listen 127.0.0.1:$rport -backend 127.0.0.1:$bport \
      -mode "$mode" -flags "$flags" -max 2m ${RELAY_ARGS:-} &
    pid=$!
    echo $pid >"$dir/relay.pid"
    sleep 0.3
    taskset -c 0 wrk -t1 -c"$conns" -d1s http://127.0.0.1:$rport/small >/dev/null   # warm-up
    if [ "${STRACE:-}" = 1 ]; then
      strace -c -f -p "$pid" -o "$dir/strace.txt" & spid=$!
      sleep 0.5
    fi
    c0=$(cpu "$pid")
    out=$(taskset -c 0 wrk -t1 -c"$conns" -d"${secs}s" http://127.0.0.1:$rport/small)
    c1=$(cpu "$pid")
    reqs=$(echo "$out" | awk '/requests in/{print $1}')
    if [ "${STRACE:-}" = 1 ]; then
      kill -INT "$spid"; wait "$spid" 2>/dev/null || true
      calls=$(awk '$NF=="total"{print $(NF-2)}' "$dir/strace.txt")
      echo "strace $m: $(awk -v r="$reqs" '$1 ~ /^[0-9.]+$/ && NF>=5 {printf "%s=%.3f ", $NF, $4/r}' "$dir/strace.txt") total/req=$(awk -v c="$calls" -v r="$reqs" 'BEGIN{printf "%.3f", c/r}')"
    fi
    kill "$pid"; sleep 0.2; kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
    awk -v m="$m" -v r="$round" -v c=$((c1 - c0)) -v t="$ticks" -v q="$reqs" -v s="$secs" \
      'BEGIN{printf "round %d %-12s reqs/s %8.0f  cpu %5.1f%%  us/req %.3f\n", r, m, q/s, 100*c/t/s, 1e6*c/t/q}'
  done
done
