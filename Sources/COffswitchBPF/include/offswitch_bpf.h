// The kernel recorder's loader: libbpf behind the project's prefix (ofs_bpf_), in a target of its
// own so that offswitch-init, which links COffswitch, never links libbpf. Swift cannot go here:
// libbpf's API is macros, callbacks and opaque structs, and ring buffers are read through a
// callback that must run while the record's bytes are mapped.
#ifndef OFFSWITCH_BPF_H
#define OFFSWITCH_BPF_H

#include <stddef.h>
#include <stdint.h>
#include "ofs_recorder_event.h"

struct ofs_bpf_recorder;
struct ofs_bpf_ring;

// Called for each record, with the record's bytes (valid during the call only).
typedef int (*ofs_bpf_record_fn)(void *context, void *data, size_t size);

// Opens and loads the BPF object at `path` and attaches its program to the syscall-entry
// tracepoint of each of `calls` (`openat` attaches to syscalls/sys_enter_openat). `attached[i]` is
// set to 1 for each call attached, 0 for each whose tracepoint does not exist. NULL on failure,
// with what failed (stage, name and errno) in `error`.
struct ofs_bpf_recorder *ofs_bpf_open(const char *path, const char *const *calls, int count, uint8_t *attached,
                                      char *error, size_t error_size);
void ofs_bpf_close(struct ofs_bpf_recorder *recorder);

// Whether the object's hook probes (an LSM program on file_open, an fentry program on
// security_file_open) load here: 0, or -1 with each refusal (section and errno) in `error`.
int ofs_bpf_probe_hooks(const char *path, char *error, size_t error_size);

// Follows the processes of the PID namespace `namespace_inode` (and the namespaces below it) into
// a new ring buffer at `slot`, read by `ofs_bpf_ring_consume` with `callback`. NULL with errno set.
struct ofs_bpf_ring *ofs_bpf_follow(struct ofs_bpf_recorder *recorder, uint32_t slot, uint32_t namespace_inode,
                                    ofs_bpf_record_fn callback, void *context);
// Stops following: no record is written to the ring after this returns; it is then freed.
void ofs_bpf_unfollow(struct ofs_bpf_recorder *recorder, struct ofs_bpf_ring *ring, uint32_t slot, uint32_t namespace_inode);

// How `slot`'s sandbox records syscall `nr`. 0, or -1 with errno set.
int ofs_bpf_set_call(struct ofs_bpf_recorder *recorder, uint32_t slot, uint32_t nr, const struct ofs_rec_call *call);
void ofs_bpf_clear_call(struct ofs_bpf_recorder *recorder, uint32_t slot, uint32_t nr);

// Records the program could not write into `slot`'s ring so far.
uint64_t ofs_bpf_lost(struct ofs_bpf_recorder *recorder, uint32_t slot);

// Reads the records queued in the ring, at most `limit`, calling its callback for each: the count
// (`limit` when more may be queued), or -1 with errno.
int ofs_bpf_ring_consume(struct ofs_bpf_ring *ring, int limit);
// A descriptor that is readable when the ring's reader was woken (for epoll).
int ofs_bpf_ring_fd(struct ofs_bpf_ring *ring);

#endif
