/* Android's framework tools (getprop, am, pm, settings, service, logcat, ...) as one multi-call
 * program dispatching on argv[0], as toybox does: each symlink in /system/bin forwards its argv,
 * cwd, stdin, stdout, stderr and exit code to the handset model (the Python process that plays
 * Android's system server) over the unix socket /dev/socket/hostctl_framework.
 *
 * Frames both ways: one id byte, a uint32 little-endian length, the data (the ids of adb's shell
 * protocol v2, plus two of ours):
 *   tool -> model   6 REQUEST "cwd\0pid\0argv0\0argv1\0..."   0 STDIN data   4 CLOSE_STDIN
 *   model -> tool   1 STDOUT  2 STDERR  3 EXIT (one byte)  7 WANT_STDIN (stdin is read only
 *                   when the command asks, so a tool run from an interactive shell never eats
 *                   the terminal's next line)
 *   tool -> model   8 SIGNAL (one byte): SIGINT, SIGTERM, SIGHUP reached this process
 *   model -> tool   9 DIE (one byte): end by that signal (default action), as the real tool would
 * A command that handles the signal (tcpdump prints its counts) ends with EXIT; any other is
 * cancelled and the tool dies of the signal, so the shell sees it killed (exit 130 for ^C).
 * SIGPIPE keeps its default action. Written in C: nothing of the host's Python is in the sandbox. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define SOCKET_PATH "/dev/socket/hostctl_framework"

static volatile sig_atomic_t pending_signal;
static void on_signal(int sig) { pending_signal = sig; }

static int writeall(int fd, const void *buf, size_t len, int sock) {
    const char *p = buf;
    while (len) {
        ssize_t n = sock ? send(fd, p, len, MSG_NOSIGNAL) : write(fd, p, len);
        if (n < 0) { if (errno == EINTR) continue; return -1; }
        p += n; len -= n;
    }
    return 0;
}

static int frame(int fd, int id, const void *data, uint32_t len) {
    unsigned char h[5] = {id, len & 255, (len >> 8) & 255, (len >> 16) & 255, len >> 24};
    return writeall(fd, h, 5, 1) || writeall(fd, data, len, 1) ? -1 : 0;
}

int main(int argc, char **argv) {
    const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strcpy(a.sun_path, SOCKET_PATH);
    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
        fprintf(stderr, "%s: can't reach the system server: %s\n", name, strerror(errno));
        return 255;
    }
    size_t cap = 4096, len = 0;
    char *req = malloc(cap), cwd[4096];
    if (!getcwd(cwd, sizeof cwd)) strcpy(cwd, "/");
    char pid[16]; snprintf(pid, sizeof pid, "%d", (int)getpid());
    const char *parts[3] = {cwd, pid, name};
    for (int i = 0; i < 3 + argc - 1; i++) {
        const char *p = i < 3 ? parts[i] : argv[i - 2];
        size_t l = strlen(p) + 1;
        while (len + l > cap) req = realloc(req, cap *= 2);
        memcpy(req + len, p, l); len += l;
    }
    if (frame(s, 6, req, len)) return 255;
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;   /* no SA_RESTART: poll returns EINTR */
    sigaction(SIGINT, &sa, NULL); sigaction(SIGTERM, &sa, NULL); sigaction(SIGHUP, &sa, NULL);
    sigset_t block, waiting;   /* signals arrive only inside ppoll: none is lost between checks */
    sigemptyset(&block); sigaddset(&block, SIGINT); sigaddset(&block, SIGTERM); sigaddset(&block, SIGHUP);
    sigprocmask(SIG_BLOCK, &block, &waiting);
    unsigned char *buf = malloc(65536 + 5);
    size_t have = 0;
    int want_stdin = 0;
    for (;;) {
        struct pollfd p[2] = {{s, POLLIN, 0}, {0, want_stdin == 1 ? POLLIN : 0, 0}};
        if (pending_signal) {
            unsigned char sig = pending_signal;
            pending_signal = 0;
            if (frame(s, 8, &sig, 1)) {
                signal(sig, SIG_DFL);
                sigprocmask(SIG_UNBLOCK, &block, NULL);
                raise(sig);
            }
        }
        if (ppoll(p, want_stdin == 1 ? 2 : 1, NULL, &waiting) < 0) { if (errno == EINTR) continue; return 255; }
        if (want_stdin == 1 && p[1].revents) {
            char in[16384];
            ssize_t n = read(0, in, sizeof in);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) { frame(s, 4, "", 0); want_stdin = 2; }
            else if (frame(s, 0, in, n)) return 255;
        }
        if (!p[0].revents) continue;
        ssize_t n = read(s, buf + have, 65536 + 5 - have);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) { fprintf(stderr, "%s: the system server went away\n", name); return 255; }
        have += n;
        for (;;) {
            if (have < 5) break;
            uint32_t l = buf[1] | buf[2] << 8 | buf[3] << 16 | (uint32_t)buf[4] << 24;
            if (l > 65536) { fprintf(stderr, "%s: bad frame\n", name); return 255; }
            if (have < 5 + l) break;
            int id = buf[0];
            if (id == 1 || id == 2) { if (writeall(id, buf + 5, l, 0)) { if (id == 1) return 141; } }
            else if (id == 3) return l ? buf[5] : 0;
            else if (id == 7 && !want_stdin) want_stdin = 1;
            else if (id == 9 && l) {
                struct sigaction dfl = {0};
                dfl.sa_handler = SIG_DFL;
                sigaction(buf[5], &dfl, NULL);
                sigprocmask(SIG_UNBLOCK, &block, NULL);
                raise(buf[5]);
                return 128 + buf[5];
            }
            memmove(buf, buf + 5 + l, have - 5 - l);
            have -= 5 + l;
        }
    }
}
