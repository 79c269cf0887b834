/*
 * accept_fault.c — a fault for test_flood.py, LD_PRELOAD'ed into a service: while the
 * file named by $YAOWEI_FAULT_ACCEPT4_FILE exists, accept4() fails with the errno written in
 * it ("EAGAIN": a listener that never takes a connection; "EINVAL": an error after which
 * gRPC 1.51 stops listening). The service's own accept4() (common/listener.c) calls this
 * one as "the C library's" (dlsym RTLD_NEXT finds the preloaded object first).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

/** The preloaded accept4(): the fault while the file exists, else the system call. */
int accept4(int fd, __SOCKADDR_ARG addr, socklen_t *restrict len, int flags)
{
    const char *path = getenv("YAOWEI_FAULT_ACCEPT4_FILE");
    FILE *f = path != NULL ? fopen(path, "r") : NULL;
    if (f != NULL) {
        char what[16] = "";
        if (fgets(what, sizeof what, f) == NULL) {
            what[0] = '\0';
        }
        fclose(f);
        errno = strncmp(what, "EINVAL", 6) == 0 ? EINVAL : EAGAIN;
        return -1;
    }
    return (int)syscall(SYS_accept4, fd, addr.__sockaddr__, len, flags);
}
