#!/usr/bin/env bash
# make palisade-image: a Palisade-like image built offline from this machine's Debian mirror and
# imported into the image store. Debian 12 minbase (debootstrap), then bash, python3 and sudo, and
# a `user` account (uid 1000) with sudo rights, as Palisade's image had (docs/palisade.md), plus
# what the bundled adversarial agents use (gcc and glibc's headers, strace, procps), so that every
# agent meets the same tools as on the host root. One layer, tagged offswitch/palisade:bookworm.
# OFFSWITCH_IMAGE_STORE (or /var/lib/offswitch/images) is the store.
set -euo pipefail
OFFSWITCH=${OFFSWITCH:-offswitch}
TAG=${TAG:-offswitch/palisade:bookworm}
MIRROR=${MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
if [[ $(id -u) -ne 0 ]]; then echo "palisade-image: needs root (debootstrap, the image store)" >&2; exit 1; fi
need=()
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v umoci >/dev/null 2>&1 || need+=(umoci)
if ((${#need[@]})); then
  echo "palisade-image: installing ${need[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi
work=$(mktemp -d /var/tmp/offswitch-palisade-image.XXXXXX)
trap 'umount -R "$work/rootfs/proc" 2>/dev/null || true; rm -rf "$work"' EXIT
echo "palisade-image: debootstrap bookworm (minbase) from $MIRROR" >&2
debootstrap --variant=minbase --include=bash,python3,sudo,procps,gcc,libc6-dev,strace bookworm "$work/rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
chroot "$work/rootfs" useradd --create-home --uid 1000 --shell /bin/bash user
echo 'user ALL=(ALL) NOPASSWD:ALL' > "$work/rootfs/etc/sudoers.d/user"
chmod 0440 "$work/rootfs/etc/sudoers.d/user"
# What the build leaves that an image does not need.
rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"* "$work/rootfs/var/log/"*
echo "palisade-image: packing the layer" >&2
# /dev's nodes are the sandbox's own (a layer holding devices is refused).
tar --numeric-owner --xattrs --xattrs-include='security.capability' --exclude='./dev/*' -C "$work/rootfs" -cf "$work/layer.tar" .
umoci init --layout "$work/layout" >/dev/null
umoci new --image "$work/layout:palisade" >/dev/null
umoci raw add-layer --image "$work/layout:palisade" "$work/layer.tar" >/dev/null
umoci config --image "$work/layout:palisade" --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.workingdir /home/user --config.user user --config.cmd /bin/bash >/dev/null
"$OFFSWITCH" image import "$work/layout" --tag "$TAG"
