// The records the kernel recorder (Sources/offswitch-recorder/recorder.bpf.c) writes into a
// sandbox's ring buffer, and the tables the daemon fills for it: one layout for both sides, so it
// is plain C with fixed-width types (the BPF side has them from vmlinux.h).
#ifndef OFS_RECORDER_EVENT_H
#define OFS_RECORDER_EVENT_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

// Sandboxes one process can follow at once (the ring buffers' array).
#define OFS_REC_SLOTS 64
// Bytes of each ring buffer (a power of two, a multiple of the page size).
#define OFS_REC_RING_BYTES (4u << 20)
// Past this much queued data the program wakes the reader; below it the reader polls.
#define OFS_REC_WAKE_BYTES (512u << 10)

// What a record's sections hold: each `length[i]` bytes at `offset[i]` of the data after the
// header (the program writes the strings first).
enum {
    OFS_SEC_EXE = 0,    // the caller's executable (a kernel path)
    OFS_SEC_STRING0,    // the first string argument, as the caller passed it
    OFS_SEC_BASE0,      // what STRING0 is relative to: its directory descriptor's or the working directory's path
    OFS_SEC_STRING1,    // the second string argument
    OFS_SEC_BASE1,      // the same for STRING1
    OFS_SEC_FD,         // the file behind the call's descriptor argument
    OFS_SECTIONS,
};

// A section's `status` bits.
#define OFS_SEC_PRESENT 0x01     // the section holds data
#define OFS_SEC_WALKED 0x02      // a kernel path: its names leaf first, each NUL-terminated
#define OFS_SEC_TRUNCATED 0x04   // a kernel path with more names, or a string longer, than fit
#define OFS_SEC_DELETED 0x08     // the leaf is unlinked (readlink's " (deleted)")
#define OFS_SEC_PSEUDO 0x10      // no path: __u64 filesystem magic, __u64 inode, the dentry's name
#define OFS_SEC_UNREADABLE 0x20  // the caller's string could not be read (bad address, page not resident)
#define OFS_SEC_OWN_FD 0x40      // BASE: the string is /proc/self/fd/N, and this is descriptor N's file
#define OFS_SEC_SAME 0x80        // EXE: not copied, the process's earlier record with this exe_file and exe_inode had it

// A record's `flags`.
#define OFS_REC_AT_EXIT 0x1       // made at the call's exit: its strings were not resident at entry
#define OFS_REC_WORDS_UNREAD 0x2  // the words behind `words_arg` could not be read, even at exit

struct ofs_rec_event {
    __u64 time_ns;       // CLOCK_MONOTONIC at the call's entry
    __u64 args[6];
    __u64 words[3];      // the three words behind `words_arg` (openat2's flags, mode and resolve)
    __u64 exe_file;      // the executable's struct file and inode, as kernel addresses: with host_pid,
    __u64 exe_inode;     // what names the executable of a record whose EXE is SAME
    __u32 nr;            // x86-64 syscall number
    __u32 host_pid;      // thread group id on the host
    __u32 host_tid;
    __s32 pid;           // in the caller's own PID namespace
    __s32 ppid;          // the parent's pid in its own namespace, 0 when that is the host's
    __s32 sid;           // the session's pid in the caller's namespace, 0 when it is outside
    __u32 uid;           // real uid, as the host numbers it
    __u32 slot;
    __u32 flags;         // OFS_REC_AT_EXIT, OFS_REC_WORDS_UNREAD
    __s64 result;        // the call's result, for a record made at its exit
    char comm[16];
    __u16 offset[OFS_SECTIONS];   // where each section starts in the data after the header
    __u16 length[OFS_SECTIONS];
    __u8 status[OFS_SECTIONS];
    __u8 reserved[2];
    __s32 tgid;          // the caller's thread group in its own PID namespace (what /proc/self names)
};

// One comparison of a record entry (`record:` in a profile): seccomp's operators and numbers.
struct ofs_rec_comparison {
    __u64 value;
    __u64 value_two;
    __u8 index;
    __u8 op;             // 1 NE, 2 LT, 3 LE, 4 EQ, 5 GE, 6 GT, 7 MASKED_EQ
    __u8 reserved[6];
};

#define OFS_REC_ALTERNATIVES 4
#define OFS_REC_COMPARISONS 3
#define OFS_REC_NONE 0xff        // no such argument
#define OFS_REC_CWD 0xfe         // dirfd: relative to the working directory (open, unlink, ...)

// Comparisons that must all hold for a call to be recorded.
struct ofs_rec_alternative {
    __u8 count;
    __u8 reserved[7];
    struct ofs_rec_comparison comparison[OFS_REC_COMPARISONS];
};

// How to record one syscall for one sandbox: key `slot << 16 | nr` in the `calls` map.
struct ofs_rec_call {
    __u8 string[2];      // arg index of each string argument, or NONE
    __u8 dirfd[2];       // arg index of the string's directory descriptor, CWD, or NONE (not a path)
    __u8 fd;             // arg index of a descriptor whose file is named, or NONE
    __u8 words_arg;      // arg index of a pointer to two words to copy, or NONE
    __u8 alternatives;   // 0: every call; else a call is recorded when one alternative matches
    __u8 opens;          // 1: the call returns a descriptor of the file it opened (at exit, that file is FD)
    struct ofs_rec_alternative alternative[OFS_REC_ALTERNATIVES];
};

#endif
