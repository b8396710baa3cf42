#!/bin/busybox sh
# /init of `cargo xtask guest --inside` (xtask/src/guest/inside.rs fills in the fields written
# between at-signs, except READY and STOP, which this script replaces per step).
# Runs, as root in the arm64 guest, the steps listed in /etc/cmdqv-steps, one per line:
#   NAME OUTFILE MODE SUBCOMMAND ARGS…
# MODE `run` runs `cmdqv SUBCOMMAND ARGS` with stdout to OUTFILE; MODE `around-workload` starts it
# in the background, waits until it is ready (the file @READY@ stands for appears, or 2 s when its
# arguments have no @READY@), runs the DMA workload, then stops it (creates the file @STOP@
# stands for, or sends SIGINT when its arguments have no @STOP@) and waits for it; MODE
# `beside-sim-vmm` starts a sim VMM whose VCMDQs are backed by the simulated host (page0 on a
# memfd it maps), runs the step with @VMM_PID@ replaced by that VMM's pid, then stops it. A step whose
# subcommand this cmdqv does not have is recorded as skipped (an around-workload step's workload
# still runs, untraced). Each step adds `NAME STATUS EXIT T0 T1 NOTE` to steps.txt (times from
# /proc/uptime). Everything in /out leaves the guest as a tar written to the raw virtio disk
# whose serial is @OUT_SERIAL@; the serial console only carries progress lines.
/bin/busybox mkdir -p /proc /sys /dev /sbin /usr/bin /usr/sbin /tmp /out
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t bpf bpf /sys/fs/bpf
mount -t tmpfs tmpfs /tmp
for m in @MODULES@; do insmod /lib/modules/$m.ko || echo "insmod $m failed"; done

now() { read -r up _ < /proc/uptime; echo "$up"; }
say() { echo "cmdqv-inside: $*"; }

# The output disk by its serial; the workload disk is the other virtio disk.
OUT=; WORK=; i=0
while [ $i -lt 200 ]; do
    for d in /sys/block/vd*; do
        [ -e "$d" ] || continue
        if [ "$(cat "$d/serial" 2>/dev/null)" = @OUT_SERIAL@ ]; then OUT=/dev/${d##*/}; else WORK=/dev/${d##*/}; fi
    done
    [ -b "$OUT" ] && [ -b "$WORK" ] && break
    sleep 0.05; i=$((i+1))
done
say "workload disk $WORK, output disk $OUT"

uname -a > /out/uname.txt
if ps=$(getconf PAGESIZE 2>/dev/null); then
    echo "PAGESIZE $ps (getconf PAGESIZE)" >> /out/uname.txt
else
    kb=$(sed -n 's/^KernelPageSize: *\([0-9]*\) kB$/\1/p' /proc/self/smaps | head -n 1)
    echo "PAGESIZE $((kb * 1024)) (KernelPageSize in /proc/self/smaps: busybox has no getconf)" >> /out/uname.txt
fi

# The DMA workload: the whole workload disk read once through the SMMU (O_DIRECT, so every
# block is a fresh DMA map and unmap: with iommu.strict=1 a TLBI and a CMD_SYNC each).
workload() {
    local t0 how rc
    t0=$(now); how=direct
    dd if="$WORK" of=/dev/null bs=64k iflag=direct 2>/dev/null; rc=$?
    if [ $rc -ne 0 ]; then
        how=cached; echo 3 > /proc/sys/vm/drop_caches
        dd if="$WORK" of=/dev/null bs=64k 2>/dev/null; rc=$?
    fi
    echo "workload $([ $rc -eq 0 ] && echo ok || echo failed) $rc $t0 $(now) $1 read $WORK ($how)" >> /out/steps.txt
    say "workload: read $WORK ($how, $1)"
    WORKLOAD_DONE=1
}

# Waits up to 300 s for $1 to exist while process $2 lives.
wait_ready() {
    local i=0
    while [ ! -e "$1" ] && kill -0 "$2" 2>/dev/null && [ $i -lt 3000 ]; do sleep 0.1; i=$((i+1)); done
}

around_workload() {
    local name=$1 out=$2 pid
    shift 2
    /bin/cmdqv "$@" > "/out/$out" 2> "/out/$name.stderr" < /dev/null &
    pid=$!
    case " $* " in *" /tmp/$name.ready "*) wait_ready "/tmp/$name.ready" $pid;; *) sleep 2;; esac
    workload "traced-by-$name"
    case " $* " in *" /tmp/$name.stop "*) touch "/tmp/$name.stop";; *) kill -INT $pid;; esac
    wait $pid
}

# Starts `cmdqv sim` on the hw-errors scenario (hardware-backed VCMDQs) and waits until its
# VMM process has the page0 memfd mapped: sets SIM_PID and VMM_PID.
start_sim_vmm() {
    local i=0 p
    /bin/cmdqv sim --scenario hw-errors --headless --duration 300s --no-ebpf --json \
        > /tmp/sim-vmm.json 2>&1 < /dev/null &
    SIM_PID=$!; VMM_PID=
    while [ $i -lt 600 ] && kill -0 $SIM_PID 2>/dev/null; do
        for p in /proc/[0-9]*; do
            case "$(tr '\0' ' ' < $p/cmdline 2>/dev/null)" in
                *" sim-vmm "*) grep -q cmdqv-vintf-page0 $p/maps 2>/dev/null && VMM_PID=${p#/proc/};;
            esac
        done
        [ -n "$VMM_PID" ] && return 0
        sleep 0.1; i=$((i+1))
    done
    return 1
}

beside_sim_vmm() {
    local name=$1 out=$2 rc
    shift 2
    if start_sim_vmm; then
        /bin/cmdqv $(echo "$*" | sed "s|@VMM_PID@|$VMM_PID|g") \
            > "/out/$out" 2> "/out/$name.stderr" < /dev/null
        rc=$?
    else
        echo "no sim VMM with a page0 memfd mapping appeared within 60 s" > "/out/$name.stderr"
        rc=125
    fi
    kill -INT $SIM_PID 2>/dev/null; wait $SIM_PID
    return $rc
}

WORKLOAD_DONE=
while read -r name out mode sub args; do
    case "$name" in ''|'#'*) continue;; esac
    t0=$(now)
    if ! /bin/cmdqv "$sub" --help > /dev/null 2>&1 < /dev/null; then
        echo "$name skipped - $t0 $t0 this cmdqv has no '$sub' subcommand" >> /out/steps.txt
        say "$name: skipped (no '$sub' subcommand)"
        [ "$mode" = around-workload ] && workload untraced
        continue
    fi
    args=$(echo "$args" | sed "s|@READY@|/tmp/$name.ready|g; s|@STOP@|/tmp/$name.stop|g")
    say "$name: cmdqv $sub $args"
    case "$mode" in
        run) /bin/cmdqv "$sub" $args > "/out/$out" 2> "/out/$name.stderr" < /dev/null; rc=$? ;;
        around-workload) around_workload "$name" "$out" "$sub" $args; rc=$? ;;
        beside-sim-vmm) beside_sim_vmm "$name" "$out" "$sub" $args; rc=$? ;;
        *) echo "unknown mode $mode" > "/out/$name.stderr"; rc=127 ;;
    esac
    echo "$name $([ $rc -eq 0 ] && echo ok || echo failed) $rc $t0 $(now) $mode" >> /out/steps.txt
    say "$name: exit $rc"
done < /etc/cmdqv-steps
[ -n "$WORKLOAD_DONE" ] || workload untraced

dmesg > /out/dmesg.txt
cd /out && tar -cf "$OUT" ./* && sync && say "results written to $OUT"
echo @DONE@
poweroff -f
