#ifndef OFFSWITCH_C_H
#define OFFSWITCH_C_H

// The C that Swift cannot or must not do. Every symbol starts with `ofs_`.
//
// Why each part is C:
// - ofs_spawn_init and ofs_command_spawn run code between clone/fork and execve. In that window
//   only raw, async-signal-safe calls are allowed (no allocation, no locks, no Swift runtime).
// - clone3, pivot_root, openat2, seccomp and capset have no glibc wrapper, and Swift cannot call
//   the variadic syscall(2).
// - sigaction's handler union, CMSG_* and W* are macros or unions Swift imports badly.

#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/types.h>

// Namespace flags: Swift's Glibc module hides CLONE_NEW* behind _GNU_SOURCE.
#define OFS_CLONE_NEWNS     0x00020000ULL
#define OFS_CLONE_NEWCGROUP 0x02000000ULL
#define OFS_CLONE_NEWUTS    0x04000000ULL
#define OFS_CLONE_NEWIPC    0x08000000ULL
#define OFS_CLONE_NEWUSER   0x10000000ULL
#define OFS_CLONE_NEWPID    0x20000000ULL
#define OFS_CLONE_NEWNET    0x40000000ULL

/// Where a child failed before execve; reported to the parent over a close-on-exec pipe.
typedef enum ofs_stage {
    OFS_STAGE_NONE = 0,
    OFS_STAGE_SIGNALS = 1,
    OFS_STAGE_FDS = 2,
    OFS_STAGE_SESSION = 3,
    OFS_STAGE_CAPABILITIES = 4,
    OFS_STAGE_GROUPS = 5,
    OFS_STAGE_GID = 6,
    OFS_STAGE_UID = 7,
    OFS_STAGE_CHDIR = 8,
    OFS_STAGE_EXEC = 9,
    OFS_STAGE_OPEN = 10,
    OFS_STAGE_MKDIR = 11,
    OFS_STAGE_NOT_REGULAR = 12,
    OFS_STAGE_SEND = 13,
} ofs_stage;

// ---------------------------------------------------------------------------------------------
// Host side: start PID 1 of a new sandbox.

typedef struct ofs_init_spawn {
    /// OFS_CLONE_NEW* flags.
    uint64_t clone_flags;
    /// A sealed memfd holding offswitch-init; executed with execveat(AT_EMPTY_PATH).
    int exec_fd;
    /// Becomes fd 3 in the child (the control socket).
    int control_fd;
    /// Becomes fds 0, 1 and 2 in the child (normally /dev/null).
    int null_fd;
    /// A cgroup v2 directory to start the child in (CLONE_INTO_CGROUP), or -1. Starting there
    /// avoids a migration, which costs an RCU grace period.
    int cgroup_fd;
} ofs_init_spawn;

/// clone3(CLONE_PIDFD | flags), reset every signal disposition and the mask, place the fds,
/// mark everything else close-on-exec, execveat. Returns 0, or an errno value with *stage set
/// (the child has then been reaped).
int ofs_spawn_init(const ofs_init_spawn *_Nonnull spec, char *_Nullable const argv[_Nonnull],
                   char *_Nullable const envp[_Nonnull], pid_t *_Nonnull pid, int *_Nonnull pidfd,
                   int *_Nonnull stage);

// ---------------------------------------------------------------------------------------------
// Inside: what PID 1 uses to start commands and open files on a caller's behalf.

typedef struct ofs_identity {
    uid_t uid;
    gid_t gid;
    /// Supplementary groups.
    const gid_t *_Nullable groups;
    int group_count;
    /// Capability mask (permitted, effective, inheritable) for uid 0. A non-zero uid gets none.
    uint64_t capabilities;
} ofs_identity;

typedef struct ofs_command {
    const char *_Nonnull path_env;  // PATH used to find argv[0] when it has no slash
    const char *_Nonnull cwd;
    int stdin_fd;
    int stdout_fd;
    int stderr_fd;
    /// setsid() always; with this set, stdin also becomes the controlling terminal.
    int controlling_tty;
    ofs_identity identity;
} ofs_command;

/// fork; in the child: new session, fds 0-2, default signals and an empty mask, identity,
/// chdir, execve (searching PATH). Waits until the child has exec'd or failed.
/// Returns 0 with *pid set, or an errno value with *stage set (the child is then reaped).
int ofs_command_spawn(const ofs_command *_Nonnull command, char *_Nullable const argv[_Nonnull],
                      char *_Nullable const envp[_Nonnull], pid_t *_Nonnull pid, int *_Nonnull stage);

/// How ofs_file_open opens the path.
typedef enum ofs_file_mode {
    OFS_FILE_READ = 0,
    OFS_FILE_WRITE = 1,  // create or truncate; parent directories are created
} ofs_file_mode;

/// fork; in the child: take on the identity, resolve `path` under "/" with
/// openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS), refuse anything but a regular file, and send
/// the descriptor over `reply_socket`. Failures are sent as {stage, errno}. Returns the helper's
/// pid (the caller reaps it) or -errno.
pid_t ofs_file_open(int reply_socket, const char *_Nonnull path, ofs_file_mode mode,
                    unsigned int create_mode, const ofs_identity *_Nonnull identity);

/// What a helper from ofs_file_open sends besides the fd.
typedef struct ofs_file_reply {
    int32_t stage;
    int32_t err;
} ofs_file_reply;

// ---------------------------------------------------------------------------------------------
// Syscalls without a usable wrapper.

int ofs_pivot_root(const char *_Nonnull new_root, const char *_Nonnull put_old);
int ofs_unshare(uint64_t flags);
int ofs_mount(const char *_Nullable source, const char *_Nonnull target, const char *_Nullable fstype,
              unsigned long flags, const char *_Nullable data);
/// Bring the loopback interface of the current network namespace up.
int ofs_loopback_up(void);
/// Install a BPF seccomp filter (no_new_privs must already be set, or see
/// ofs_seccomp_install_dropping). flags: SECCOMP_FILTER_FLAG_*.
/// Returns 0, a listener fd when NEW_LISTENER was asked for, or -1 with errno.
int ofs_seccomp_install(const void *_Nonnull instructions, unsigned short count, unsigned int flags);
/// Limit the capability bounding set to `bound` (what any command can ever get) and set our own
/// permitted and effective sets to `hold` (PID 1 may hold a few more, such as CAP_SETUID, to
/// change identity for commands); clears inheritable and ambient capabilities.
int ofs_capabilities_limit(uint64_t bound, uint64_t hold);

/// Where ofs_seccomp_install_dropping failed.
typedef enum ofs_install_stage {
    OFS_INSTALL_THREAD = 1,   // the installing thread could not be made
    OFS_INSTALL_CAPSET = 2,   // our own capability sets could not be lowered to `keep`
    OFS_INSTALL_SECCOMP = 3,  // seccomp(2) refused the filter
} ofs_install_stage;

/// Installs a BPF seccomp filter without no_new_privs, ending with our permitted and effective
/// capability sets at `keep` (inheritable cleared, the bounding set untouched).
///
/// Without no_new_privs the kernel takes a filter only from a caller that holds CAP_SYS_ADMIN in
/// its user namespace, and PID 1 must not hold it once the filter is in place. Nor can PID 1 give
/// it up after installing: capset is then itself a filtered call, and a recorded one waits for a
/// recorder that does not hold the listener yet. So a short-lived thread, born sharing our
/// credentials (CAP_SYS_ADMIN among them), waits while this thread lowers its own sets to `keep`
/// before any filter exists, then installs the filter for both threads
/// (SECCOMP_FILTER_FLAG_TSYNC: threads are one trust realm to the kernel) and ends, taking the
/// last credentials that held CAP_SYS_ADMIN with it. It is joined before this returns, so the
/// caller is single-threaded again and nothing else ran meanwhile.
///
/// C because it makes a raw thread and calls capset(2), which has no glibc wrapper, in an order
/// Swift's runtime does not promise. Returns 0, or the listener fd when `flags` asks for one; -1
/// with errno and `*stage` on failure (the filter is then not installed).
int ofs_seccomp_install_dropping(const void *_Nonnull instructions, unsigned short count, unsigned int flags,
                                 uint64_t keep, int *_Nonnull stage);

// ---------------------------------------------------------------------------------------------
// User namespaces: every sandbox has its own (docs/security.md, "Host ids").

/// A new user namespace whose ids 0..count-1 are host uid `uid`.. and gid `gid`..; returns an fd
/// of it (O_CLOEXEC) or -1 with errno, and in `net_fd` an fd of a new network namespace that it
/// owns. Safe in a multi-threaded process: the short-lived child born in the namespace makes the
/// network namespace and pauses until it is killed; the maps are written from here.
/// With `net_fd` NULL no network namespace is made (the sandbox joins another's).
int ofs_userns_create(uint32_t uid, uint32_t gid, uint32_t count, int *_Nullable net_fd);
/// An fd (O_CLOEXEC) of the network namespace of the process `pidfd` names (`pid` is its pid, for
/// kernels without PIDFD_GET_NET_NAMESPACE): never a recycled pid's. -1 with errno (ESRCH: gone).
int ofs_pidfd_network_namespace(int pidfd, pid_t pid);
/// In the mount namespace of the process `pidfd` names, makes the mount at each of `paths`
/// read-only (mount_setattr(MOUNT_ATTR_RDONLY), not recursive, the last component not followed),
/// from a short-lived child, since a threaded process cannot join a mount namespace. 0, or -1
/// with errno and `failed_index` the path that failed (-1: joining the namespace did).
int ofs_mounts_make_readonly(int pidfd, char *_Nullable const paths[_Nonnull], int count, int *_Nonnull failed_index);
/// Mounts a clone of (the top mount only) `source` at `target`, idmapped through the user namespace
/// `userns_fd` (open_tree + mount_setattr(MOUNT_ATTR_IDMAP) + move_mount). Returns 0 or -1/errno.
int ofs_idmapped_bind(const char *_Nonnull source, const char *_Nonnull target, int userns_fd);
int ofs_setns(int fd, int nstype);

// ---------------------------------------------------------------------------------------------
// Seccomp user notification (the recorder). The kernel's structs behind ioctls Swift cannot issue.


/// struct seccomp_notif, field for field.
typedef struct ofs_notification {
    uint64_t id;
    uint32_t pid;
    uint32_t flags;
    int32_t nr;
    uint32_t arch;
    uint64_t instruction_pointer;
    uint64_t args[6];
} ofs_notification;

/// Blocks until a notification arrives. 0, or -1 with errno (ENOENT: the caller died first).
int ofs_notify_receive(int listener, ofs_notification *_Nonnull notification);
/// Answers a notification: `error` 0 and `proceed` 1 lets the call run (CONTINUE); otherwise the
/// call fails with -error. 0, or -1 with errno (ENOENT: the caller is gone).
int ofs_notify_respond(int listener, uint64_t id, int32_t error, int proceed);
/// 0 while the notification is still pending (its target still blocked in that call).
int ofs_notify_id_valid(int listener, uint64_t id);
/// process_vm_readv of one range of `pid`'s memory (behind _GNU_SOURCE): one syscall, where
/// /proc/PID/mem needs an open, a read and a close. Bytes read, or -1 with errno.
ssize_t ofs_process_read(pid_t pid, void *_Nonnull local, size_t length, uint64_t remote);
/// process_vm_readv of `count` ranges of `pid`'s memory (`remote[i]`, `lengths[i]` bytes each, at
/// most 1024) into `local`, one after another, in one syscall. The kernel stops at the first range
/// it cannot read: the bytes read tell which ranges arrived whole. Bytes read, or -1 with errno.
ssize_t ofs_process_read_many(pid_t pid, void *_Nonnull local, const uint64_t *_Nonnull remote,
                              const size_t *_Nonnull lengths, int count);
/// Wake the recorder on the caller's CPU (SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP, Linux 6.6).
/// Only a thread blocked in `ofs_notify_receive` gets that wake-up: a poll() waiter is woken the
/// ordinary way, on another CPU, which cost about 20 us a call here instead of 5.
int ofs_notify_set_sync_wakeup(int listener);

/// Lets the calling thread be interrupted out of a blocking call (`ofs_notify_receive`) by
/// `ofs_thread_interrupt` (C for sigaction's handler union and the SIGRTMIN macro): installs a no-op handler without SA_RESTART for the wake signal
/// (SIGRTMIN+5) and unblocks it in this thread only. 0, or -1 with errno.
int ofs_thread_interruptible(void);
/// Sends the wake signal to `thread`: its blocking call returns EINTR. 0, or an error number.
int ofs_thread_interrupt(pthread_t thread);
/// pthread_join with a limit (pthread_timedjoin_np, behind _GNU_SOURCE): 0 once `thread` has
/// ended, ETIMEDOUT after `milliseconds`.
int ofs_thread_join_within(pthread_t thread, int milliseconds);

// ---------------------------------------------------------------------------------------------
// fanotify (the file watcher). The info records behind each event are variable-length C structs.

#define OFS_FAN_ACCESS 0x1ULL
#define OFS_FAN_MODIFY 0x2ULL
#define OFS_FAN_ATTRIB 0x4ULL
#define OFS_FAN_CLOSE_WRITE 0x8ULL
#define OFS_FAN_CREATE 0x100ULL
#define OFS_FAN_DELETE 0x200ULL
#define OFS_FAN_OPEN_EXEC 0x1000ULL
#define OFS_FAN_Q_OVERFLOW 0x4000ULL
#define OFS_FAN_RENAME 0x10000000ULL
#define OFS_FAN_ONDIR 0x40000000ULL

/// Bytes read from the group at a time; `ofs_fanotify_next` needs room for 1/24 of that many events.
#define OFS_FANOTIFY_READ_BYTES 2048

/// One decoded event: paths as the sandbox sees them (directory handle resolved + name).
typedef struct ofs_file_event {
    uint64_t mask;
    int32_t pid;  // the writer's pid in our namespace (0 when unknown)
    char path[4096];
    char old_path[4096];  // renames: where it came from
    // The object's identity (FAN_EVENT_INFO_TYPE_FID): its filesystem id then its file handle
    // (type and bytes), the same bytes name_to_handle_at(AT_HANDLE_FID) gives for it. A file keeps
    // it under every name (hard links, renames), so the verdict follows files, not names.
    uint8_t object[8 + 8 + 128];
    int32_t object_length;  // 0 when the event carried no object handle
} ofs_file_event;

/// The identity of the file `fd` refers to, in the form file events carry (`ofs_file_event.object`):
/// fsid, handle type, handle bytes. Its length, or -1 with errno.
int ofs_file_object(int fd, uint8_t *_Nonnull out, int capacity);

/// A fanotify group reporting directory handles, names and rename targets, with an unlimited
/// queue (nothing is dropped); close-on-exec, non-blocking. -1 with errno on failure.
int ofs_fanotify_open(void);
/// FAN_MARK_FILESYSTEM on the filesystem of `path` for create, delete, rename, modify,
/// close-write and attrib, directories included, and for every open the kernel makes to execute
/// a file (FAN_OPEN_EXEC: the program of an execve, a script's interpreter, the dynamic loader).
int ofs_fanotify_mark_filesystem(int fan, const char *_Nonnull path);
/// Reads what is queued (one read) and decodes up to `capacity` events, resolving each handle
/// through the one of `mount_fds` (a directory of each watched filesystem) on its filesystem.
/// A handle that no longer resolves (the file or its filesystem is gone) leaves the path empty.
/// Returns the count, 0 when nothing was queued, -1 with errno.
int ofs_fanotify_next(int fan, const int *_Nonnull mount_fds, int mount_count, ofs_file_event *_Nonnull events, int capacity);

/// Bytes of events queued in the group now (FIONREAD), or -1 with errno.
int64_t ofs_fanotify_backlog(int fan);

/// What `ofs_fanotify_discard` threw away: events, and events carrying each operation.
typedef struct ofs_discarded {
    uint64_t events, create, delete_, rename, modify, close_write, attrib, exec;
} ofs_discarded;

/// Reads and drops queued events without resolving them (no handle lookup, no process facts),
/// about `budget` bytes' worth or until the queue is empty, adding them to `counts`. For a backlog
/// the watcher cannot keep up with: counting is all it does. 0, or -1 with errno.
int ofs_fanotify_discard(int fan, int64_t budget, ofs_discarded *_Nonnull counts);

/// openat2(dirfd, path, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS): for the host reading a
/// sandbox's files through a descriptor of /proc/PID/root, where a plain path walk would follow
/// the agent's absolute symlinks into the host. -1 with errno.
int ofs_open_in_root(int dirfd, const char *_Nonnull path, int flags, unsigned mode);
/// openat2(dirfd, path, flags, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS): for
/// writing an image layer, where no symlink is followed at all, not even one pointing inside, and
/// nothing resolves above `dirfd`. -1 with errno (ELOOP: a symlink on the way).
int ofs_open_beneath(int dirfd, const char *_Nonnull path, int flags, unsigned mode);
/// One step of the recorder's walk of a path a call named, in a sandbox's filesystem:
/// openat2(root, path, O_PATH | O_NOFOLLOW, RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS), so that no
/// link on the way is followed (the walk follows them itself, one step at a time) and the last is
/// opened as itself, then its type, and for a symlink its target (readlink, NUL-terminated, at
/// most `capacity - 1` bytes). One call for the four: the walk runs on the recorder's thread.
/// 0 directory, 1 another kind of file, 2 symlink, or -errno (ELOOP: a link on the way).
int ofs_walk_step(int root, const char *_Nonnull path, char *_Nonnull target, size_t capacity);
/// Whether `path` resolves under `root` with no symlink on the way: openat2(root, path, O_PATH
/// [| O_NOFOLLOW] [| O_DIRECTORY], RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS), closed at once. The
/// walk's first question, asked of almost every path: two calls. `follow`: a symlink in the last
/// component counts (ELOOP); `directory`: it must be one. 0 or -errno.
int ofs_walk_plain(int root, const char *_Nonnull path, int follow, int directory);
/// O_PATH, which Swift's Glibc module hides behind _GNU_SOURCE.
#define OFS_O_PATH 010000000
/// accept4(SOCK_CLOEXEC) and the peer's pid (SO_PEERCRED, in our pid namespace): -1 with errno.
int ofs_accept(int listener);
int ofs_peer_pid(int socket);
/// pidfd_open(pid, 0), which glibc 2.36 declares only behind _GNU_SOURCE: -1 with errno.
int ofs_pidfd_open(pid_t pid);
/// SO_PASSCRED on a listening Unix socket, so that what its connections receive carries the
/// sending process (the accepted sockets inherit it; a message sent before the accept carries it
/// too). -1 with errno.
int ofs_pass_credentials(int socket);
/// recvmsg of up to `size` bytes with the kernel's SCM_CREDENTIALS: `sender` is the pid (in our
/// pid namespace) of the process that wrote them, at the time it wrote them; 0 when it has
/// exited, -1 when no credentials came. The kernel never joins bytes of two senders in one
/// receive. The byte count, or -1 with errno. C because the CMSG macros do not import into Swift.
long ofs_recv_with_sender(int socket, void *_Nonnull buffer, unsigned long size, int *_Nonnull sender);

// ---------------------------------------------------------------------------------------------
// The process connector (netlink, CN_IDX_PROC): fork, exec and exit of every host process. The
// recorder's process table uses it for exits, which seccomp cannot see. Its structs live in
// <linux/cn_proc.h>, which Swift's Glibc module does not import.

#define OFS_PROC_FORK 1
#define OFS_PROC_EXEC 2
#define OFS_PROC_EXIT 3

typedef struct ofs_proc_event {
    int32_t what;         // OFS_PROC_FORK, OFS_PROC_EXEC or OFS_PROC_EXIT
    int32_t pid;          // thread id (host)
    int32_t tgid;         // process id (host)
    int32_t parent_tgid;  // forks: the parent process
    uint32_t exit_code;   // exits: a wait(2) status
} ofs_proc_event;

/// A non-blocking, close-on-exec netlink socket subscribed to process events (needs
/// CAP_NET_ADMIN), with a large receive buffer. -1 with errno on failure.
int ofs_proc_connector_open(void);
/// Reads one datagram: 1 and `*event` filled, 0 for a message of another kind, -1 with errno
/// (EAGAIN: nothing queued; ENOBUFS: the kernel dropped events).
int ofs_proc_connector_next(int socket, ofs_proc_event *_Nonnull event);

/// lgetxattr(2): Glibc's module map leaves out <sys/xattr.h> (the diff reads overlay's opaque flag).
ssize_t ofs_lgetxattr(const char *_Nonnull path, const char *_Nonnull name, void *_Nonnull value, size_t size);
/// fsetxattr(2), for the same reason: a layer's file capabilities and overlay's opaque flag. -1 with errno.
int ofs_fsetxattr(int fd, const char *_Nonnull name, const void *_Nonnull value, size_t size);
/// fgetxattr(2), for the same reason: reading an image layer's overlay markers through a descriptor.
ssize_t ofs_fgetxattr(int fd, const char *_Nonnull name, void *_Nonnull value, size_t size);
/// Current effective capability mask, or -1 on failure.
int64_t ofs_capabilities_effective(void);
/// Highest capability number the kernel knows.
int ofs_capability_last(void);

// ---------------------------------------------------------------------------------------------
// Descriptor passing over a SOCK_SEQPACKET socket.

/// sendmsg with up to 16 fds attached. Returns bytes sent or -1 with errno.
ssize_t ofs_send_with_fds(int socket, const void *_Nonnull data, size_t length,
                          const int *_Nullable fds, int fd_count);
/// recvmsg; received fds are close-on-exec. *fd_count is set to how many arrived (at most
/// max_fds; extras are closed). Returns bytes received, 0 at EOF, -1 with errno.
ssize_t ofs_recv_with_fds(int socket, void *_Nonnull data, size_t capacity, int *_Nonnull fds,
                          int max_fds, int *_Nonnull fd_count);

// ---------------------------------------------------------------------------------------------
// Signals for PID 1.

/// Install a no-op handler for `signal`: PID 1 of a PID namespace only receives signals from
/// inside it for which a handler is installed, and a blocked signal read via signalfd still
/// counts as handled.
int ofs_signal_install_noop_handler(int signal);
/// Reset every disposition to default (used by the host before it spawns, and by tests).
void ofs_signals_reset_all(void);

/// Block `signals` and return a close-on-exec, non-blocking signalfd for them, or -1.
int ofs_signalfd_open(const int *_Nonnull signals, int count);
/// Read one signal: 1 with the fields set, 0 when none is pending, -1 on error.
int ofs_signalfd_next(int fd, int *_Nonnull signo, int *_Nonnull sender_pid, unsigned int *_Nonnull sender_uid, int *_Nonnull code);
/// setresuid/setresgid sit behind _GNU_SOURCE, which Swift's Glibc module does not define.
int ofs_setresuid(uid_t real, uid_t effective, uid_t saved);
int ofs_setresgid(gid_t real, gid_t effective, gid_t saved);
/// PR_SET_NAME: the name `ps` shows (a memfd-executed PID 1 would otherwise be "memfd:...").
int ofs_set_process_name(const char *_Nonnull name);
/// prctl is variadic: the two-argument form.
int ofs_prctl(int option, unsigned long argument);
/// PR_SET_NO_NEW_PRIVS and PR_SET_DUMPABLE values, which Swift cannot import.
#define OFS_PR_SET_DUMPABLE 4
#define OFS_PR_SET_NO_NEW_PRIVS 38
/// SECCOMP_FILTER_FLAG_NEW_LISTENER.
#define OFS_SECCOMP_FILTER_FLAG_NEW_LISTENER (1U << 3)

/// The signal-safe half of the CLI's interrupt guard (Interrupts.swift has the rest; C because
/// the handler must do only async-signal-safe work). Armed, SIGINT, SIGTERM or SIGHUP make the
/// handler remember the signal, SIGKILL every watched pid (a sandbox's PID 1, which takes the
/// sandbox down, so a blocked exec returns) and write one byte to `wake_fd` (when >= 0); the three
/// signals are unblocked in the calling thread. Arming forgets an earlier signal.
void ofs_interrupt_arm(int wake_fd);
/// Puts the default actions back.
void ofs_interrupt_disarm(void);
/// The signal the guard caught since it was armed, or 0.
int ofs_interrupt_received(void);
/// Also SIGKILL `target` on an interrupt (up to 64 at once). Returns the slot to pass to
/// `ofs_interrupt_unwatch`, or -1 with errno ENOSPC. A signal that already came kills `target` at once.
int ofs_interrupt_watch(pid_t target);
void ofs_interrupt_unwatch(int slot);

// W* macros.
static inline int ofs_wifexited(int status) { return (status & 0x7f) == 0; }
static inline int ofs_wexitstatus(int status) { return (status >> 8) & 0xff; }
static inline int ofs_wifsignaled(int status) { return (status & 0x7f) != 0 && (status & 0x7f) != 0x7f; }
static inline int ofs_wtermsig(int status) { return status & 0x7f; }

/// Terminal window size (TIOCGWINSZ / TIOCSWINSZ; ioctl is variadic).
int ofs_winsize_get(int fd, unsigned short *_Nonnull rows, unsigned short *_Nonnull cols);
int ofs_winsize_set(int fd, unsigned short rows, unsigned short cols);
/// Open a new pty pair from /dev/ptmx; the slave is opened too. Both close-on-exec.
int ofs_openpty(int *_Nonnull master, int *_Nonnull slave);

/// fcntl is variadic.
int ofs_set_cloexec(int fd, int on);
int ofs_set_nonblocking(int fd, int on);
/// pipe2(O_CLOEXEC) (pipe2 sits behind _GNU_SOURCE).
int ofs_pipe(int fds[_Nonnull 2]);
/// statfs(2)'s f_type for `path`, or -1 (struct statfs is not importable).
int64_t ofs_statfs_type(const char *_Nonnull path);
/// A close-on-exec memfd (memfd_create sits behind _GNU_SOURCE).
int ofs_memfd(const char *_Nonnull name);
/// memfd with every seal applied after `length` bytes were copied from `source_fd`.
int ofs_sealed_copy(int source_fd, const char *_Nonnull name);

#endif
