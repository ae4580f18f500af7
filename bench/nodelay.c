/*
 * What-if shim for the benchmark (issue 7), not part of the services:
 * LD_PRELOADed into our dynamically linked release build, it sets
 * TCP_NODELAY on every TCP socket before connect(), which is what a
 * one-line patch to rskafka's transport (TcpStream::set_nodelay(true)
 * after connecting) would do. rskafka 0.6 leaves Nagle's algorithm on, so
 * small produce requests can wait for the peer's delayed ACK (~40 ms).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

int connect(int fd, const struct sockaddr *addr, socklen_t len) {
    static int (*real_connect)(int, const struct sockaddr *, socklen_t);
    if (!real_connect)
        real_connect = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "connect");
    if (addr && (addr->sa_family == AF_INET || addr->sa_family == AF_INET6)) {
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return real_connect(fd, addr, len);
}
