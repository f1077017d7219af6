// What a syscall-entry tracepoint recorder costs the caller (bench/bpf-probe/README.md).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
char LICENSE[] SEC("license") = "GPL";
struct ev { u32 kind; u32 pid; u64 flags; u64 arg; char path[256]; };
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 1 << 22); } rb SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, u32); __type(value, u64); } cfg SEC(".maps");
u64 lost = 0;
SEC("tp_btf/sys_enter")
int BPF_PROG(on_enter, struct pt_regs *regs, long id) {
    if (id != 257) return 0;  // openat
    u32 k = 0; u64 *cg = bpf_map_lookup_elem(&cfg, &k);
    if (!cg || !*cg || bpf_get_current_cgroup_id() != *cg) return 0;
    u64 flags = BPF_CORE_READ(regs, dx);
    if (!(flags & (01 | 02 | 01000 | 0100))) return 0;
    struct ev *e = bpf_ringbuf_reserve(&rb, sizeof(*e), 0);
    if (!e) { __sync_fetch_and_add(&lost, 1); return 0; }
    e->kind = 1; e->pid = bpf_get_current_pid_tgid() >> 32; e->flags = flags; e->arg = 0;
    bpf_probe_read_user_str(e->path, sizeof(e->path), (const char *)BPF_CORE_READ(regs, si));
    u64 avail = bpf_ringbuf_query(&rb, BPF_RB_AVAIL_DATA);
    bpf_ringbuf_submit(e, avail > (256 << 10) ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
    return 0;
}
