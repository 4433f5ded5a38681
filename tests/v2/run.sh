#!/usr/bin/env bash
# make check-v2: the v2 test set on real cgroup v2, in Debian's own kernels booted under QEMU.
#
#   tests/v2/run.sh BUILD_DIR [KERNEL...]        KERNEL: 6.1, 6.12 (default: both)
#
# Environment: MV_V2_SUITES (Check suites run in the guest, in order; default below),
# MV_V2_TIMEOUT (seconds per guest before it is killed; default 1200), MV_V2_CMD (a shell
# command run in the guest after the suites, e.g. a benchmark; with it, no suite runs unless
# MV_V2_SUITES names some), MV_V2_KEEP=1 (print the console log of a passing run too).
#
# Per kernel: the exact package is fetched with `apt-get download` (never a wildcard: that
# would pull every kernel of the series), its vmlinuz and the few modules the guest needs are
# extracted into build/v2/<kernel>/, an initramfs is made of busybox-static, those modules and
# tests/v2/init, and QEMU boots it with software emulation (TCG: /dev/kvm exists on the dev
# machine but its vCPUs spin). The guest mounts the host's / read-only over 9p under a tmpfs
# overlay and this checkout read-write at its own path (so the build's absolute paths work),
# mounts cgroup2 with cgroup_no_v1=all, and runs tests/v2/guest.sh, which writes the Check
# output and its exit status into build/v2/<kernel>/. A guest still running at the time limit
# is killed, and the target fails with its console log.
set -euo pipefail

build=$(cd "${1:?usage: run.sh BUILD_DIR [KERNEL...]}" && pwd)
shift
here=$(cd "$(dirname "$0")" && pwd)
checkout=$(cd "$here/../.." && pwd)
kernels=("$@")
[ ${#kernels[@]} -gt 0 ] || kernels=(6.1 6.12)
# A command alone runs no suite unless MV_V2_SUITES names some.
if [ -n "${MV_V2_CMD:-}" ]; then suites=${MV_V2_SUITES:-}; else suites=${MV_V2_SUITES:-cgroup_v2 e2e faults truth template handoff succ recycle}; fi
timeout=${MV_V2_TIMEOUT:-1200}
v2=$build/v2

# The exact kernel packages. 6.1: what `apt-cache depends linux-image-amd64` names on Debian 12
# (memory.peak cannot be reset there: the high-water-mark fallback); 6.12: the newest 6.12 in
# bookworm-security when this was written (memory.peak resettable per open fd: the kernel-peak
# path). Override with MV_V2_PKG_6_1 / MV_V2_PKG_6_12 when the archive moves on.
pkg_for() {
    case "$1" in
    6.1) echo "${MV_V2_PKG_6_1:-linux-image-6.1.0-57-amd64}" ;;
    6.12) echo "${MV_V2_PKG_6_12:-linux-image-6.12.118+deb12-amd64-unsigned}" ;;
    *) echo "run.sh: unknown kernel '$1' (6.1 or 6.12)" >&2; return 2 ;;
    esac
}

# The modules the guest loads, in this order (a module's dependencies come first). Those a
# kernel builds in (6.12: virtio) or no longer has (6.12: fscache is part of netfs) are skipped.
modules=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci netfs fscache
         9pnet 9pnet_virtio 9p overlay)

log() { echo "check-v2: $*"; }

sudo_if_needed() { [ "$(id -u)" -eq 0 ] || echo sudo; }

install_tools() {
    local missing=() p sudo
    for p in qemu-system-x86 busybox-static cpio xz-utils; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing missing packages: ${missing[*]}"
    sudo=$(sudo_if_needed)
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Downloads the kernel package (once) and extracts vmlinuz and the guest's modules.
prepare_kernel() {
    local k=$1 pkg dir deb tree f m dep
    pkg=$(pkg_for "$k")
    dir=$v2/$k
    [ -f "$dir/initramfs.cpio.gz" ] && [ "$dir/initramfs.cpio.gz" -nt "$here/init" ] &&
        [ "$(cat "$dir/package" 2>/dev/null)" = "$pkg" ] && return 0
    mkdir -p "$v2/deb" "$dir"
    deb=$(ls "$v2/deb/${pkg}_"*.deb 2>/dev/null | head -1 || true)
    if [ -z "$deb" ]; then
        if ! apt-cache show "$pkg" >/dev/null 2>&1; then
            log "package $pkg is not in the apt lists: apt-get update"
            $(sudo_if_needed) apt-get update -qq
        fi
        apt-cache show "$pkg" >/dev/null 2>&1 || {
            log "package $pkg is not in the archive any more: set MV_V2_PKG_${k/./_} to its successor"
            return 1
        }
        log "downloading $pkg"
        (cd "$v2/deb" && apt-get download -q "$pkg" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
        deb=$(ls "$v2/deb/${pkg}_"*.deb 2>/dev/null | head -1 || true)
        [ -n "$deb" ] || { log "apt-get download $pkg failed"; return 1; }
    fi
    tree=$dir/tree
    rm -rf "$tree" "$dir/initrd"
    mkdir -p "$tree" "$dir/initrd/modules" "$dir/initrd/bin"
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tree" --wildcards --no-anchored \
        './boot/vmlinuz-*' '*/kernel/drivers/virtio/*' '*/kernel/net/9p/*' '*/kernel/fs/9p/*' \
        '*/kernel/fs/netfs/*' '*/kernel/fs/fscache/*' '*/kernel/fs/overlayfs/*' 2>/dev/null || true
    cp "$tree"/boot/vmlinuz-* "$dir/vmlinuz"
    : >"$dir/initrd/modules.order"
    for m in "${modules[@]}"; do
        f=$(find "$tree/lib/modules" -name "$m.ko" -o -name "$m.ko.xz" | head -1)
        [ -n "$f" ] || continue
        case "$f" in *.xz) xz -dc "$f" >"$dir/initrd/modules/$m.ko" ;; *) cp "$f" "$dir/initrd/modules/$m.ko" ;; esac
        # A dependency missing from the list above would fail at insmod in the guest: say so here.
        for dep in $(tr '\0' '\n' <"$dir/initrd/modules/$m.ko" | sed -n 's/^depends=//p' | tr , ' '); do
            grep -qx "$dep" "$dir/initrd/modules.order" ||
                { log "$pkg: module $m needs $dep, which is not loaded before it"; return 1; }
        done
        echo "$m" >>"$dir/initrd/modules.order"
    done
    cp /bin/busybox "$dir/initrd/bin/busybox"
    cp "$here/init" "$dir/initrd/init"
    chmod 755 "$dir/initrd/init"
    (cd "$dir/initrd" && find . | cpio -o -H newc --quiet | gzip -1 >"$dir/initramfs.cpio.gz")
    rm -rf "$tree"
    echo "$pkg" >"$dir/package"
    log "$pkg: initramfs with modules $(tr '\n' ' ' <"$dir/initrd/modules.order")"
}

# Boots one kernel, runs the set, prints what it found; 0 when every test passed.
boot() {
    local k=$1 dir=$v2/$k console t0 t1 rc status
    console=$dir/console.log
    rm -f "$dir/status" "$dir/check.log" "$console"
    {
        echo "build $build"
        for s in $suites; do echo "suite $s"; done
        [ -z "${MV_V2_CMD:-}" ] || echo "cmd $MV_V2_CMD"
    } >"$dir/plan"
    log "booting $(cat "$dir/package") (TCG, 2 vCPUs, time limit ${timeout}s)"
    t0=$(date +%s%N)
    set +e
    timeout -s KILL "$timeout" qemu-system-x86_64 \
        -accel tcg,thread=multi -smp 2 -m 2048 -cpu max \
        -kernel "$dir/vmlinuz" -initrd "$dir/initramfs.cpio.gz" \
        -append "console=ttyS0 cgroup_no_v1=all panic=-1 quiet loglevel=4 mv.checkout=$checkout mv.out=$dir" \
        -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap" \
        -virtfs "local,path=$checkout,mount_tag=checkout,security_model=none,multidevs=remap" \
        -display none -monitor none -serial "file:$console" -no-reboot -nic none \
        </dev/null
    rc=$?
    set -e
    t1=$(date +%s%N)
    status=$(cat "$dir/status" 2>/dev/null || echo none)
    [ -f "$dir/check.log" ] && grep -E '^(check-v2|[0-9]+%: Checks)|:[EF]:' "$dir/check.log" || true
    log "$k: boot to power-off $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", (b - a) / 1e9}') s, status $status;" \
        "$(sed -n 's/^[0-9]*%: Checks: \([0-9]*\), Failures: \([0-9]*\), Errors: \([0-9]*\)/\1 \2 \3/p' \
            "$dir/check.log" 2>/dev/null |
            awk '{n += $1; f += $2; e += $3} END {printf "%d tests, %d passed, %d failed", n, n - f - e, f + e}')"
    if [ "$rc" -eq 137 ]; then
        log "$k: the guest was still running after ${timeout}s and was killed; console:"
        cat "$console"
        return 1
    fi
    if [ "$status" != 0 ]; then
        log "$k: failed (qemu exit $rc); console:"
        cat "$console"
        return 1
    fi
    [ -z "${MV_V2_KEEP:-}" ] || cat "$console"
    return 0
}

install_tools
failed=0
failures=()
for k in "${kernels[@]}"; do
    prepare_kernel "$k"
done
# A guest whose kernel panicked (its console says so, and no status came back) is booted once
# more: CI's 6.12 guest double-faulted in the kernel's slab allocator under TCG (EFLAGS with
# reserved bits set: the emulation's), in a mkdir of a cgroup, where the same build's tests had
# passed on that kernel in the runs before. A second panic, or any test's failure, fails the
# target.
for k in "${kernels[@]}"; do
    boot "$k" && continue
    if [ "$(cat "$v2/$k/status" 2>/dev/null || echo none)" = none ] &&
        grep -q 'Kernel panic - not syncing' "$v2/$k/console.log" 2>/dev/null; then
        log "$k: the guest kernel panicked (its console above), not a test: booting it again, once"
        boot "$k" && continue
    fi
    failed=1
    failures+=("$k")
done
# The console logs above are long, and a CI log may keep only its end: say again, last, what
# failed where: the guest's status (none: killed at the time limit, or its kernel panicked),
# and Check's :F:/:E: lines (the first five), or the console's last lines when it gave none.
for k in ${failures[@]+"${failures[@]}"}; do
    status=$(cat "$v2/$k/status" 2>/dev/null || echo none)
    n=$(grep -cE ':[EF]:' "$v2/$k/check.log" 2>/dev/null || true)
    if [ "${n:-0}" -gt 0 ]; then
        log "$k: status $status, $n failed test(s): $(grep -E ':[EF]:' "$v2/$k/check.log" | head -5 | tr '\n' ' ')"
    else
        log "$k: status $status, no test's failure in its log; its console ends: $(tail -3 "$v2/$k/console.log" 2>/dev/null | tr '\n' ' ')"
    fi
done
exit $failed
