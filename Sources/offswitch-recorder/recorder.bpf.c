// The kernel recorder: one program, attached to the syscall-entry tracepoint of every call it can
// record (`sys_enter_openat`, `sys_enter_unlinkat`, ...), that writes a record of each call a
// followed sandbox makes into that sandbox's ring buffer. The caller never waits: the record is
// written in the call's own context and the daemon reads it later (docs/recorder.md).
//
// Built by `make build` with clang against this kernel's BTF (vmlinux.h from
// /sys/kernel/btf/vmlinux); loaded by Sources/COffswitchBPF/loader.c. Records follow
// ofs_recorder_event.h.
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "ofs_recorder_event.h"

char LICENSE[] SEC("license") = "GPL";

#define SECCOMP_MODE_FILTER 2
#define PIDTYPE_SID 3
// Bytes of section data a record can hold, and the slack past it that lets the verifier see
// every copy in bounds (a copy starts below DATA_BYTES and is at most SLACK_BYTES long).
#define DATA_BYTES 16384
#define DATA_MASK (DATA_BYTES - 1)
#define SLACK_BYTES 4096
#define NAME_BYTES 256
// Names of one kernel path at most: deeper paths are marked TRUNCATED.
#define PATH_DEPTH 4096
// PID namespaces above the caller's looked at for a followed one (a sandbox's agent may nest).
#define NAMESPACE_DEPTH 4

struct scratch {
    struct ofs_rec_event event;
    char data[DATA_BYTES + SLACK_BYTES];
};

// PID namespace inode number -> slot of a followed sandbox.
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, OFS_REC_SLOTS * 2);
    __type(key, __u32);
    __type(value, __u32);
} sandboxes SEC(".maps");

// slot << 16 | syscall number -> how to record that call for that sandbox.
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, OFS_REC_SLOTS * 128);
    __type(key, __u32);
    __type(value, struct ofs_rec_call);
} calls SEC(".maps");

// Records the ring buffer refused, by slot: the daemon logs and exports them.
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, OFS_REC_SLOTS);
    __type(key, __u32);
    __type(value, __u64);
} lost SEC(".maps");

struct ring {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, OFS_REC_RING_BYTES);
};

// One ring buffer per slot: a sandbox that floods its own cannot make a neighbour lose records.
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
    __uint(max_entries, OFS_REC_SLOTS);
    __type(key, __u32);
    __array(values, struct ring);
} rings SEC(".maps");

// The executables whose path a reader has: process, struct file and inode of its exe_file.
struct exe_key {
    __u64 host_pid;
    __u64 file;
    __u64 inode;
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, struct exe_key);
    __type(value, __u8);
} exes SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct scratch);
} scratches SEC(".maps");

// The slot of the followed sandbox whose PID namespace holds the task, or -1.
static __always_inline int sandbox_slot(struct task_struct *task) {
    struct pid *pid = task->thread_pid;
    unsigned int level = pid->level;
    struct upid upid = {};
    if (level > 32) return -1;
    bpf_probe_read_kernel(&upid, sizeof(upid), &pid->numbers[level]);
    struct pid_namespace *ns = upid.ns;
    for (int i = 0; i < NAMESPACE_DEPTH && ns; i++) {
        __u32 inum = BPF_CORE_READ(ns, ns.inum);
        __u32 *slot = bpf_map_lookup_elem(&sandboxes, &inum);
        if (slot) return *slot;
        ns = BPF_CORE_READ(ns, parent);
    }
    return -1;
}

// A task's pid as its own namespace numbers it (the last of /proc/PID/status's NSpid).
static __always_inline __s32 inner_pid(struct pid *pid) {
    struct upid upid = {};
    if (!pid) return 0;
    unsigned int level = pid->level;
    if (level > 32) return 0;
    bpf_probe_read_kernel(&upid, sizeof(upid), &pid->numbers[level]);
    return upid.nr;
}

static __always_inline int compare(const struct ofs_rec_comparison *c, const __u64 *args) {
    __u64 arg = 0;
    __u8 index = c->index;
    if (index < 6) arg = args[index];
    switch (c->op) {
    case 1: return arg != c->value;
    case 2: return arg < c->value;
    case 3: return arg <= c->value;
    case 4: return arg == c->value;
    case 5: return arg >= c->value;
    case 6: return arg > c->value;
    case 7: return (arg & c->value) == c->value_two;
    }
    return 0;
}

static __always_inline int wanted(const struct ofs_rec_call *call, const __u64 *args) {
    if (call->alternatives == 0) return 1;
    for (int a = 0; a < OFS_REC_ALTERNATIVES; a++) {
        if (a >= call->alternatives) break;
        int count = call->alternative[a].count, all = 1;
        for (int c = 0; c < OFS_REC_COMPARISONS; c++) {
            if (c >= count) break;
            if (!compare(&call->alternative[a].comparison[c], args)) { all = 0; break; }
        }
        if (all) return 1;
    }
    return 0;
}

// An offset into a record's data that the verifier can see is in bounds: the mask is kept from
// the compiler, which would drop it after a comparison that the verifier does not carry over.
static __always_inline __u32 bounded(__u32 off) {
    asm volatile("" : "+r"(off));
    return off & DATA_MASK;
}

// The state of one walk up a kernel path, for `walk_step` under bpf_loop (verified once, where an
// unrolled walk of PATH_DEPTH steps took most of the verifier's budget).
struct walk_state {
    struct scratch *s;
    struct dentry *dentry;
    struct vfsmount *vfsmnt;
    struct mount *mnt;
    struct dentry *root_dentry;
    struct vfsmount *root_mnt;
    __u32 off;
    int done;
};

static long walk_step(__u64 index, void *context) {
    struct walk_state *w = context;
    // Locals, not w->: CO-RE relocates accesses through kernel types only.
    struct dentry *dentry = w->dentry;
    struct vfsmount *vfsmnt = w->vfsmnt;
    struct mount *mnt = w->mnt;
    if (dentry == w->root_dentry && vfsmnt == w->root_mnt) { w->done = 1; return 1; }
    struct dentry *mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
    struct dentry *parent = BPF_CORE_READ(dentry, d_parent);
    if (dentry == mnt_root || dentry == parent) {
        struct mount *up = BPF_CORE_READ(mnt, mnt_parent);
        if (up == mnt || !up) { w->done = 1; return 1; }   // the top of its tree, or not attached
        w->dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
        w->mnt = up;
        w->vfsmnt = &up->mnt;
        return 0;
    }
    if (w->off > DATA_BYTES - NAME_BYTES) return 1;
    long n = bpf_probe_read_kernel_str(&w->s->data[bounded(w->off)], NAME_BYTES, BPF_CORE_READ(dentry, d_name.name));
    if (n <= 0) return 1;
    w->off += n;
    w->dentry = parent;
    return 0;
}

// Appends a kernel path's names, leaf first, to the data at `off` (the walk of d_path, stopping
// at the caller's root): returns the new offset, and sets the section's status.
static __noinline __u32 walk(struct scratch *s, __u32 off, struct dentry *dentry, struct vfsmount *vfsmnt, int section) {
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    if (section < 0 || section >= OFS_SECTIONS || !dentry || !s) return off;

    const struct dentry_operations *ops = BPF_CORE_READ(dentry, d_op);
    if (ops && BPF_CORE_READ(ops, d_dname)) {
        // A pipe, a socket, an anonymous inode: readlink prints what d_dname makes of these.
        if (off > DATA_BYTES - 16 - NAME_BYTES) return off;
        __u64 words[2] = { BPF_CORE_READ(dentry, d_sb, s_magic), BPF_CORE_READ(dentry, d_inode, i_ino) };
        bpf_probe_read_kernel(&s->data[bounded(off)], 16, words);
        long n = bpf_probe_read_kernel_str(&s->data[bounded(off + 16)], NAME_BYTES, BPF_CORE_READ(dentry, d_name.name));
        s->event.status[section] = OFS_SEC_PRESENT | OFS_SEC_PSEUDO;
        s->event.length[section] = 16 + (n > 0 ? n : 0);
        return off + 16 + (n > 0 ? n : 0);
    }
    __u8 status = OFS_SEC_PRESENT | OFS_SEC_WALKED;
    if (!BPF_CORE_READ(dentry, d_hash.pprev) && BPF_CORE_READ(dentry, d_parent) != dentry) status |= OFS_SEC_DELETED;
    struct walk_state w = {
        .s = s, .dentry = dentry, .vfsmnt = vfsmnt, .mnt = container_of(vfsmnt, struct mount, mnt),
        .root_dentry = BPF_CORE_READ(task, fs, root.dentry), .root_mnt = BPF_CORE_READ(task, fs, root.mnt), .off = off,
    };
    bpf_loop(PATH_DEPTH, walk_step, &w, 0);
    if (!w.done) status |= OFS_SEC_TRUNCATED;
    s->event.status[section] = status;
    s->event.length[section] = w.off - off;
    return w.off;
}

// The file of the caller's descriptor `fd`, or NULL.
static __always_inline struct file *descriptor(struct task_struct *task, __s64 fd) {
    struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
    unsigned int max = BPF_CORE_READ(fdt, max_fds);
    struct file **fds = BPF_CORE_READ(fdt, fd);
    struct file *file = NULL;
    if (fd < 0 || fd >= max) return NULL;
    bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
    return file;
}

static __always_inline __u32 walk_file(struct scratch *s, __u32 off, struct file *file, int section) {
    if (!file) return off;
    return walk(s, off, BPF_CORE_READ(file, f_path.dentry), BPF_CORE_READ(file, f_path.mnt), section);
}

// N of `/proc/self/fd/N` or `/proc/thread-self/fd/N` at the start of `text` (length `n`), or -1.
static __always_inline __s64 own_descriptor(const char *text, long n) {
    int at = 0;
    const char self[] = "/proc/self/fd/", thread[] = "/proc/thread-self/fd/";
    int is_self = n > 14, is_thread = n > 21;
    for (int i = 0; i < 21; i++) {
        char c = text[i];
        if (i < 14 && c != self[i]) is_self = 0;
        if (c != thread[i]) is_thread = 0;
    }
    if (is_self) at = 14;
    else if (is_thread) at = 21;
    else return -1;
    __s64 value = 0;
    int digits = 0;
    for (int i = 0; i < 8; i++) {
        char c = text[(at + i) & (SLACK_BYTES - 1)];
        if (c == 0) break;
        if (c < '0' || c > '9') return -1;
        value = value * 10 + (c - '0');
        digits++;
    }
    return digits > 0 && text[(at + digits) & (SLACK_BYTES - 1)] == 0 ? value : -1;
}

SEC("tracepoint")
int record(struct trace_event_raw_sys_enter *ctx) {
    // Fields are read by direct loads through the kernel's own types (BTF), a few nanoseconds
    // each; probe reads only where an index is not constant (a pid's numbers[level]).
    struct task_struct *task = bpf_get_current_task_btf();
    // Only what the sandbox's filter covers: PID 1 (no filter) and host processes are not recorded.
    if (task->seccomp.mode != SECCOMP_MODE_FILTER) return 0;
    int found = sandbox_slot(task);
    if (found < 0) return 0;
    __u32 slot = found;
    __u32 key = slot << 16 | (__u32)ctx->id;
    const struct ofs_rec_call *call = bpf_map_lookup_elem(&calls, &key);
    if (!call) return 0;
    // The arguments from the caller's registers, not the tracepoint's record: one program serves
    // every call, and a record holds only as many arguments as its syscall takes (the kernel refuses
    // to attach a program that reads past the shortest record).
    struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
    __u64 args[8] = { regs->di, regs->si, regs->dx, regs->r10, regs->r8, regs->r9, 0, 0 };
    if (!wanted(call, args)) return 0;

    __u32 zero = 0;
    struct scratch *s = bpf_map_lookup_elem(&scratches, &zero);
    if (!s) return 0;
    struct ofs_rec_event *e = &s->event;
    __builtin_memset(e, 0, sizeof(*e));
    e->time_ns = bpf_ktime_get_ns();
    for (int i = 0; i < 6; i++) e->args[i] = args[i];
    e->nr = ctx->id;
    __u64 ids = bpf_get_current_pid_tgid();
    e->host_pid = ids >> 32;
    e->host_tid = (__u32)ids;
    struct pid *own = task->thread_pid;
    e->pid = inner_pid(own);
    struct pid *parent_pid = task->real_parent->thread_pid;
    e->ppid = parent_pid->level > 0 ? inner_pid(parent_pid) : 0;
    {
        unsigned int level = own->level;
        struct pid *session = task->signal->pids[PIDTYPE_SID];
        struct upid mine = {}, theirs = {};
        if (level <= 32 && session && session->level >= level) {
            bpf_probe_read_kernel(&mine, sizeof(mine), &own->numbers[level]);
            bpf_probe_read_kernel(&theirs, sizeof(theirs), &session->numbers[level]);
            e->sid = theirs.ns == mine.ns ? theirs.nr : 0;
        }
    }
    e->uid = task->real_cred->uid.val;
    e->slot = slot;
    bpf_get_current_comm(e->comm, sizeof(e->comm));
    if (call->words_arg < 6)
        bpf_probe_read_user(e->words, sizeof(e->words), (const void *)args[call->words_arg & 7]);

    // The executable's path is sent once per process and executable (the reader keeps it by
    // `exe_key`); walking it for every record was a third of the program's time.
    struct file *exe = task->mm->exe_file;
    struct exe_key known = { .host_pid = e->host_pid, .file = (__u64)exe, .inode = (__u64)(exe ? exe->f_inode : 0) };
    e->exe_file = known.file;
    e->exe_inode = known.inode;
    int exe_sent = bpf_map_lookup_elem(&exes, &known) != 0;

    __u32 off = 0;
    if (exe_sent) e->status[OFS_SEC_EXE] = OFS_SEC_SAME;
    else off = walk_file(s, off, exe, OFS_SEC_EXE);
    for (int k = 0; k < 2; k++) {
        __u8 index = call->string[k];
        if (index >= 6) continue;
        if (off > DATA_BYTES - 1) break;
        const char *text = &s->data[bounded(off)];
        long n = bpf_probe_read_user_str((void *)text, SLACK_BYTES, (const void *)args[index & 7]);
        if (n <= 0) {
            e->status[OFS_SEC_STRING0 + 2 * k] = OFS_SEC_UNREADABLE;
            continue;
        }
        e->status[OFS_SEC_STRING0 + 2 * k] = OFS_SEC_PRESENT | (n == SLACK_BYTES ? OFS_SEC_TRUNCATED : 0);
        e->length[OFS_SEC_STRING0 + 2 * k] = n - 1;
        off += n - 1;
        __u8 dirfd = call->dirfd[k];
        if (dirfd == OFS_REC_NONE) continue;
        __s64 own = own_descriptor(text, n);
        if (own >= 0) {
            off = walk_file(s, off, descriptor(task, own), OFS_SEC_BASE0 + 2 * k);
            e->status[OFS_SEC_BASE0 + 2 * k] |= OFS_SEC_OWN_FD;
        } else if (text[0] != '/') {
            __s32 fd = dirfd < 6 ? (__s32)args[dirfd & 7] : -100;
            if (fd == -100)
                off = walk(s, off, BPF_CORE_READ(task, fs, pwd.dentry), BPF_CORE_READ(task, fs, pwd.mnt), OFS_SEC_BASE0 + 2 * k);
            else
                off = walk_file(s, off, descriptor(task, fd), OFS_SEC_BASE0 + 2 * k);
        }
    }
    if (call->fd < 6) off = walk_file(s, off, descriptor(task, (__s32)args[call->fd & 7]), OFS_SEC_FD);

    void *ring = bpf_map_lookup_elem(&rings, &slot);
    __u64 size = (sizeof(struct ofs_rec_event) + off) & 0x7fff;
    // Opaque to the compiler, so that the bound below reaches the verifier as written.
    asm volatile("" : "+r"(size));
    if (size > sizeof(struct scratch)) size = sizeof(struct scratch);
    // The reader polls; it is woken early only when a burst has filled part of the ring.
    __u64 flags = ring && bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA) > OFS_REC_WAKE_BYTES ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
    if (!ring || bpf_ringbuf_output(ring, s, size, flags)) {
        __u64 *count = bpf_map_lookup_elem(&lost, &slot);
        if (count) __sync_fetch_and_add(count, 1);
        return 0;
    }
    // Only once the reader has the path: a record lost is sent again.
    if (!exe_sent && (e->status[OFS_SEC_EXE] & OFS_SEC_PRESENT) && !(e->status[OFS_SEC_EXE] & OFS_SEC_TRUNCATED)) {
        __u8 one = 1;
        bpf_map_update_elem(&exes, &known, &one, BPF_ANY);
    }
    return 0;
}

// Probes only, never attached: whether this kernel loads programs on the hooks where it has
// already resolved the object (ofs_bpf_probe_hooks). Not loaded with `record`.
SEC("lsm/file_open")
int BPF_PROG(probe_lsm, struct file *file) { return 0; }

SEC("fentry/security_file_open")
int BPF_PROG(probe_fentry, struct file *file) { return 0; }
