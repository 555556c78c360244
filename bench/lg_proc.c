/*
 * lg_proc.c - the server's CPU time and memory, read from /proc.
 *
 * A server is a process tree (nginx: master and worker), so both figures
 * are summed over PID and every descendant.  It may also be several trees
 * (invoice-server, and the PostgreSQL postmaster whose backends answer its
 * queries): CPU time is then read per tree, for the caller to add up.
 * CPU time is utime + stime of /proc/P/stat, which for a process is the sum
 * over /proc/P/task/[*]/stat plus threads that already exited (summing the
 * tasks alone would lose those).  RSS is the resident page count of
 * /proc/P/statm.
 */
#include "loadgen.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TREE_MAX 4096

/* Fields 4 (ppid), 14 (utime) and 15 (stime) of /proc/P/stat; the command
 * name (field 2) may hold spaces and parentheses, so parse after its end. */
static int read_stat(pid_t pid, pid_t *ppid, uint64_t *ticks)
{
    char path[64], buf[1024], *p;
    unsigned long long ut, st;
    int parent;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if ((f = fopen(path, "re")) == NULL)
        return -1;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    if ((p = strrchr(buf, ')')) == NULL ||
        sscanf(p + 1, " %*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
               &parent, &ut, &st) != 3)
        return -1;
    *ppid = parent;
    *ticks = ut + st;
    return 0;
}

/*
 * The trees of roots[0..nroots-1], found by walking every process's parent:
 * tree[] lists their members (the roots first, in order) and owner[] the
 * index of the root each descends from.  A process joins only once.
 */
static size_t trees_of(const pid_t *roots, size_t nroots, pid_t *tree,
                       size_t *owner, size_t max)
{
    static pid_t pids[TREE_MAX * 8], parents[TREE_MAX * 8];
    size_t n = 0, ntree = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;

    if (d == NULL)
        return 0;
    while ((e = readdir(d)) != NULL && n < TREE_MAX * 8) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        uint64_t ticks;
        pid_t ppid;

        if (*end != '\0' || pid <= 0 || read_stat((pid_t)pid, &ppid, &ticks) < 0)
            continue;
        pids[n] = (pid_t)pid;
        parents[n++] = ppid;
    }
    closedir(d);
    for (size_t r = 0; r < nroots && ntree < max; r++) {
        tree[ntree] = roots[r];
        owner[ntree++] = r;
    }
    /* Breadth first: each member's children join the end of the list. */
    for (size_t i = 0; i < ntree; i++)
        for (size_t j = 0; j < n && ntree < max; j++) {
            int known = 0;

            if (parents[j] != tree[i])
                continue;
            for (size_t k = 0; k < ntree && !known; k++)
                known = tree[k] == pids[j];
            if (!known) {
                tree[ntree] = pids[j];
                owner[ntree++] = owner[i];
            }
        }
    return ntree;
}

int lg_proc_cpu_us(const pid_t *roots, size_t n, uint64_t *each, size_t *gone)
{
    pid_t tree[TREE_MAX];
    size_t owner[TREE_MAX];
    size_t ntree = trees_of(roots, n, tree, owner, TREE_MAX);
    long hz = sysconf(_SC_CLK_TCK);

    if (ntree < n) {
        *gone = 0;
        return -1; /* /proc could not be read */
    }
    for (size_t r = 0; r < n; r++)
        each[r] = 0;
    for (size_t i = 0; i < ntree; i++) {
        uint64_t ticks;
        pid_t ppid;

        if (read_stat(tree[i], &ppid, &ticks) < 0) {
            if (i < n) {
                *gone = i; /* a root: that server is gone */
                return -1;
            }
            continue; /* a child that just exited */
        }
        each[owner[i]] += ticks;
    }
    for (size_t r = 0; r < n; r++)
        each[r] = each[r] * 1000000u / (uint64_t)(hz > 0 ? hz : 100);
    return 0;
}

int lg_proc_rss_bytes(const pid_t *roots, size_t n, uint64_t *bytes,
                      size_t *gone)
{
    pid_t tree[TREE_MAX];
    size_t owner[TREE_MAX];
    size_t ntree = trees_of(roots, n, tree, owner, TREE_MAX);
    uint64_t pages = 0;

    if (ntree < n) {
        *gone = 0;
        return -1;
    }
    for (size_t i = 0; i < ntree; i++) {
        char path[64];
        unsigned long size, resident;
        FILE *f;
        int ok;

        snprintf(path, sizeof(path), "/proc/%d/statm", (int)tree[i]);
        if ((f = fopen(path, "re")) == NULL) {
            if (i < n) {
                *gone = i;
                return -1;
            }
            continue;
        }
        ok = fscanf(f, "%lu %lu", &size, &resident) == 2;
        fclose(f);
        if (ok) {
            pages += resident;
        } else if (i < n) {
            *gone = i;
            return -1;
        }
    }
    *bytes = pages * (uint64_t)sysconf(_SC_PAGESIZE);
    return 0;
}
