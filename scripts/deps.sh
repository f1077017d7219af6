#!/usr/bin/env bash
# Installs what building and testing Offswitch needs, with apt, only when it is missing.
# --test adds what only the tests need: Debian's chromium, which renders the HTML reports headless,
# and python3-venv for the Inspect integration's tests.
set -euo pipefail

need=()
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
pkg-config --exists libseccomp 2>/dev/null || need+=(libseccomp-dev)
pkg-config --exists libcap 2>/dev/null || need+=(libcap-dev)
# Image layers: gzip and zstd blobs.
pkg-config --exists zlib 2>/dev/null || need+=(zlib1g-dev)
pkg-config --exists libzstd 2>/dev/null || need+=(libzstd-dev)
# image pull: HTTPS to registries.
pkg-config --exists libcurl 2>/dev/null || need+=(libcurl4-openssl-dev)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
command -v python3 >/dev/null 2>&1 || need+=(python3)
# next-question (the scenarios' trigger) is static C: a compiler and glibc's static library.
command -v cc >/dev/null 2>&1 || need+=(gcc)
[[ -e "$(cc -print-file-name=libc.a 2>/dev/null)" && "$(cc -print-file-name=libc.a 2>/dev/null)" == /* ]] || need+=(libc6-dev)
# The kernel recorder: its BPF program is compiled with clang against this kernel's BTF (bpftool
# dumps vmlinux.h), and loaded with libbpf. Any clang with the BPF target does (Swift's own has it);
# without one, Debian's.
clang -print-targets 2>/dev/null | grep -qw bpf || need+=(clang)
[[ -x /usr/sbin/bpftool ]] || command -v bpftool >/dev/null 2>&1 || need+=(bpftool)
pkg-config --exists libbpf 2>/dev/null || need+=(libbpf-dev)
if [[ "${1:-}" == "--test" ]]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  # The Inspect integration's tests run in a virtual environment.
  python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
  # The adversarial agents (scenarios/palisade-math/agents) use these inside the sandbox, whose
  # /usr is the host's: strace, pgrep/pkill, Debian's own python3, and gcc with glibc's headers.
  command -v strace >/dev/null 2>&1 || need+=(strace)
  [[ -x /usr/bin/pgrep && -x /usr/bin/pkill ]] || need+=(procps)
  # The layer tests compress their archives with the CLIs.
  command -v zstd >/dev/null 2>&1 || need+=(zstd)
  command -v gzip >/dev/null 2>&1 || need+=(gzip)
  [[ -x /usr/bin/python3 ]] || need+=(python3)
  [[ -x /usr/bin/gcc && -e /usr/include/stdio.h ]] || need+=(gcc libc6-dev)
  # The image tests build OCI images with standard tools: umoci for the layout, skopeo for the
  # docker save and oci-archive forms, and a static busybox as the image's programs.
  command -v umoci >/dev/null 2>&1 || need+=(umoci)
  command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
  [[ -x /bin/busybox ]] || need+=(busybox-static)
  # The Inspect integration builds compose services' Dockerfiles with buildah (runc runs their
  # RUN steps), from a Debian base made by debootstrap from this machine's mirror.
  command -v buildah >/dev/null 2>&1 || need+=(buildah)
  command -v runc >/dev/null 2>&1 || need+=(runc)
  command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
  # image pull is tested against a real registry on 127.0.0.1 (the CNCF distribution registry),
  # its token service signing with a key openssl makes.
  [[ -x /usr/bin/docker-registry ]] || need+=(docker-registry)
  command -v openssl >/dev/null 2>&1 || need+=(openssl)
  # Palisade's setup ran sudo before it removed /etc/sudoers: the trial tests build an image from
  # the host's sudo, and the escape battery meets it setuid in the host's /usr.
  [[ -x /usr/bin/sudo ]] || need+=(sudo)
fi

if ((${#need[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "offswitch: missing packages ${need[*]}; run 'make deps' as root or: sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  echo "offswitch: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v swift >/dev/null 2>&1 || { echo "offswitch: swift is not on PATH (Swift 6 toolchain needed)" >&2; exit 1; }
