// Starting processes: PID 1 of a sandbox (host side) and commands inside (PID 1's side).
// Everything between clone/fork and execve uses raw, async-signal-safe calls only.

#include "offswitch.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef AT_EMPTY_PATH
#define AT_EMPTY_PATH 0x1000
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

// Our own copy: older glibc does not declare struct clone_args.
struct ofs_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal;
    uint64_t stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

struct ofs_report {
    int32_t stage;
    int32_t err;
};

__attribute__((noreturn)) static void child_fail(int report_fd, int stage, int err) {
    struct ofs_report report = {.stage = stage, .err = err};
    ssize_t ignored = write(report_fd, &report, sizeof(report));
    (void)ignored;
    _exit(127);
}

// The kernel's struct sigaction for rt_sigaction(2).
struct ofs_kernel_sigaction {
    void *handler;
    unsigned long flags;
    void *restorer;
    uint64_t mask;
};

void ofs_signals_reset_all(void) {
    // Raw rt_sigaction: glibc's sigaction refuses signals 32 and 33 (reserved for its threads),
    // yet an ignored 32 would still be inherited across execve.
    struct ofs_kernel_sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));  // SIG_DFL, no flags, empty mask
    for (int sig = 1; sig <= 64; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        (void)syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof(uint64_t));
    }
}

static int clear_signals(void) {
    ofs_signals_reset_all();
    sigset_t empty;
    sigemptyset(&empty);
    return sigprocmask(SIG_SETMASK, &empty, NULL);
}

// Move fd to a number >= 10 so that placing others at 0..3 cannot clobber it.
static int lift_fd(int fd) {
    if (fd >= 10) return fd;
    return fcntl(fd, F_DUPFD_CLOEXEC, 10);
}

// Wait for the child's report: EOF means it exec'd, a full report means it failed.
static int read_report(int fd, struct ofs_report *report) {
    ssize_t n;
    do {
        n = read(fd, report, sizeof(*report));
    } while (n < 0 && errno == EINTR);
    return n == (ssize_t)sizeof(*report);
}

static void reap(pid_t child) {
    while (waitpid(child, NULL, __WALL) < 0 && errno == EINTR) {}
}

// The parent's half of every spawn: wait for the child's report (EOF means it exec'd), reap it
// if it failed. Returns 0 or the child's errno with *stage set.
static int await_exec(pid_t child, int report_fd, int *stage) {
    struct ofs_report r;
    int failed = read_report(report_fd, &r);
    close(report_fd);
    if (!failed) return 0;
    reap(child);
    *stage = r.stage;
    return r.err != 0 ? r.err : EIO;
}

// ---------------------------------------------------------------------------------------------

__attribute__((noreturn)) static void init_child(int report_fd, const ofs_init_spawn *spec,
                                                 char *const argv[], char *const envp[]) {
    // Dispositions and mask first: a child of a Swift thread starts with SIGTERM blocked, and the
    // mask survives execve.
    if (clear_signals() != 0) child_fail(report_fd, OFS_STAGE_SIGNALS, errno);

    int control = lift_fd(spec->control_fd);
    int null_fd = lift_fd(spec->null_fd);
    if (control < 0 || null_fd < 0) child_fail(report_fd, OFS_STAGE_FDS, errno);
    for (int target = 0; target <= 2; target++)
        if (dup2(null_fd, target) < 0) child_fail(report_fd, OFS_STAGE_FDS, errno);
    if (dup2(control, 3) < 0) child_fail(report_fd, OFS_STAGE_FDS, errno);
    // Everything else closes at exec; exec_fd still works for execveat until then.
    if (syscall(SYS_close_range, 4U, ~0U, CLOSE_RANGE_CLOEXEC) != 0)
        child_fail(report_fd, OFS_STAGE_FDS, errno);

    syscall(SYS_execveat, spec->exec_fd, "", argv, envp, AT_EMPTY_PATH);
    child_fail(report_fd, OFS_STAGE_EXEC, errno);
}

int ofs_spawn_init(const ofs_init_spawn *spec, char *const argv[], char *const envp[], pid_t *pid,
                   int *pidfd, int *stage) {
    *pid = -1;
    *pidfd = -1;
    *stage = OFS_STAGE_NONE;

    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return errno;

    // Block everything so that no handler of the daemon runs in the child before it resets them.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);

    int child_pidfd = -1;
    struct ofs_clone_args args;
    memset(&args, 0, sizeof(args));
    args.flags = spec->clone_flags | CLONE_PIDFD;
    args.pidfd = (uint64_t)(uintptr_t)&child_pidfd;
    args.exit_signal = SIGCHLD;
    if (spec->cgroup_fd >= 0) {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)spec->cgroup_fd;
    }

    pid_t child = (pid_t)syscall(SYS_clone3, &args, sizeof(args));
    if (child < 0 && errno == ENOSYS && spec->cgroup_fd < 0) {
        // Kernels before 5.3, or a seccomp policy that answers clone3 with ENOSYS.
        child = (pid_t)syscall(SYS_clone, (unsigned long)(spec->clone_flags | SIGCHLD), 0, 0, 0, 0);
        if (child > 0) child_pidfd = (int)syscall(SYS_pidfd_open, child, 0);
    }
    if (child == 0) {
        close(report[0]);
        init_child(report[1], spec, argv, envp);
    }
    int err = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(report[1]);
    if (child < 0) {
        close(report[0]);
        return err;
    }

    int failure = await_exec(child, report[0], stage);
    if (failure != 0) {
        if (child_pidfd >= 0) close(child_pidfd);
        return failure;
    }
    *pid = child;
    *pidfd = child_pidfd;
    return 0;
}

// ---------------------------------------------------------------------------------------------

static int set_capability_sets(uint64_t mask) {
    struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof(data));
    data[0].effective = data[0].permitted = (uint32_t)(mask & 0xffffffffu);
    data[1].effective = data[1].permitted = (uint32_t)(mask >> 32);
    return (int)syscall(SYS_capset, &header, data);
}

int ofs_capability_last(void) {
    int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 40;  // CAP_CHECKPOINT_RESTORE, the last one in kernel 6.x
    char buf[16] = {0};
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) return 40;
    int value = 0;
    for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; i++) value = value * 10 + (buf[i] - '0');
    return value;
}

static int limit_bounding_set(uint64_t keep, int last) {
    for (int cap = 0; cap <= last && cap < 64; cap++) {
        if (keep & (1ULL << cap)) continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) return -1;
    }
    return 0;
}

int ofs_capabilities_limit(uint64_t bound, uint64_t hold) {
    if (limit_bounding_set(bound, ofs_capability_last()) != 0) return -1;
    if (set_capability_sets(hold) != 0) return -1;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) return -1;
    return 0;
}

#ifndef SECCOMP_FILTER_FLAG_TSYNC
#define SECCOMP_FILTER_FLAG_TSYNC (1U << 0)
#endif
#ifndef SECCOMP_FILTER_FLAG_TSYNC_ESRCH
#define SECCOMP_FILTER_FLAG_TSYNC_ESRCH (1U << 4)
#endif

struct privileged_install {
    const void *instructions;
    unsigned short count;
    unsigned int flags;
    pthread_mutex_t go;  // held by the caller until its own sets are lowered
    int abandon;         // set when they could not be: install nothing
    int result;
    int err;
};

static void *install_for_both_threads(void *argument) {
    struct privileged_install *install = argument;
    pthread_mutex_lock(&install->go);
    if (!install->abandon) {
        // TSYNC_ESRCH: the kernel takes TSYNC with a listener only in this form.
        install->result = ofs_seccomp_install(install->instructions, install->count,
                                              install->flags | SECCOMP_FILTER_FLAG_TSYNC | SECCOMP_FILTER_FLAG_TSYNC_ESRCH);
        install->err = errno;
    }
    pthread_mutex_unlock(&install->go);
    return NULL;
}

int ofs_seccomp_install_dropping(const void *instructions, unsigned short count, unsigned int flags, uint64_t keep, int *stage) {
    struct privileged_install install = {.instructions = instructions, .count = count, .flags = flags, .result = -1};
    pthread_mutex_init(&install.go, NULL);
    pthread_mutex_lock(&install.go);
    pthread_t thread;
    int err = pthread_create(&thread, NULL, install_for_both_threads, &install);
    if (err != 0) {
        pthread_mutex_unlock(&install.go);
        pthread_mutex_destroy(&install.go);
        *stage = OFS_INSTALL_THREAD;
        errno = err;
        return -1;
    }
    // The thread keeps the credentials it was born with; capset replaces only this thread's.
    int lowered = set_capability_sets(keep);
    int lower_err = errno;
    if (lowered != 0) install.abandon = 1;
    pthread_mutex_unlock(&install.go);
    pthread_join(thread, NULL);
    pthread_mutex_destroy(&install.go);
    if (lowered != 0) {
        *stage = OFS_INSTALL_CAPSET;
        errno = lower_err;
        return -1;
    }
    if (install.result < 0) {
        *stage = OFS_INSTALL_SECCOMP;
        errno = install.err;
        return -1;
    }
    return install.result;
}

int64_t ofs_capabilities_effective(void) {
    struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &header, data) != 0) return -1;
    return (int64_t)(((uint64_t)data[1].effective << 32) | data[0].effective);
}

// Gid before uid: once the uid is not 0 we may no longer change groups.
static int take_identity(const ofs_identity *identity, int *stage) {
    if (setgroups((size_t)identity->group_count, identity->groups) != 0) {
        *stage = OFS_STAGE_GROUPS;
        return -1;
    }
    if (setresgid(identity->gid, identity->gid, identity->gid) != 0) {
        *stage = OFS_STAGE_GID;
        return -1;
    }
    if (setresuid(identity->uid, identity->uid, identity->uid) != 0) {
        *stage = OFS_STAGE_UID;
        return -1;
    }
    // uid 0 keeps the capabilities it is given; any other uid lost them all in setresuid.
    if (identity->uid == 0 && set_capability_sets(identity->capabilities) != 0) {
        *stage = OFS_STAGE_CAPABILITIES;
        return -1;
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
        *stage = OFS_STAGE_CAPABILITIES;
        return -1;
    }
    return 0;
}

// execve, searching PATH the way a shell does when argv[0] has no slash. Returns the errno that
// best explains the failure (EACCES wins over ENOENT, as in bash).
static int exec_searching(const char *file, const char *path_env, char *const argv[], char *const envp[]) {
    if (strchr(file, '/') != NULL) {
        execve(file, argv, envp);
        return errno;
    }
    size_t file_len = strlen(file);
    int best = ENOENT;
    const char *p = path_env;
    char candidate[PATH_MAX];
    for (;;) {
        const char *end = strchr(p, ':');
        size_t dir_len = end ? (size_t)(end - p) : strlen(p);
        if (dir_len + 1 + file_len + 1 <= sizeof(candidate)) {
            size_t n = 0;
            if (dir_len == 0) {
                candidate[n++] = '.';
            } else {
                memcpy(candidate, p, dir_len);
                n = dir_len;
            }
            candidate[n++] = '/';
            memcpy(candidate + n, file, file_len + 1);
            // Skip directories without the file before execve: each execve is a recorded syscall,
            // and a failed try would show up in the event log as the harness starting nothing.
            struct stat info;
            if (stat(candidate, &info) != 0) {
                if (errno != ENOENT && errno != ENOTDIR && best == ENOENT) best = errno;
                goto next;
            }
            execve(candidate, argv, envp);
            if (errno == EACCES || errno == ENOEXEC || errno == ETXTBSY) best = errno;
            else if (errno != ENOENT && errno != ENOTDIR && best == ENOENT) best = errno;
        }
    next:
        if (end == NULL) break;
        p = end + 1;
    }
    return best;
}

__attribute__((noreturn)) static void command_child(int report_fd, const ofs_command *command,
                                                    char *const argv[], char *const envp[]) {
    if (clear_signals() != 0) child_fail(report_fd, OFS_STAGE_SIGNALS, errno);
    // Its own session and process group, so a timeout can kill the whole group.
    if (setsid() < 0) child_fail(report_fd, OFS_STAGE_SESSION, errno);

    int in = lift_fd(command->stdin_fd), out = lift_fd(command->stdout_fd), err = lift_fd(command->stderr_fd);
    if (in < 0 || out < 0 || err < 0) child_fail(report_fd, OFS_STAGE_FDS, errno);
    if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0) child_fail(report_fd, OFS_STAGE_FDS, errno);
    if (command->controlling_tty && ioctl(0, TIOCSCTTY, 0) != 0) child_fail(report_fd, OFS_STAGE_SESSION, errno);

    int stage = OFS_STAGE_NONE;
    if (take_identity(&command->identity, &stage) != 0) child_fail(report_fd, stage, errno);
    // After the identity change, so the directory is checked with the command's own rights.
    if (chdir(command->cwd) != 0) child_fail(report_fd, OFS_STAGE_CHDIR, errno);
    if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) != 0) child_fail(report_fd, OFS_STAGE_FDS, errno);

    int failure = exec_searching(argv[0], command->path_env, argv, envp);
    child_fail(report_fd, OFS_STAGE_EXEC, failure);
}

int ofs_command_spawn(const ofs_command *command, char *const argv[], char *const envp[], pid_t *pid,
                      int *stage) {
    *pid = -1;
    *stage = OFS_STAGE_NONE;
    if (argv[0] == NULL) {
        *stage = OFS_STAGE_EXEC;
        return EINVAL;
    }
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return errno;
    pid_t child = fork();
    if (child == 0) {
        close(report[0]);
        command_child(report[1], command, argv, envp);
    }
    int err = errno;
    close(report[1]);
    if (child < 0) {
        close(report[0]);
        return err;
    }
    int failure = await_exec(child, report[0], stage);
    if (failure == 0) *pid = child;
    return failure;
}
