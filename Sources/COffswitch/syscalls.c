// Syscalls without a glibc wrapper Swift can call, descriptor passing, and the file helper.

#include "offswitch.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/filter.h>
#include <linux/netlink.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <pthread.h>
#include <pty.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/sendfile.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <sys/fanotify.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <termios.h>
#include <unistd.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

int ofs_pivot_root(const char *new_root, const char *put_old) {
    return (int)syscall(SYS_pivot_root, new_root, put_old);
}

int ofs_unshare(uint64_t flags) { return unshare((int)flags); }

int ofs_mount(const char *source, const char *target, const char *fstype, unsigned long flags,
              const char *data) {
    return mount(source, target, fstype, flags, data);
}

int ofs_loopback_up(void) {
    int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sock < 0) return -1;
    struct ifreq request;
    memset(&request, 0, sizeof(request));
    strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
    int rc = ioctl(sock, SIOCGIFFLAGS, &request);
    if (rc == 0) {
        request.ifr_flags |= IFF_UP | IFF_RUNNING;
        rc = ioctl(sock, SIOCSIFFLAGS, &request);
    }
    int saved = errno;
    close(sock);
    errno = saved;
    return rc;
}

int ofs_seccomp_install(const void *instructions, unsigned short count, unsigned int flags) {
    struct sock_fprog program = {.len = count, .filter = (struct sock_filter *)instructions};
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &program);
}

// ---------------------------------------------------------------------------------------------

#define OFS_MAX_FDS 16

ssize_t ofs_send_with_fds(int sock, const void *data, size_t length, const int *fds, int fd_count) {
    if (fd_count < 0 || fd_count > OFS_MAX_FDS) {
        errno = EINVAL;
        return -1;
    }
    struct iovec io = {.iov_base = (void *)data, .iov_len = length};
    union {
        char buf[CMSG_SPACE(sizeof(int) * OFS_MAX_FDS)];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof(control));
    struct msghdr msg = {.msg_iov = &io, .msg_iovlen = 1};
    if (fd_count > 0) {
        msg.msg_control = control.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)fd_count);
        struct cmsghdr *header = CMSG_FIRSTHDR(&msg);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)fd_count);
        memcpy(CMSG_DATA(header), fds, sizeof(int) * (size_t)fd_count);
    }
    ssize_t n;
    do {
        n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n;
}

ssize_t ofs_recv_with_fds(int sock, void *data, size_t capacity, int *fds, int max_fds, int *fd_count) {
    *fd_count = 0;
    struct iovec io = {.iov_base = data, .iov_len = capacity};
    union {
        char buf[CMSG_SPACE(sizeof(int) * OFS_MAX_FDS)];
        struct cmsghdr align;
    } control;
    struct msghdr msg = {.msg_iov = &io, .msg_iovlen = 1, .msg_control = control.buf,
                         .msg_controllen = sizeof(control.buf)};
    ssize_t n;
    do {
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return n;
    for (struct cmsghdr *h = CMSG_FIRSTHDR(&msg); h != NULL; h = CMSG_NXTHDR(&msg, h)) {
        if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS) continue;
        int count = (int)((h->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int *received = (int *)CMSG_DATA(h);
        for (int i = 0; i < count; i++) {
            if (*fd_count < max_fds) fds[(*fd_count)++] = received[i];
            else close(received[i]);
        }
    }
    if (msg.msg_flags & MSG_TRUNC) {
        for (int i = 0; i < *fd_count; i++) close(fds[i]);
        *fd_count = 0;
        errno = EMSGSIZE;
        return -1;
    }
    return n;
}

// ---------------------------------------------------------------------------------------------

static void noop_handler(int signal) { (void)signal; }

static volatile sig_atomic_t guard_signal = 0;
static volatile sig_atomic_t guard_wake_fd = -1;

// The PID 1s to kill on an interrupt: a CLI may hold several sandboxes (a batch of trials).
#define OFS_GUARD_SLOTS 64
static volatile sig_atomic_t guard_slots[OFS_GUARD_SLOTS];

static void guard_handler(int signal) {
    int saved = errno;
    guard_signal = signal;
    for (int i = 0; i < OFS_GUARD_SLOTS; i++) {
        pid_t pid = (pid_t)guard_slots[i];
        if (pid > 0) kill(pid, SIGKILL);
    }
    if (guard_wake_fd >= 0) {
        char byte = 1;
        (void)!write((int)guard_wake_fd, &byte, 1);
    }
    errno = saved;
}

int ofs_interrupt_watch(pid_t target) {
    for (int i = 0; i < OFS_GUARD_SLOTS; i++) {
        int expected = 0;
        if (__atomic_compare_exchange_n((int *)&guard_slots[i], &expected, (int)target, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
            // A signal that came before the target was watched still takes it down.
            if (guard_signal != 0) kill(target, SIGKILL);
            return i;
        }
    }
    errno = ENOSPC;
    return -1;
}

void ofs_interrupt_unwatch(int slot) {
    if (slot >= 0 && slot < OFS_GUARD_SLOTS) __atomic_store_n((int *)&guard_slots[slot], 0, __ATOMIC_SEQ_CST);
}

static void guard_install(void (*handler)(int)) {
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = handler;
    sigemptyset(&action.sa_mask);
    int signals[] = {SIGINT, SIGTERM, SIGHUP};
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < 3; i++) {
        sigaction(signals[i], &action, NULL);
        sigaddset(&set, signals[i]);
    }
    // A parent that is a Swift (or other threaded) program may have started us with these
    // blocked; blocked, they would stay pending forever.
    if (handler != SIG_DFL) sigprocmask(SIG_UNBLOCK, &set, NULL);
}

void ofs_interrupt_arm(int wake_fd) {
    guard_signal = 0;
    guard_wake_fd = wake_fd;
    guard_install(guard_handler);
}

void ofs_interrupt_disarm(void) {
    guard_install(SIG_DFL);
    guard_wake_fd = -1;
}

int ofs_interrupt_received(void) { return guard_signal; }

int ofs_signal_install_noop_handler(int signal) {
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = noop_handler;
    sigemptyset(&action.sa_mask);
    return sigaction(signal, &action, NULL);
}

int ofs_signalfd_open(const int *signals, int count) {
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < count; i++) sigaddset(&set, signals[i]);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) return -1;
    return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

int ofs_signalfd_next(int fd, int *signo, int *sender_pid, unsigned int *sender_uid, int *code) {
    struct signalfd_siginfo info;
    ssize_t n;
    do {
        n = read(fd, &info, sizeof(info));
    } while (n < 0 && errno == EINTR);
    if (n < 0) return errno == EAGAIN ? 0 : -1;
    if (n != (ssize_t)sizeof(info)) {
        errno = EIO;
        return -1;
    }
    *signo = (int)info.ssi_signo;
    *sender_pid = (int)info.ssi_pid;
    *sender_uid = info.ssi_uid;
    *code = info.ssi_code;
    return 1;
}

int ofs_setresuid(uid_t real, uid_t effective, uid_t saved) { return setresuid(real, effective, saved); }
int ofs_setresgid(gid_t real, gid_t effective, gid_t saved) { return setresgid(real, effective, saved); }

int ofs_prctl(int option, unsigned long argument) { return prctl(option, argument, 0, 0, 0); }

int ofs_set_process_name(const char *name) { return prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0); }

int ofs_winsize_get(int fd, unsigned short *rows, unsigned short *cols) {
    struct winsize size;
    if (ioctl(fd, TIOCGWINSZ, &size) != 0) return -1;
    *rows = size.ws_row;
    *cols = size.ws_col;
    return 0;
}

int ofs_winsize_set(int fd, unsigned short rows, unsigned short cols) {
    struct winsize size = {.ws_row = rows, .ws_col = cols};
    return ioctl(fd, TIOCSWINSZ, &size);
}

int ofs_openpty(int *master, int *slave) {
    *master = -1;
    *slave = -1;
    int m = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0) return -1;
    int unlock = 0;
    if (ioctl(m, TIOCSPTLCK, &unlock) != 0) goto fail;
    // TIOCGPTPEER opens the slave through the master, immune to /dev/pts games.
    int s = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (s < 0) goto fail;
    *master = m;
    *slave = s;
    return 0;
fail:;
    int saved = errno;
    close(m);
    errno = saved;
    return -1;
}

int ofs_set_cloexec(int fd, int on) {
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0) return -1;
    return fcntl(fd, F_SETFD, on ? (flags | FD_CLOEXEC) : (flags & ~FD_CLOEXEC));
}

int ofs_set_nonblocking(int fd, int on) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -1;
    return fcntl(fd, F_SETFL, on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK));
}

int ofs_pipe(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int64_t ofs_statfs_type(const char *path) {
    struct statfs info;
    if (statfs(path, &info) != 0) return -1;
    return (int64_t)info.f_type;
}

int ofs_memfd(const char *name) { return memfd_create(name, MFD_CLOEXEC); }

int ofs_sealed_copy(int source_fd, const char *name) {
    int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(source_fd, &st) != 0) goto fail;
    off_t offset = 0;
    while (offset < st.st_size) {
        ssize_t n = sendfile(fd, source_fd, &offset, (size_t)(st.st_size - offset));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (n == 0) errno = EIO;
            goto fail;
        }
    }
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) != 0) goto fail;
    return fd;
fail:;
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

// ---------------------------------------------------------------------------------------------
// The file helper: runs in a child of PID 1 with the caller's identity, inside the sandbox root.

// openat2 with `resolve`, retried on EINTR and EAGAIN (RESOLVE_IN_ROOT answers EAGAIN when a
// rename anywhere raced a walk with `..`: a sandbox renaming without pause could make that
// endless, so at most 64 tries). -1 with errno.
static int open_resolved(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve) {
    struct open_how how;
    memset(&how, 0, sizeof(how));
    how.flags = flags;
    how.mode = mode;
    how.resolve = resolve;
    int fd, tries = 0;
    do {
        fd = (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
    } while (fd < 0 && (errno == EINTR || errno == EAGAIN) && ++tries < 64);
    return fd;
}

static int open_in_root(int dirfd, const char *path, uint64_t flags, uint64_t mode) {
    return open_resolved(dirfd, path, flags, mode, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
}

int ofs_open_in_root(int dirfd, const char *path, int flags, unsigned mode) {
    return open_in_root(dirfd, path, (uint64_t)flags | O_CLOEXEC, mode);
}

int ofs_open_beneath(int dirfd, const char *path, int flags, unsigned mode) {
    return open_resolved(dirfd, path, (uint64_t)flags | O_CLOEXEC, mode,
                         RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
}

int ofs_walk_step(int root, const char *path, char *target, size_t capacity) {
    int fd = open_resolved(root, path, O_PATH | O_NOFOLLOW | O_CLOEXEC, 0, RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS);
    if (fd < 0) return -errno;
    struct stat info;
    int kind;
    if (fstat(fd, &info) != 0) {
        kind = -errno;
    } else if (S_ISDIR(info.st_mode)) {
        kind = 0;
    } else if (!S_ISLNK(info.st_mode)) {
        kind = 1;
    } else {
        ssize_t n = capacity > 0 ? readlinkat(fd, "", target, capacity - 1) : -1;
        if (n < 0) {
            kind = capacity > 0 ? -errno : -ENAMETOOLONG;
        } else {
            target[n] = 0;
            kind = 2;
        }
    }
    close(fd);
    return kind;
}

int ofs_walk_plain(int root, const char *path, int follow, int directory) {
    uint64_t flags = O_PATH | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW) | (directory ? O_DIRECTORY : 0);
    int fd = open_resolved(root, path, flags, 0, RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS);
    if (fd < 0) return -errno;
    close(fd);
    return 0;
}

int ofs_accept(int listener) { return accept4(listener, NULL, NULL, SOCK_CLOEXEC); }

int ofs_peer_pid(int socket) {
    struct ucred credentials;
    socklen_t length = sizeof credentials;
    if (getsockopt(socket, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) return -1;
    return credentials.pid;
}

int ofs_pidfd_open(pid_t pid) { return (int)syscall(434 /* SYS_pidfd_open */, pid, 0); }

int ofs_pass_credentials(int socket) {
    int on = 1;
    return setsockopt(socket, SOL_SOCKET, SO_PASSCRED, &on, sizeof on);
}

long ofs_recv_with_sender(int socket, void *buffer, unsigned long size, int *sender) {
    union {
        struct cmsghdr header;
        char space[CMSG_SPACE(sizeof(struct ucred))];
    } control;
    struct iovec vector = {.iov_base = buffer, .iov_len = size};
    struct msghdr message = {.msg_iov = &vector, .msg_iovlen = 1, .msg_control = control.space,
                             .msg_controllen = sizeof control.space};
    *sender = -1;
    ssize_t n;
    do n = recvmsg(socket, &message, MSG_CMSG_CLOEXEC); while (n < 0 && errno == EINTR);
    if (n < 0) return -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&message); c != NULL; c = CMSG_NXTHDR(&message, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len >= CMSG_LEN(sizeof(struct ucred))) {
            struct ucred credentials;
            memcpy(&credentials, CMSG_DATA(c), sizeof credentials);
            *sender = credentials.pid;
        }
    }
    return n;
}

// mkdir -p of every parent of `path`. The helper already lives inside the sandbox's root and
// mount namespace, so a symlink met on the way cannot lead anywhere the agent could not go.
static int make_parents(int root, const char *path) {
    char buffer[4096];
    size_t length = strlen(path);
    if (length >= sizeof(buffer)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buffer, path, length + 1);
    for (size_t i = 1; i < length; i++) {
        if (buffer[i] != '/') continue;
        buffer[i] = '\0';
        if (mkdirat(root, buffer[0] == '/' ? buffer + 1 : buffer, 0755) != 0 && errno != EEXIST) return -1;
        buffer[i] = '/';
    }
    return 0;
}

__attribute__((noreturn)) static void file_helper(int reply, const char *path, ofs_file_mode mode,
                                                  unsigned int create_mode, const ofs_identity *identity);

pid_t ofs_file_open(int reply, const char *path, ofs_file_mode mode, unsigned int create_mode,
                    const ofs_identity *identity) {
    pid_t child = fork();
    if (child == 0) file_helper(reply, path, mode, create_mode, identity);
    return child < 0 ? -errno : child;
}

__attribute__((noreturn)) static void helper_fail(int reply, int stage, int err) {
    ofs_file_reply message = {.stage = stage, .err = err};
    ofs_send_with_fds(reply, &message, sizeof(message), NULL, 0);
    _exit(1);
}

__attribute__((noreturn)) static void file_helper(int reply, const char *path, ofs_file_mode mode,
                                                  unsigned int create_mode, const ofs_identity *identity) {
    ofs_signals_reset_all();
    sigset_t empty;
    sigemptyset(&empty);
    sigprocmask(SIG_SETMASK, &empty, NULL);

    if (setgroups((size_t)identity->group_count, identity->groups) != 0) helper_fail(reply, OFS_STAGE_GROUPS, errno);
    if (setresgid(identity->gid, identity->gid, identity->gid) != 0) helper_fail(reply, OFS_STAGE_GID, errno);
    if (setresuid(identity->uid, identity->uid, identity->uid) != 0) helper_fail(reply, OFS_STAGE_UID, errno);

    int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) helper_fail(reply, OFS_STAGE_OPEN, errno);

    uint64_t flags = O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
    if (mode == OFS_FILE_WRITE) {
        flags |= O_WRONLY | O_CREAT | O_TRUNC;
        if (make_parents(root, path) != 0) helper_fail(reply, OFS_STAGE_MKDIR, errno);
    } else {
        flags |= O_RDONLY;
    }
    int fd = open_in_root(root, path, flags, create_mode);
    if (fd < 0) helper_fail(reply, OFS_STAGE_OPEN, errno);
    struct stat st;
    if (fstat(fd, &st) != 0) helper_fail(reply, OFS_STAGE_OPEN, errno);
    if (S_ISDIR(st.st_mode)) helper_fail(reply, OFS_STAGE_OPEN, EISDIR);
    if (!S_ISREG(st.st_mode)) helper_fail(reply, OFS_STAGE_NOT_REGULAR, EINVAL);
    if (ofs_set_nonblocking(fd, 0) != 0) helper_fail(reply, OFS_STAGE_OPEN, errno);

    ofs_file_reply ok = {.stage = OFS_STAGE_NONE, .err = 0};
    if (ofs_send_with_fds(reply, &ok, sizeof(ok), &fd, 1) < 0) _exit(2);
    // Our copy goes before the reply socket does: a host that reads the socket to its end knows
    // no writer of ours is left on the mount (a read-only root can only be sealed then).
    close(fd);
    close(reply);
    _exit(0);
}

// ---------------------------------------------------------------------------------------------
// User namespaces. mount_setattr, open_tree and move_mount have no glibc 2.36 wrapper.

static int write_text(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t length = (ssize_t)strlen(text);
    ssize_t n = write(fd, text, (size_t)length);
    int saved = errno;
    close(fd);
    if (n != length) {
        errno = n < 0 ? saved : EIO;
        return -1;
    }
    return 0;
}

#ifndef SECBIT_NO_SETUID_FIXUP
#define SECBIT_NO_SETUID_FIXUP (1 << 2)
#endif

int ofs_userns_create(uint32_t uid, uint32_t gid, uint32_t count, int *net_fd) {
    // A raw clone: no atfork handlers run, and only raw syscalls follow in the child (glibc's
    // setresuid would try to change the ids of threads the child does not have).
    //
    // The child takes the slot's first ids as its effective ids, keeping its capabilities
    // (SECBIT_NO_SETUID_FIXUP), before it makes the user namespace: the namespace's owner is its
    // creator's effective uid, and the kernel charges everything counted per user inside
    // (processes, queued signals, message queue bytes, inotify instances and watches) to the owner
    // as well. Owned by root, every sandbox would share, and exhaust, host root's counts.
    //
    // It then makes a network namespace that its user namespace owns (so that root inside has its
    // network capabilities there, as in Docker), says so with one byte, and pauses until it is
    // killed. The parent does not wait for a pipe's EOF: a sibling child cloned by another thread
    // at the same moment could inherit the write end and keep it open, so it polls and watches.
    int ready[2];
    if (pipe2(ready, O_CLOEXEC) != 0) return -1;
    pid_t child = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (child < 0) {
        int saved_clone = errno;
        close(ready[0]);
        close(ready[1]);
        errno = saved_clone;
        return -1;
    }
    if (child == 0) {
        // A failed step exits with its errno, which the parent reports.
        if (syscall(SYS_prctl, PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP, 0, 0, 0) != 0) syscall(SYS_exit_group, errno);
        if (syscall(SYS_setresgid, -1, gid, -1) != 0) syscall(SYS_exit_group, errno);
        if (syscall(SYS_setresuid, -1, uid, -1) != 0) syscall(SYS_exit_group, errno);
        if (syscall(SYS_unshare, CLONE_NEWUSER) != 0) syscall(SYS_exit_group, errno);
        if (net_fd != NULL && syscall(SYS_unshare, CLONE_NEWNET) != 0) syscall(SYS_exit_group, errno);
        char byte = 1;
        if (syscall(SYS_write, ready[1], &byte, 1) != 1) syscall(SYS_exit_group, errno);
        for (;;) syscall(SYS_pause);
    }
    close(ready[1]);
    char path[64], map[64];
    int fd = -1, net = -1, saved = 0;
    for (int waited = 0;; waited++) {
        struct pollfd entry = {.fd = ready[0], .events = POLLIN};
        int rc = poll(&entry, 1, 100);
        if (rc < 0 && errno == EINTR) continue;
        if (rc < 0) goto done;
        char byte = 0;
        if (rc == 1 && read(ready[0], &byte, 1) == 1) break;
        int status = 0;
        if (waitpid(child, &status, WNOHANG | __WALL) == child) {
            // The child died before its namespaces were made: its exit status is the errno.
            child = -1;
            errno = (WIFEXITED(status) && WEXITSTATUS(status) != 0) ? WEXITSTATUS(status) : ECHILD;
            goto done;
        }
        if (rc == 1) {
            // EOF, but the child is not reaped yet: wait for its status next round.
            struct timespec pause = {.tv_sec = 0, .tv_nsec = 10 * 1000 * 1000};
            nanosleep(&pause, NULL);
        }
        if (waited >= 50) {
            errno = ETIMEDOUT;
            goto done;
        }
    }
    snprintf(map, sizeof map, "0 %u %u\n", uid, count);
    snprintf(path, sizeof path, "/proc/%d/uid_map", child);
    if (write_text(path, map) != 0) goto done;
    snprintf(map, sizeof map, "0 %u %u\n", gid, count);
    snprintf(path, sizeof path, "/proc/%d/gid_map", child);
    if (write_text(path, map) != 0) goto done;
    if (net_fd != NULL) {
        snprintf(path, sizeof path, "/proc/%d/ns/net", child);
        net = open(path, O_RDONLY | O_CLOEXEC);
        if (net < 0) goto done;
    }
    snprintf(path, sizeof path, "/proc/%d/ns/user", child);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        saved = errno;
        close(net);
        net = -1;
        errno = saved;
    }
done:
    saved = errno;
    close(ready[0]);
    if (child > 0) {
        kill(child, SIGKILL);
        while (waitpid(child, NULL, __WALL) < 0 && errno == EINTR) {}
    }
    if (net_fd != NULL) *net_fd = net;
    errno = saved;
    return fd;
}

#ifndef PIDFD_GET_NET_NAMESPACE
#define PIDFD_GET_NET_NAMESPACE _IO(0xFF, 4)
#endif

int ofs_pidfd_network_namespace(int pidfd, pid_t pid) {
    // The pidfd names the process itself, so its namespace is never a recycled pid's (Linux 6.11).
    int fd = ioctl(pidfd, PIDFD_GET_NET_NAMESPACE, 0);
    if (fd >= 0) {
        if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
            int saved = errno;
            close(fd);
            errno = saved;
            return -1;
        }
        return fd;
    }
    if (errno != ENOTTY && errno != EINVAL) return -1;
    // Older kernels: open by pid, then check that the pidfd's process is still alive. A pid is
    // only reused once its process has exited and been reaped, so a live process at that point
    // means the namespace opened was its own.
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/net", pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    struct pollfd entry = {.fd = pidfd, .events = POLLIN};
    int rc;
    do { rc = poll(&entry, 1, 0); } while (rc < 0 && errno == EINTR);
    if (rc != 0) {
        close(fd);
        errno = ESRCH;
        return -1;
    }
    return fd;
}

int ofs_mounts_make_readonly(int pidfd, char *const paths[], int count, int *failed_index) {
    // A raw clone, as in ofs_userns_create: only raw syscalls follow in the child. It joins the
    // mount namespace of the process `pidfd` names (its root and working directory become that
    // namespace's root), where mount_setattr may change the mounts, and sets each one read-only.
    // Not recursive: the mounts below each path (tmpfs mounts, /proc, /dev) keep their flags.
    // The child reports the failed path and errno in one write to a pipe, then exits. The pipe is
    // read without blocking once the child is reaped: a sibling cloned by another thread meanwhile
    // may hold the write end open, so its EOF cannot be waited for.
    *failed_index = -1;
    int report[2];
    if (pipe2(report, O_CLOEXEC | O_NONBLOCK) != 0) return -1;
    pid_t child = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (child < 0) {
        int saved = errno;
        close(report[0]);
        close(report[1]);
        errno = saved;
        return -1;
    }
    if (child == 0) {
        int32_t failure[2] = {-1, 0};
        if (syscall(SYS_setns, pidfd, CLONE_NEWNS) != 0) {
            failure[1] = errno;
        } else {
            struct mount_attr attr;
            memset(&attr, 0, sizeof attr);
            attr.attr_set = MOUNT_ATTR_RDONLY;
            for (int index = 0; index < count; index++) {
                if (syscall(SYS_mount_setattr, AT_FDCWD, paths[index], AT_SYMLINK_NOFOLLOW, &attr, sizeof attr) != 0) {
                    failure[0] = index;
                    failure[1] = errno;
                    break;
                }
            }
        }
        if (failure[1] != 0) syscall(SYS_write, report[1], failure, sizeof failure);
        syscall(SYS_exit_group, failure[1] == 0 ? 0 : 1);
    }
    close(report[1]);
    int status = 0;
    while (waitpid(child, &status, __WALL) < 0 && errno == EINTR) {}
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        close(report[0]);
        return 0;
    }
    int32_t failure[2] = {-1, 0};
    ssize_t n = read(report[0], failure, sizeof failure);
    close(report[0]);
    if (n == (ssize_t)sizeof failure && failure[1] != 0) {
        *failed_index = failure[0];
        errno = failure[1];
    } else {
        errno = ECHILD;
    }
    return -1;
}

int ofs_idmapped_bind(const char *source, const char *target, int userns_fd) {
    int tree = (int)syscall(SYS_open_tree, AT_FDCWD, source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (tree < 0) return -1;
    struct mount_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.attr_set = MOUNT_ATTR_IDMAP;
    attr.userns_fd = (uint64_t)userns_fd;
    int rc = (int)syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof attr);
    if (rc == 0) rc = (int)syscall(SYS_move_mount, tree, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH);
    int saved = errno;
    close(tree);
    errno = saved;
    return rc;
}

int ofs_setns(int fd, int nstype) { return setns(fd, nstype); }

// ---------------------------------------------------------------------------------------------
// Seccomp user notification.

#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
#endif

_Static_assert(sizeof(ofs_notification) == sizeof(struct seccomp_notif), "ofs_notification mirrors seccomp_notif");

int ofs_notify_receive(int listener, ofs_notification *notification) {
    memset(notification, 0, sizeof *notification);
    return ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, notification);
}

int ofs_notify_respond(int listener, uint64_t id, int32_t error, int proceed) {
    struct seccomp_notif_resp response;
    memset(&response, 0, sizeof response);
    response.id = id;
    if (proceed) {
        response.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
    } else {
        response.error = -error;
    }
    return ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &response);
}

int ofs_notify_id_valid(int listener, uint64_t id) {
    return ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &id);
}

int ofs_notify_set_sync_wakeup(int listener) {
    return ioctl(listener, SECCOMP_IOCTL_NOTIF_SET_FLAGS, (unsigned long)SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP, 0);
}

ssize_t ofs_process_read(pid_t pid, void *local, size_t length, uint64_t remote) {
    struct iovec here = {.iov_base = local, .iov_len = length};
    struct iovec there = {.iov_base = (void *)(uintptr_t)remote, .iov_len = length};
    return process_vm_readv(pid, &here, 1, &there, 1, 0);
}

ssize_t ofs_process_read_many(pid_t pid, void *local, const uint64_t *remote, const size_t *lengths, int count) {
    struct iovec here[1024], there[1024];
    if (count < 0 || count > 1024) {
        errno = EINVAL;
        return -1;
    }
    size_t total = 0;
    for (int i = 0; i < count; i++) {
        there[i].iov_base = (void *)(uintptr_t)remote[i];
        there[i].iov_len = lengths[i];
        total += lengths[i];
    }
    here[0].iov_base = local;
    here[0].iov_len = total;
    return process_vm_readv(pid, here, 1, there, (unsigned long)count, 0);
}

static void wake_handler(int signal) { (void)signal; }

static int wake_signal(void) { return SIGRTMIN + 5; }

int ofs_thread_interruptible(void) {
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = wake_handler;  // no SA_RESTART: the interrupted call returns EINTR
    sigemptyset(&action.sa_mask);
    if (sigaction(wake_signal(), &action, NULL) != 0) return -1;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, wake_signal());
    int rc = pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return 0;
}

int ofs_thread_interrupt(pthread_t thread) { return pthread_kill(thread, wake_signal()); }

int ofs_thread_join_within(pthread_t thread, int milliseconds) {
    struct timespec limit;
    clock_gettime(CLOCK_REALTIME, &limit);
    limit.tv_nsec += (long)milliseconds * 1000000L;
    limit.tv_sec += limit.tv_nsec / 1000000000L;
    limit.tv_nsec %= 1000000000L;
    return pthread_timedjoin_np(thread, NULL, &limit);
}

ssize_t ofs_lgetxattr(const char *path, const char *name, void *value, size_t size) {
    return lgetxattr(path, name, value, size);
}

ssize_t ofs_fgetxattr(int fd, const char *name, void *value, size_t size) {
    return fgetxattr(fd, name, value, size);
}

int ofs_fsetxattr(int fd, const char *name, const void *value, size_t size) {
    return fsetxattr(fd, name, value, size, 0);
}

// ---------------------------------------------------------------------------------------------
// fanotify.

#ifndef FAN_REPORT_PIDFD
#define FAN_REPORT_PIDFD 0x00000080
#endif
#ifndef FAN_RENAME
#define FAN_RENAME 0x10000000
#endif
#ifndef FAN_REPORT_TARGET_FID
#define FAN_REPORT_TARGET_FID 0x00001000
#endif
#ifndef FAN_EVENT_INFO_TYPE_OLD_DFID_NAME
#define FAN_EVENT_INFO_TYPE_OLD_DFID_NAME 10
#define FAN_EVENT_INFO_TYPE_NEW_DFID_NAME 12
#endif

int ofs_fanotify_open(void) {
    unsigned flags = FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_UNLIMITED_QUEUE | FAN_REPORT_DFID_NAME |
                     FAN_REPORT_FID | FAN_REPORT_TARGET_FID;
    return fanotify_init(flags, O_RDONLY | O_LARGEFILE | O_CLOEXEC);
}

int ofs_fanotify_mark_filesystem(int fan, const char *path) {
    uint64_t mask = FAN_CREATE | FAN_DELETE | FAN_RENAME | FAN_MODIFY | FAN_CLOSE_WRITE | FAN_ATTRIB | FAN_OPEN_EXEC | FAN_ONDIR;
    return fanotify_mark(fan, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, mask, AT_FDCWD, path);
}

typedef struct ofs_mount_fsid {
    int fd;
    __kernel_fsid_t fsid;
} ofs_mount_fsid;

// Directory handle + name -> "/dir/name" as the filesystem's mount shows it; "" when unresolved.
static void resolve(const ofs_mount_fsid *mounts, int mount_count, struct fanotify_event_info_fid *info, int with_name,
                    char *out, size_t size) {
    struct file_handle *handle = (struct file_handle *)info->handle;
    const char *name = with_name ? (const char *)handle->f_handle + handle->handle_bytes : "";
    char dir[4096] = "";
    int mount_fd = -1;
    for (int i = 0; i < mount_count; i++) {
        if (memcmp(&mounts[i].fsid, &info->fsid, sizeof info->fsid) == 0) mount_fd = mounts[i].fd;
    }
    int fd = mount_fd >= 0 ? open_by_handle_at(mount_fd, handle, O_PATH | O_CLOEXEC) : -1;
    if (fd < 0) {
        out[0] = 0;
        return;
    }
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, dir, sizeof dir - 1);
    dir[n > 0 ? n : 0] = 0;
    close(fd);
    if (name[0] == 0) {
        snprintf(out, size, "%s", dir);
    } else {
        snprintf(out, size, "%s%s%s", dir, strcmp(dir, "/") == 0 ? "" : "/", name);
    }
}

// fsid (8 bytes), handle type (4, padded to 8), handle bytes: one file's identity.
static void store_object(const __kernel_fsid_t *fsid, const struct file_handle *handle, uint8_t *out, int32_t *length) {
    unsigned bytes = handle->handle_bytes;
    if (bytes > 128) {
        *length = 0;
        return;
    }
    memset(out, 0, 16);
    memcpy(out, fsid, 8);
    int type = handle->handle_type;
    memcpy(out + 8, &type, sizeof type);
    memcpy(out + 16, handle->f_handle, bytes);
    *length = (int32_t)(16 + bytes);
}

#ifndef AT_HANDLE_FID
#define AT_HANDLE_FID 0x200
#endif

int ofs_file_object(int fd, uint8_t *out, int capacity) {
    if (capacity < 16 + 128) {
        errno = EINVAL;
        return -1;
    }
    struct {
        struct file_handle handle;
        unsigned char bytes[128];
    } h;
    h.handle.handle_bytes = 128;
    int mount_id;
    // AT_HANDLE_FID: the handle fanotify reports (an identity, not necessarily one to open by).
    if (name_to_handle_at(fd, "", &h.handle, &mount_id, AT_EMPTY_PATH | AT_HANDLE_FID) != 0) return -1;
    struct statfs info;
    if (fstatfs(fd, &info) != 0) return -1;
    __kernel_fsid_t fsid;
    memcpy(&fsid, &info.f_fsid, sizeof fsid);
    int32_t length = 0;
    store_object(&fsid, &h.handle, out, &length);
    return length;
}

int ofs_fanotify_next(int fan, const int *mount_fds, int mount_count, ofs_file_event *events, int capacity) {
    // Small enough that every event read fits in `events` (the smallest event is 24 bytes), so
    // nothing read is dropped; large enough for the largest (a rename with two 255-byte names).
    static __thread char buffer[OFS_FANOTIFY_READ_BYTES] __attribute__((aligned(8)));
    if (capacity < OFS_FANOTIFY_READ_BYTES / (int)sizeof(struct fanotify_event_metadata)) {
        errno = EINVAL;
        return -1;
    }
    ssize_t length = read(fan, buffer, sizeof buffer);
    if (length < 0) return errno == EAGAIN ? 0 : -1;
    ofs_mount_fsid mounts[8];
    int known = 0;
    for (int i = 0; i < mount_count && known < 8; i++) {
        struct statfs info;
        if (fstatfs(mount_fds[i], &info) != 0) continue;
        mounts[known].fd = mount_fds[i];
        memcpy(&mounts[known].fsid, &info.f_fsid, sizeof mounts[known].fsid);
        known++;
    }
    int count = 0;
    for (struct fanotify_event_metadata *m = (void *)buffer; FAN_EVENT_OK(m, length) && count < capacity;
         m = FAN_EVENT_NEXT(m, length)) {
        ofs_file_event *event = &events[count++];
        event->mask = m->mask;
        event->pid = m->pid;
        event->path[0] = 0;
        event->old_path[0] = 0;
        event->object_length = 0;
        if (m->fd >= 0) close(m->fd);
        char *p = (char *)(m + 1), *end = (char *)m + m->event_len;
        while (p + sizeof(struct fanotify_event_info_header) <= end) {
            struct fanotify_event_info_header *header = (void *)p;
            if (header->len == 0) break;
            struct fanotify_event_info_fid *info = (void *)p;
            switch (header->info_type) {
            case FAN_EVENT_INFO_TYPE_DFID_NAME:
            case FAN_EVENT_INFO_TYPE_NEW_DFID_NAME:
                resolve(mounts, known, info, 1, event->path, sizeof event->path);
                break;
            case FAN_EVENT_INFO_TYPE_OLD_DFID_NAME:
                resolve(mounts, known, info, 1, event->old_path, sizeof event->old_path);
                break;
            case FAN_EVENT_INFO_TYPE_FID:
                if (event->path[0] == 0) resolve(mounts, known, info, 0, event->path, sizeof event->path);
                store_object(&info->fsid, (struct file_handle *)info->handle, event->object, &event->object_length);
                break;
            default:
                break;
            }
            p += header->len;
        }
    }
    return count;
}

int64_t ofs_fanotify_backlog(int fan) {
    int bytes = 0;
    if (ioctl(fan, FIONREAD, &bytes) != 0) return -1;
    return bytes;
}

int ofs_fanotify_discard(int fan, int64_t budget, ofs_discarded *counts) {
    static __thread char buffer[64 * 1024] __attribute__((aligned(8)));
    while (budget > 0) {
        ssize_t length = read(fan, buffer, sizeof buffer);
        if (length < 0) return errno == EAGAIN ? 0 : -1;
        if (length == 0) return 0;
        budget -= length;
        for (struct fanotify_event_metadata *m = (void *)buffer; FAN_EVENT_OK(m, length); m = FAN_EVENT_NEXT(m, length)) {
            if (m->fd >= 0) close(m->fd);
            counts->events++;
            if (m->mask & FAN_CREATE) counts->create++;
            if (m->mask & FAN_DELETE) counts->delete_++;
            if (m->mask & FAN_RENAME) counts->rename++;
            if (m->mask & FAN_MODIFY) counts->modify++;
            if (m->mask & FAN_CLOSE_WRITE) counts->close_write++;
            if (m->mask & FAN_ATTRIB) counts->attrib++;
            if (m->mask & FAN_OPEN_EXEC) counts->exec++;
        }
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
// The process connector.

int ofs_proc_connector_open(void) {
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_CONNECTOR);
    if (fd < 0) return -1;
    int size = 8 << 20;
    // SO_RCVBUFFORCE passes the rmem_max cap (we are root); fall back to what is allowed.
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    struct sockaddr_nl address = {.nl_family = AF_NETLINK, .nl_groups = CN_IDX_PROC, .nl_pid = 0};
    if (bind(fd, (struct sockaddr *)&address, sizeof address) != 0) goto fail;
    // netlink header, connector header, then the operation, laid out byte by byte (cn_msg ends
    // in a flexible array, so it cannot sit inside a struct).
    enum proc_cn_mcast_op op = PROC_CN_MCAST_LISTEN;
    struct cn_msg message;
    memset(&message, 0, sizeof message);
    message.id.idx = CN_IDX_PROC;
    message.id.val = CN_VAL_PROC;
    message.len = sizeof op;
    struct nlmsghdr header;
    memset(&header, 0, sizeof header);
    header.nlmsg_len = sizeof header + sizeof message + sizeof op;
    header.nlmsg_type = NLMSG_DONE;
    unsigned char request[sizeof header + sizeof message + sizeof op];
    memcpy(request, &header, sizeof header);
    memcpy(request + sizeof header, &message, sizeof message);
    memcpy(request + sizeof header + sizeof message, &op, sizeof op);
    if (send(fd, request, sizeof request, 0) < 0) goto fail;
    return fd;
fail:;
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

int ofs_proc_connector_next(int socket, ofs_proc_event *event) {
    char buffer[1024] __attribute__((aligned(8)));
    ssize_t n = recv(socket, buffer, sizeof buffer, 0);
    if (n < 0) return -1;
    struct nlmsghdr *header = (struct nlmsghdr *)buffer;
    if (!NLMSG_OK(header, (size_t)n) || header->nlmsg_type != NLMSG_DONE) return 0;
    struct cn_msg *message = NLMSG_DATA(header);
    if (message->id.idx != CN_IDX_PROC || message->id.val != CN_VAL_PROC) return 0;
    struct proc_event *proc = (struct proc_event *)message->data;
    memset(event, 0, sizeof *event);
    switch (proc->what) {
    case PROC_EVENT_FORK:
        event->what = OFS_PROC_FORK;
        event->pid = proc->event_data.fork.child_pid;
        event->tgid = proc->event_data.fork.child_tgid;
        event->parent_tgid = proc->event_data.fork.parent_tgid;
        return 1;
    case PROC_EVENT_EXEC:
        event->what = OFS_PROC_EXEC;
        event->pid = proc->event_data.exec.process_pid;
        event->tgid = proc->event_data.exec.process_tgid;
        return 1;
    case PROC_EVENT_EXIT:
        event->what = OFS_PROC_EXIT;
        event->pid = proc->event_data.exit.process_pid;
        event->tgid = proc->event_data.exit.process_tgid;
        event->exit_code = proc->event_data.exit.exit_code;
        return 1;
    default:
        return 0;
    }
}
