/*
 * slowfsync: an LD_PRELOAD library that makes every fsync slow, like a slow disk.
 *
 * fsync, fdatasync and sync_file_range sleep SLOWFSYNC_DELAY_MS milliseconds
 * (a decimal number, default 2) and then call the real function (dlsym
 * RTLD_NEXT), so data still reaches the disk and errors are the real ones.
 * When SLOWFSYNC_COUNT_FILE names a file, each call appends one byte to it
 * ('f' fsync, 'd' fdatasync, 'r' sync_file_range; O_APPEND, so every process
 * and thread can share the file): its size is the number of calls.
 *
 * The benchmark (bench/slowdisk.py) compiles it at run time into its untracked
 * output folder:
 *     gcc -shared -fPIC -O2 -o slowfsync.so bench/slowfsync.c -ldl
 *     LD_PRELOAD=$PWD/slowfsync.so SLOWFSYNC_DELAY_MS=2 python ...
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_sync_file_range)(int, off64_t, off64_t, unsigned int);
static struct timespec delay = {0, 2000000};
static int count_fd = -1;

__attribute__((constructor)) static void slowfsync_init(void)
{
    real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    real_sync_file_range = (int (*)(int, off64_t, off64_t, unsigned int))dlsym(
        RTLD_NEXT, "sync_file_range");
    const char *ms = getenv("SLOWFSYNC_DELAY_MS");
    if (ms && *ms) {
        double d = strtod(ms, NULL);
        if (d < 0)
            d = 0;
        delay.tv_sec = (time_t)(d / 1000.0);
        delay.tv_nsec = (long)((d - delay.tv_sec * 1000.0) * 1e6);
    }
    const char *path = getenv("SLOWFSYNC_COUNT_FILE");
    if (path && *path)
        count_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

/* Sleep the configured delay (resumed after signals), record the call; keeps errno. */
static void slow_down(char kind)
{
    int saved = errno;
    struct timespec left = delay;
    while (nanosleep(&left, &left) == -1 && errno == EINTR)
        ;
    if (count_fd >= 0 && write(count_fd, &kind, 1) < 0) {
        /* a count that cannot be written is noticed by whoever reads the file */
    }
    errno = saved;
}

int fsync(int fd)
{
    slow_down('f');
    if (!real_fsync) {
        errno = ENOSYS;
        return -1;
    }
    return real_fsync(fd);
}

int fdatasync(int fd)
{
    slow_down('d');
    if (!real_fdatasync) {
        errno = ENOSYS;
        return -1;
    }
    return real_fdatasync(fd);
}

int sync_file_range(int fd, off64_t offset, off64_t nbytes, unsigned int flags)
{
    slow_down('r');
    if (!real_sync_file_range) {
        errno = ENOSYS;
        return -1;
    }
    return real_sync_file_range(fd, offset, nbytes, flags);
}
