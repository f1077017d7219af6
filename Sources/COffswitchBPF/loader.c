#include "offswitch_bpf.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct ofs_bpf_recorder {
    struct bpf_object *object;
    struct bpf_link **links;
    int link_count;
    int sandboxes, calls, lost, rings;
};

struct ofs_bpf_ring {
    int map;
    struct ring_buffer *reader;
    ofs_bpf_record_fn callback;
    void *context;
    int budget;  // records the running consume may still take
};

// libbpf's consume reads until the ring is empty, which a sandbox writing records faster than
// the reader takes them never lets happen (a loaded machine's stop waited on it for ever). Each
// record goes through here, and a negative return, which libbpf takes as the end of the consume
// with this record read, ends it at its budget.
static int ofs_bpf_take(void *context, void *data, size_t size) {
    struct ofs_bpf_ring *ring = context;
    int result = ring->callback(ring->context, data, size);
    if (result < 0) return result;
    return --ring->budget <= 0 ? -E2BIG : 0;
}

// libbpf prints to stderr by default; its messages are the daemon's to report, not to scatter.
static int quiet(enum libbpf_print_level level, const char *format, va_list args) {
    (void)level; (void)format; (void)args;
    return 0;
}

struct ofs_bpf_recorder *ofs_bpf_open(const char *path, const char *const *calls, int count, uint8_t *attached,
                                      char *error, size_t error_size) {
    if (!getenv("OFS_BPF_DEBUG")) libbpf_set_print(quiet);
    struct ofs_bpf_recorder *r = calloc(1, sizeof(*r));
    if (!r) { snprintf(error, error_size, "allocation failed"); return NULL; }
    r->object = bpf_object__open_file(path, NULL);
    if (!r->object) {
        snprintf(error, error_size, "open %s: errno %d (%s)", path, errno, strerror(errno));
        free(r);
        return NULL;
    }
    // The hook probes are ofs_bpf_probe_hooks's; a refused one must not fail this load.
    struct bpf_program *probe;
    bpf_object__for_each_program(probe, r->object)
        if (strncmp(bpf_program__name(probe), "probe_", 6) == 0) bpf_program__set_autoload(probe, false);
    struct bpf_map *scratches = bpf_object__find_map_by_name(r->object, "scratches");
    int cpus = libbpf_num_possible_cpus();
    if (!scratches || cpus <= 0 || bpf_map__set_max_entries(scratches, cpus)) {
        snprintf(error, error_size, "%s: the scratches map, for %d CPUs", path, cpus);
        goto fail;
    }
    int err = bpf_object__load(r->object);
    if (err) {
        snprintf(error, error_size, "load %s: errno %d (%s)", path, -err, strerror(-err));
        goto fail;
    }
    struct bpf_program *program = bpf_object__find_program_by_name(r->object, "record");
    struct bpf_program *exit_program = bpf_object__find_program_by_name(r->object, "record_exit");
    struct bpf_program *forget = bpf_object__find_program_by_name(r->object, "forget_pending");
    r->sandboxes = bpf_object__find_map_fd_by_name(r->object, "sandboxes");
    r->calls = bpf_object__find_map_fd_by_name(r->object, "calls");
    r->lost = bpf_object__find_map_fd_by_name(r->object, "lost");
    r->rings = bpf_object__find_map_fd_by_name(r->object, "rings");
    if (!program || !exit_program || !forget || r->sandboxes < 0 || r->calls < 0 || r->lost < 0 || r->rings < 0) {
        snprintf(error, error_size, "%s: no program 'record' or a map missing", path);
        goto fail;
    }
    r->links = calloc(2 * count + 1, sizeof(*r->links));
    if (!r->links) { snprintf(error, error_size, "allocation failed"); goto fail; }
    struct bpf_link *exits = bpf_program__attach_tracepoint(forget, "sched", "sched_process_exit");
    if (!exits) {
        int cause = errno;
        snprintf(error, error_size, "attach to tracepoint sched/sched_process_exit: errno %d (%s)", cause, strerror(cause));
        goto fail;
    }
    r->links[r->link_count++] = exits;
    for (int i = 0; i < count; i++) {
        char name[96];
        snprintf(name, sizeof(name), "sys_enter_%s", calls[i]);
        struct bpf_link *link = bpf_program__attach_tracepoint(program, "syscalls", name);
        if (!link) {
            int cause = errno;
            attached[i] = 0;
            // A syscall this kernel has no tracepoint for stays with the seccomp recorder.
            if (cause == ENOENT) continue;
            snprintf(error, error_size, "attach to tracepoint syscalls/%s: errno %d (%s)", name, cause, strerror(cause));
            goto fail;
        }
        r->links[r->link_count++] = link;
        // The exit, for the calls whose strings are read only once the kernel has faulted them in.
        snprintf(name, sizeof(name), "sys_exit_%s", calls[i]);
        link = bpf_program__attach_tracepoint(exit_program, "syscalls", name);
        if (!link) {
            int cause = errno;
            snprintf(error, error_size, "attach to tracepoint syscalls/%s: errno %d (%s)", name, cause, strerror(cause));
            goto fail;
        }
        r->links[r->link_count++] = link;
        attached[i] = 1;
    }
    return r;
fail:
    ofs_bpf_close(r);
    return NULL;
}

void ofs_bpf_close(struct ofs_bpf_recorder *r) {
    if (!r) return;
    for (int i = 0; i < r->link_count; i++) bpf_link__destroy(r->links[i]);
    free(r->links);
    bpf_object__close(r->object);
    free(r);
}

struct ofs_bpf_ring *ofs_bpf_follow(struct ofs_bpf_recorder *r, uint32_t slot, uint32_t namespace_inode,
                                    ofs_bpf_record_fn callback, void *context) {
    struct ofs_bpf_ring *ring = calloc(1, sizeof(*ring));
    if (!ring) return NULL;
    ring->map = bpf_map_create(BPF_MAP_TYPE_RINGBUF, "ofs_ring", 0, 0, OFS_REC_RING_BYTES, NULL);
    if (ring->map < 0) goto fail;
    ring->callback = callback;
    ring->context = context;
    ring->reader = ring_buffer__new(ring->map, ofs_bpf_take, ring, NULL);
    if (!ring->reader) goto fail;
    uint64_t zero = 0;
    if (bpf_map_update_elem(r->lost, &slot, &zero, BPF_ANY)) goto fail;
    if (bpf_map_update_elem(r->rings, &slot, &ring->map, BPF_ANY)) goto fail;
    if (bpf_map_update_elem(r->sandboxes, &namespace_inode, &slot, BPF_ANY)) {
        int cause = errno;
        bpf_map_delete_elem(r->rings, &slot);
        errno = cause;
        goto fail;
    }
    return ring;
fail: {
        int cause = errno;
        if (ring->reader) ring_buffer__free(ring->reader);
        if (ring->map >= 0) close(ring->map);
        free(ring);
        errno = cause;
        return NULL;
    }
}

void ofs_bpf_unfollow(struct ofs_bpf_recorder *r, struct ofs_bpf_ring *ring, uint32_t slot, uint32_t namespace_inode) {
    bpf_map_delete_elem(r->sandboxes, &namespace_inode);
    bpf_map_delete_elem(r->rings, &slot);
    if (!ring) return;
    ring_buffer__free(ring->reader);
    close(ring->map);
    free(ring);
}

int ofs_bpf_set_call(struct ofs_bpf_recorder *r, uint32_t slot, uint32_t nr, const struct ofs_rec_call *call) {
    uint32_t key = slot << 16 | (nr & 0xffff);
    return bpf_map_update_elem(r->calls, &key, call, BPF_ANY) ? -1 : 0;
}

void ofs_bpf_clear_call(struct ofs_bpf_recorder *r, uint32_t slot, uint32_t nr) {
    uint32_t key = slot << 16 | (nr & 0xffff);
    bpf_map_delete_elem(r->calls, &key);
}

uint64_t ofs_bpf_lost(struct ofs_bpf_recorder *r, uint32_t slot) {
    uint64_t value = 0;
    bpf_map_lookup_elem(r->lost, &slot, &value);
    return value;
}

int ofs_bpf_ring_consume(struct ofs_bpf_ring *ring, int limit) {
    if (limit <= 0) return 0;
    ring->budget = limit;
    int n = ring_buffer__consume(ring->reader);
    if (n == -E2BIG) return limit;
    if (n < 0) { errno = -n; return -1; }
    return n;
}

int ofs_bpf_ring_fd(struct ofs_bpf_ring *ring) {
    return ring_buffer__epoll_fd(ring->reader);
}

int ofs_bpf_probe_hooks(const char *path, char *error, size_t error_size) {
    const char *names[] = { "probe_lsm", "probe_fentry" };
    size_t used = 0;
    int refused = 0;
    error[0] = 0;
    for (int i = 0; i < 2; i++) {
        struct bpf_object *object = bpf_object__open_file(path, NULL);
        if (!object) {
            snprintf(error, error_size, "open %s: errno %d (%s)", path, errno, strerror(errno));
            return -1;
        }
        struct bpf_program *program;
        bpf_object__for_each_program(program, object)
            bpf_program__set_autoload(program, strcmp(bpf_program__name(program), names[i]) == 0);
        int err = bpf_object__load(object);
        if (err) {
            const char *section = bpf_program__section_name(bpf_object__find_program_by_name(object, names[i]));
            used += snprintf(error + used, used < error_size ? error_size - used : 0, "%s%s: errno %d (%s)",
                             refused ? "; " : "", section, -err, strerror(-err));
            refused = 1;
        }
        bpf_object__close(object);
    }
    return refused ? -1 : 0;
}
