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

// BPF_CORE_READ declares its temporaries with the field's own type: for a const field, clang 21
// (the one Swift ships) warns that the temporary, written at once by the probe read, starts
// uninitialized. Debian's clang does not know the warning.
#if __clang_major__ >= 21
#pragma clang diagnostic ignored "-Wdefault-const-init-var-unsafe"
#endif

char LICENSE[] SEC("license") = "GPL";

#define SECCOMP_MODE_FILTER 2
#define PIDTYPE_SID 3
// Bytes of section data a record can hold, and the slack past it that lets the verifier see
// every copy in bounds (a copy starts below DATA_BYTES and is at most SLACK_BYTES long). Each
// section has a budget (WALK_BYTES for a kernel path, STRING_BYTES for a string) and the budgets
// together fit in DATA_BYTES: one long path cannot crowd another out of the record.
#define DATA_BYTES 32768
#define DATA_MASK (DATA_BYTES - 1)
#define SLACK_BYTES 8192
#define NAME_BYTES 256
// A path the kernel takes is at most PATH_MAX (4096) bytes with its NUL: one byte more tells a
// string the kernel would refuse (ENAMETOOLONG) from one it takes whole.
#define STRING_BYTES 4097
#define WALK_BYTES (4096 + NAME_BYTES)
// Names of one kernel path at most: deeper paths are marked TRUNCATED.
#define PATH_DEPTH 4096
// PID namespaces above the caller's looked at for a followed one: every level the kernel allows
// (32), so that an agent nesting namespaces cannot leave the sandbox's.
#define NAMESPACE_DEPTH 33

struct scratch {
    // Bytes of data written so far: kept here, not in a register, so that the verifier sees an
    // offset it knows only through its mask, and paths through different walks merge.
    __u32 used;
    __u32 reserved;
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

// One scratch record per CPU, indexed by the CPU (a per-CPU array holds at most 32 KiB a value):
// the loader sets max_entries to the CPUs there can be. A syscall tracepoint runs in its task's
// context with migration disabled, and never inside another on the same CPU.
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct scratch);
} scratches SEC(".maps");

// Calls whose strings could not be copied at entry (a page not resident yet), by thread: the
// exit program builds their record once the kernel has read them (OFS_REC_AT_EXIT). Not an LRU
// map: one would evict a waiting call, unrecorded and uncounted, for the 4097th; this one refuses
// the new call instead, which is counted lost. A thread that dies inside its call has no exit, so
// its entry goes when it does (forget_pending).
struct pending {
    __u64 time_ns;
    __u32 slot;
    __u32 nr;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, OFS_REC_SLOTS * 1024);
    __type(key, __u32);
    __type(value, struct pending);
} pendings SEC(".maps");

struct namespace_search {
    struct pid_namespace *ns;
    int slot;
};

static long namespace_step(__u64 index, void *context) {
    struct namespace_search *search = context;
    struct pid_namespace *ns = search->ns;
    if (!ns) return 1;
    __u32 inum = BPF_CORE_READ(ns, ns.inum);
    __u32 *slot = bpf_map_lookup_elem(&sandboxes, &inum);
    if (slot) {
        search->slot = *slot;
        return 1;
    }
    search->ns = BPF_CORE_READ(ns, parent);
    return 0;
}

// The slot of the followed sandbox whose PID namespace holds the task, or -1 (under bpf_loop:
// an unrolled search of every level cost the verifier more than all the rest).
static __always_inline int sandbox_slot(struct task_struct *task) {
    struct pid *pid = task->thread_pid;
    unsigned int level = pid->level;
    struct upid upid = {};
    if (level > 32) return -1;
    bpf_probe_read_kernel(&upid, sizeof(upid), &pid->numbers[level]);
    struct namespace_search search = { .ns = upid.ns, .slot = -1 };
    bpf_loop(NAMESPACE_DEPTH, namespace_step, &search, 0);
    return search.slot;
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
    __u32 end;
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
    if (w->off > DATA_BYTES - NAME_BYTES || w->off + NAME_BYTES > w->end) return 1;
    long n = bpf_probe_read_kernel_str(&w->s->data[bounded(w->off)], NAME_BYTES, BPF_CORE_READ(dentry, d_name.name));
    if (n <= 0) return 1;
    w->off += n;
    w->dentry = parent;
    return 0;
}

// Appends a kernel path's names, leaf first, to the data at `off` (the walk of d_path, stopping
// at the caller's root): returns the new offset, and sets the section's status.
//
// A global function, verified once on its own rather than at each of its calls (which cost the
// verifier seconds): the kernel pointers come as plain numbers, read only through probe reads.
__noinline int walk(struct scratch *s, __u64 dentry_address, __u64 vfsmnt_address, int which) {
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    struct dentry *dentry = (struct dentry *)dentry_address;
    struct vfsmount *vfsmnt = (struct vfsmount *)vfsmnt_address;
    __u32 section = which;
    asm volatile("" : "+r"(section));
    section &= 7;
    if (section >= OFS_SECTIONS || !dentry || !s) return 0;
    __u32 off = s->used;

    const struct dentry_operations *ops = BPF_CORE_READ(dentry, d_op);
    if (ops && BPF_CORE_READ(ops, d_dname)) {
        // A pipe, a socket, an anonymous inode: readlink prints what d_dname makes of these.
        if (off > DATA_BYTES - 16 - NAME_BYTES) return 0;
        __u64 words[2] = { BPF_CORE_READ(dentry, d_sb, s_magic), BPF_CORE_READ(dentry, d_inode, i_ino) };
        bpf_probe_read_kernel(&s->data[bounded(off)], 16, words);
        long n = bpf_probe_read_kernel_str(&s->data[bounded(off + 16)], NAME_BYTES, BPF_CORE_READ(dentry, d_name.name));
        s->event.status[section] = OFS_SEC_PRESENT | OFS_SEC_PSEUDO;
        s->event.offset[section] = off;
        s->event.length[section] = 16 + (n > 0 ? n : 0);
        s->used = off + 16 + (n > 0 ? n : 0);
        return 0;
    }
    __u8 status = OFS_SEC_PRESENT | OFS_SEC_WALKED;
    if (!BPF_CORE_READ(dentry, d_hash.pprev) && BPF_CORE_READ(dentry, d_parent) != dentry) status |= OFS_SEC_DELETED;
    struct walk_state w = {
        .s = s, .dentry = dentry, .vfsmnt = vfsmnt, .mnt = container_of(vfsmnt, struct mount, mnt),
        .root_dentry = BPF_CORE_READ(task, fs, root.dentry), .root_mnt = BPF_CORE_READ(task, fs, root.mnt), .off = off,
        .end = off + WALK_BYTES,
    };
    bpf_loop(PATH_DEPTH, walk_step, &w, 0);
    if (!w.done) status |= OFS_SEC_TRUNCATED;
    s->event.status[section] = status;
    s->event.length[section] = w.off - off;
    s->event.offset[section] = off;
    s->used = w.off;
    return 0;
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

static __always_inline void walk_file(struct scratch *s, struct file *file, int section) {
    if (!file) return;
    walk(s, (__u64)BPF_CORE_READ(file, f_path.dentry), (__u64)BPF_CORE_READ(file, f_path.mnt), section);
}

// N of `/proc/self/fd/N` or `/proc/thread-self/fd/N` at the start of `text` (length `n`), or -1;
// `leader` says whose table it names: /proc/self is the thread group's leader (a thread made
// without CLONE_FILES has a table of its own), /proc/thread-self the caller.
struct prefix {
    char text[32];
};

// Global (verified once): `start` is the string's first 32 bytes, NUL-padded. The result is the
// descriptor, or -1; 1 << 32 is added when it names the leader's table.
__noinline __s64 own_descriptor(const struct prefix *start) {
    if (!start) return -1;
    const char *text = start->text;
    int at = 0;
    const char self[] = "/proc/self/fd/", thread[] = "/proc/thread-self/fd/";
    int is_self = 1, is_thread = 1;
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
        char c = text[(at + i) & 31];
        if (c == 0) break;
        if (c < '0' || c > '9') return -1;
        value = value * 10 + (c - '0');
        digits++;
    }
    if (digits == 0 || text[(at + digits) & 31] != 0) return -1;
    return value | (is_self ? 1LL << 32 : 0);
}

// Whether the string starts with `/proc/self/` or `/proc/thread-self/`.
static __always_inline int is_proc(const struct prefix *start) {
    const char self[] = "/proc/self/", thread[] = "/proc/thread-self/";
    int is_self = 1, is_thread = 1;
    for (int i = 0; i < 18; i++) {
        if (i < 11 && start->text[i] != self[i]) is_self = 0;
        if (start->text[i] != thread[i]) is_thread = 0;
    }
    return is_self || is_thread;
}

// Builds and queues the record of one call (`at_exit`: from the exit program, with the call's
// result). At entry, a call whose strings or words cannot be copied yet is left pending instead:
// 1 is returned, and the exit program builds it.
//
// Global, like `walk`: verified once for each program, not once for each state it is called in.
__noinline int emit(const struct ofs_rec_call *call, const struct pending *what, int at_exit, __s64 result) {
    struct task_struct *task = bpf_get_current_task_btf();
    if (!call || !what) return 0;
    __u32 slot = what->slot, nr = what->nr;
    __u64 time_ns = what->time_ns;
    // The arguments from the caller's registers, not the tracepoint's record: one program serves
    // every call, and a record holds only as many arguments as its syscall takes (the kernel refuses
    // to attach a program that reads past the shortest record). They are the same at exit.
    struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
    __u64 args[8] = { regs->di, regs->si, regs->dx, regs->r10, regs->r8, regs->r9, 0, 0 };
    if (!at_exit && !wanted(call, args)) return 0;

    __u32 cpu = bpf_get_smp_processor_id();
    struct scratch *s = bpf_map_lookup_elem(&scratches, &cpu);
    if (!s) return 0;
    struct ofs_rec_event *e = &s->event;
    __builtin_memset(e, 0, sizeof(*e));
    e->time_ns = time_ns;
    for (int i = 0; i < 6; i++) e->args[i] = args[i];
    e->nr = nr;
    if (at_exit) {
        e->flags = OFS_REC_AT_EXIT;
        e->result = result;
    }
    __u64 ids = bpf_get_current_pid_tgid();
    e->host_pid = ids >> 32;
    e->host_tid = (__u32)ids;
    if (call->words_arg < 6 && bpf_probe_read_user(e->words, sizeof(e->words), (const void *)args[call->words_arg & 7]) != 0) {
        if (!at_exit) return 1;
        e->flags |= OFS_REC_WORDS_UNREAD;
    }
    s->used = 0;
    // The strings first: one that cannot be copied at entry sends the call to the exit program.
    // Each is kept in a section of its own, so a later walk cannot crowd it out.
    __u32 string_at[2] = {0, 0};
    long string_length[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        __u8 index = call->string[k];
        if (index >= 6) continue;
        __u32 off = s->used;
        const char *text = &s->data[bounded(off)];
        long n = bpf_probe_read_user_str((void *)text, STRING_BYTES, (const void *)args[index & 7]);
        if (n <= 0) {
            if (!at_exit) return 1;
            e->status[OFS_SEC_STRING0 + 2 * k] = OFS_SEC_UNREADABLE;
            continue;
        }
        e->status[OFS_SEC_STRING0 + 2 * k] = OFS_SEC_PRESENT | (n == STRING_BYTES ? OFS_SEC_TRUNCATED : 0);
        e->length[OFS_SEC_STRING0 + 2 * k] = n - 1;
        e->offset[OFS_SEC_STRING0 + 2 * k] = off;
        string_at[k] = off;
        string_length[k] = n;
        s->used = off + n - 1;
    }

    e->pid = inner_pid(task->thread_pid);
    e->tgid = inner_pid(task->group_leader->thread_pid);
    struct pid *own = task->thread_pid;
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

    // The executable's path is sent once per process and executable (the reader keeps it by
    // `exe_key`); walking it for every record was a third of the program's time.
    struct file *exe = task->mm->exe_file;
    struct exe_key known = { .host_pid = e->host_pid, .file = (__u64)exe, .inode = (__u64)(exe ? exe->f_inode : 0) };
    e->exe_file = known.file;
    e->exe_inode = known.inode;
    int exe_sent = bpf_map_lookup_elem(&exes, &known) != 0;
    if (exe_sent) e->status[OFS_SEC_EXE] = OFS_SEC_SAME;
    else walk_file(s, exe, OFS_SEC_EXE);

    // openat2's open_how.resolve: RESOLVE_IN_ROOT (0x10).
    int in_root = call->words_arg < 6 && (e->words[2] & 0x10);
    for (int k = 0; k < 2; k++) {
        __u8 dirfd = call->dirfd[k];
        if (call->string[k] >= 6 || dirfd == OFS_REC_NONE || string_length[k] <= 0) continue;
        const char *text = &s->data[bounded(string_at[k])];
        struct prefix start = {};
        bpf_probe_read_kernel(&start, sizeof(start), text);
        // The NUL ending the string was overwritten by the next section: put it back in the copy.
        if (string_length[k] - 1 < 32) start.text[(string_length[k] - 1) & 31] = 0;
        __s64 own = own_descriptor(&start);
        int leader = own >= 0 && (own >> 32);
        __s64 own_fd = own >= 0 ? own & 0xffffffff : -1;
        if (own_fd >= 0) {
            walk_file(s, descriptor(leader ? task->group_leader : task, own_fd), OFS_SEC_BASE0 + 2 * k);
            e->status[OFS_SEC_BASE0 + 2 * k] |= OFS_SEC_OWN_FD;
        } else if (text[0] != '/' || is_proc(&start) || in_root) {
            // A relative path is joined to its directory; /proc/self/cwd/... names the working
            // directory too, which the reader can no longer ask for once the caller has exited;
            // under openat2's RESOLVE_IN_ROOT an absolute path starts at the dirfd.
            __s32 fd = dirfd < 6 && (text[0] != '/' || in_root) ? (__s32)args[dirfd & 7] : -100;
            if (fd == -100)
                walk(s, (__u64)BPF_CORE_READ(task, fs, pwd.dentry), (__u64)BPF_CORE_READ(task, fs, pwd.mnt), OFS_SEC_BASE0 + 2 * k);
            else
                walk_file(s, descriptor(task, fd), OFS_SEC_BASE0 + 2 * k);
        }
    }
    if (call->fd < 6) walk_file(s, descriptor(task, (__s32)args[call->fd & 7]), OFS_SEC_FD);
    // At its exit, an open that succeeded names the file it opened by the descriptor it returned:
    // the kernel's file, not the string, which another thread may have changed since.
    else if (at_exit && call->opens && result >= 0 && result < 0x7fffffff) walk_file(s, descriptor(task, result), OFS_SEC_FD);

    void *ring = bpf_map_lookup_elem(&rings, &slot);
    __u64 size = (sizeof(struct ofs_rec_event) + s->used) & 0xffff;
    // Opaque to the compiler, so that the bound below reaches the verifier as written.
    asm volatile("" : "+r"(size));
    if (size > sizeof(struct scratch) - 8) size = sizeof(struct scratch) - 8;
    // The reader polls; it is woken early only when a burst has filled part of the ring.
    __u64 flags = ring && bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA) > OFS_REC_WAKE_BYTES ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
    if (!ring || bpf_ringbuf_output(ring, &s->event, size, flags)) {
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
    __u32 nr = ctx->id;
    __u32 key = slot << 16 | nr;
    const struct ofs_rec_call *call = bpf_map_lookup_elem(&calls, &key);
    if (!call) return 0;
    struct pending later = { .time_ns = bpf_ktime_get_ns(), .slot = slot, .nr = nr };
    if (emit(call, &later, 0, 0) == 1) {
        __u32 tid = (__u32)bpf_get_current_pid_tgid();
        if (bpf_map_update_elem(&pendings, &tid, &later, BPF_ANY)) {
            __u64 *count = bpf_map_lookup_elem(&lost, &slot);
            if (count) __sync_fetch_and_add(count, 1);
        }
    }
    return 0;
}

// The exit of a recorded call: only a call left pending at its entry is recorded here, with the
// strings the kernel has since read (their pages are resident now) and the call's result.
SEC("tracepoint")
int record_exit(struct trace_event_raw_sys_exit *ctx) {
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    struct pending *later = bpf_map_lookup_elem(&pendings, &tid);
    if (!later) return 0;
    struct pending taken = *later;
    bpf_map_delete_elem(&pendings, &tid);
    if (taken.nr != (__u32)ctx->id) {
        // Its exit never came (not a path a thread takes): the call is lost, and counted.
        __u64 *count = bpf_map_lookup_elem(&lost, &taken.slot);
        if (count) __sync_fetch_and_add(count, 1);
        return 0;
    }
    __u32 key = taken.slot << 16 | taken.nr;
    const struct ofs_rec_call *call = bpf_map_lookup_elem(&calls, &key);
    if (!call) return 0;
    emit(call, &taken, 1, ctx->ret);
    return 0;
}

// A thread's end: a call it left pending (killed while it waited in the call, which then has no
// exit) is dropped, so that the map holds only calls still running. Not counted lost: a call
// that never returned did nothing (an open waiting on a FIFO has opened nothing), and every
// process a shutdown kills would otherwise make the shutdown's evidence look incomplete.
SEC("tracepoint")
int forget_pending(void *ctx) {
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    bpf_map_delete_elem(&pendings, &tid);
    return 0;
}

// Probes only, never attached: whether this kernel loads programs on the hooks where it has
// already resolved the object (ofs_bpf_probe_hooks). Not loaded with `record`.
SEC("lsm/file_open")
int BPF_PROG(probe_lsm, struct file *file) { return 0; }

SEC("fentry/security_file_open")
int BPF_PROG(probe_fentry, struct file *file) { return 0; }
