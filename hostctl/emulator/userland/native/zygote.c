/* The handset's process launcher: runs inside the sandbox (as /sbin/adbd, the process that forks
 * Android's shells) and forks one shell per request of the handset model.
 *
 * Control channel: a SOCK_SEQPACKET socket inherited as fd 3 (never reachable from a path, and
 * closed in every child). Messages are four little-endian uint32 words, then a payload:
 *   model -> zygote  SPAWN  {1, id, uid, flags} "cwd\0argv0\0...\0\0env0\0...\0" + 3 fds
 *                    SIGNAL {2, id, signo, 0}   (to the child's process group)
 *   zygote -> model  STARTED {3, id, pid, 0}  FAILED {4, id, errno, 0}  EXITED {5, id, status, 0}
 * flags: 1 = the fds are a pty (new session with it as controlling terminal).
 * Every child: new session, fds 0-2 from the request, all others closed, rlimits (argv[1..3]:
 * nproc, nofile, fsize in bytes), Android's supplementary groups, then uid/gid, no_new_privs,
 * default signal dispositions, chdir, execve. Written in C because nothing of the host's Python
 * may be visible in the sandbox (hostctl issue 12). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define CTL 3
#define MAXMSG 262144
#define MAXKIDS 1024

/* AID_* of android_filesystem_config.h that adbd gives the shell (AOSP adb/daemon/main.cpp:
 * drop_privileges: log, adb, input, inet, net_bt, net_bt_admin, sdcard_r, sdcard_rw, net_bw_stats,
 * readproc, uhid, ...); a handset's list comes from the model as the GROUPS argument. */
static gid_t groups[64];
static int ngroups;
static rlim_t lim_nproc, lim_nofile, lim_fsize;
static struct { uint32_t id; pid_t pid; } kids[MAXKIDS];

static void send_words(uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
    uint32_t w[4] = {a, b, c, d};
    while (send(CTL, w, sizeof w, MSG_NOSIGNAL) < 0 && errno == EINTR) {}
}

static void child(uint32_t uid, uint32_t flags, char *payload, size_t len, int *fds) {
    char *p = payload, *end = payload + len;
    char *cwd = p; p += strlen(p) + 1;
    char *argv[1024], *envp[256];
    int n = 0;
    while (p < end && *p && n < 1023) { argv[n++] = p; p += strlen(p) + 1; }
    argv[n] = NULL; p++;
    int e = 0;
    while (p < end && *p && e < 255) { envp[e++] = p; p += strlen(p) + 1; }
    envp[e] = NULL;
    sigset_t all; sigemptyset(&all); sigprocmask(SIG_SETMASK, &all, NULL);
    for (int s = 1; s < NSIG; s++) signal(s, SIG_DFL);
    setsid();
    for (int i = 0; i < 3; i++) if (dup2(fds[i], i) < 0) _exit(126);
    if (flags & 1) ioctl(0, TIOCSCTTY, 0);
    syscall(SYS_close_range, 3, ~0U, 0);
    /* su's root shell keeps only the file capabilities (to remove what root wrote in the shell's
     * directories, as on Android): the bounding set (CAP_SETPCAP, the launcher's) is cut to them,
     * so execve grants nothing else; a uid 2000 shell gets an empty bounding set. */
    for (int c = 0; c <= 63; c++)
        if (uid != 0 || (c != CAP_CHOWN && c != CAP_DAC_OVERRIDE && c != CAP_DAC_READ_SEARCH && c != CAP_FOWNER))
            prctl(PR_CAPBSET_DROP, c, 0, 0, 0);
    struct rlimit r;
    r.rlim_cur = r.rlim_max = lim_nproc; setrlimit(RLIMIT_NPROC, &r);
    r.rlim_cur = r.rlim_max = lim_nofile; setrlimit(RLIMIT_NOFILE, &r);
    r.rlim_cur = r.rlim_max = lim_fsize; setrlimit(RLIMIT_FSIZE, &r);
    if (getuid() != 0) {
        /* under a user namespace (no root on the host) the launcher already is the shell user
         * and may not change groups: the shell runs as it is */
    } else if (uid != 0) {
        if (setgroups(ngroups, groups) || setresgid(uid, uid, uid) || setresuid(uid, uid, uid)) _exit(126);
    } else if (setgroups(0, NULL) || setresgid(0, 0, 0)) {
        _exit(126);
    }
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    if (chdir(cwd) < 0) chdir("/");
    execve(argv[0], argv, envp);
    _exit(127);
}

static void spawn(uint32_t id, uint32_t uid, uint32_t flags, char *payload, size_t len, int *fds) {
    pid_t pid = fork();
    if (pid == 0) child(uid, flags, payload, len, fds);
    int err = errno;
    for (int i = 0; i < 3; i++) close(fds[i]);
    if (pid < 0) { send_words(4, id, err, 0); return; }
    for (int i = 0; i < MAXKIDS; i++)
        if (kids[i].pid == 0) { kids[i].id = id; kids[i].pid = pid; send_words(3, id, pid, 0); return; }
    kill(pid, SIGKILL);
    send_words(4, id, EAGAIN, 0);
}

static void reap(void) {
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        for (int i = 0; i < MAXKIDS; i++)
            if (kids[i].pid == pid) { send_words(5, kids[i].id, status, 0); kids[i].pid = 0; }
}

static int control(char *buf) {
    struct iovec iov = {buf, MAXMSG};
    char cbuf[CMSG_SPACE(3 * sizeof(int))];
    struct msghdr m = {0};
    m.msg_iov = &iov; m.msg_iovlen = 1; m.msg_control = cbuf; m.msg_controllen = sizeof cbuf;
    ssize_t n = recvmsg(CTL, &m, MSG_CMSG_CLOEXEC);
    if (n <= 0) return n == 0 || errno != EINTR ? -1 : 0;
    int fds[3] = {-1, -1, -1}, nfd = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            memcpy(fds, CMSG_DATA(c), (nfd > 3 ? 3 : nfd) * sizeof(int));
        }
    if (n < 16) return 0;
    uint32_t w[4]; memcpy(w, buf, 16);
    if (w[0] == 1 && nfd == 3) {
        buf[n] = 0;
        spawn(w[1], w[2], w[3], buf + 16, n - 16, fds);
        return 0;
    }
    for (int i = 0; i < nfd && i < 3; i++) close(fds[i]);
    if (w[0] == 2)
        for (int i = 0; i < MAXKIDS; i++)
            if (kids[i].pid && kids[i].id == w[1]) kill(-kids[i].pid, w[2]);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: zygote NPROC NOFILE FSIZE GID,GID,...\n"); return 2; }
    lim_nproc = strtoull(argv[1], NULL, 10);
    lim_nofile = strtoull(argv[2], NULL, 10);
    lim_fsize = strtoull(argv[3], NULL, 10);
    for (char *g = strtok(argv[4], ","); g && ngroups < 64; g = strtok(NULL, ","))
        groups[ngroups++] = (gid_t)atoi(g);
    sigset_t set; sigemptyset(&set); sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    char *buf = malloc(MAXMSG + 1);
    send_words(0, 0, getpid(), 0);   /* ready */
    for (;;) {
        struct pollfd p[2] = {{CTL, POLLIN, 0}, {sfd, POLLIN, 0}};
        if (poll(p, 2, -1) < 0) { if (errno == EINTR) continue; return 1; }
        if (p[1].revents) { struct signalfd_siginfo si; while (read(sfd, &si, sizeof si) > 0) {} reap(); }
        if (p[0].revents & POLLIN) { if (control(buf) < 0) break; }
        else if (p[0].revents & (POLLHUP | POLLERR)) break;
    }
    for (int i = 0; i < MAXKIDS; i++) if (kids[i].pid) kill(-kids[i].pid, SIGKILL);
    return 0;
}
