#!/usr/bin/env bash
# make bench: Offswitch beside its peers, each pair interleaved in one run so machine drift
# cancels out, reported as medians and ratios. Installs the peers from Debian when missing.
set -euo pipefail
OFFSWITCH=${OFFSWITCH:-offswitch}
RUNS=${RUNS:-100}
if [[ $(id -u) -ne 0 ]]; then echo "make bench needs root (sandboxes, runc)" >&2; exit 1; fi
need=()
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
command -v runc >/dev/null 2>&1 || need+=(runc)
[[ -x /bin/busybox ]] || need+=(busybox-static)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
command -v strace >/dev/null 2>&1 || need+=(strace)
python3 -c 'import yaml' 2>/dev/null || need+=(python3-yaml)
command -v umoci >/dev/null 2>&1 || need+=(umoci)
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
[[ -x /usr/bin/docker-registry ]] || need+=(docker-registry)
if ((${#need[@]})); then
  echo "bench: installing ${need[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi
exec python3 "$(dirname "$0")/bench.py" "$OFFSWITCH" "$RUNS"
