/*
 * lg_proc.c - the server's CPU time and memory, read from /proc.
 *
 * A server is a process tree (nginx: master and worker), so both figures
 * are summed over PID and every descendant.  CPU time is utime + stime of
 * /proc/P/stat, which for a process is the sum over /proc/P/task/[*]/stat plus
 * threads that already exited (summing the tasks alone would lose those).
 * RSS is the resident page count of /proc/P/statm.
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

/* PID and its descendants, found by walking every process's parent. */
static size_t tree_of(pid_t root, pid_t *tree, size_t max)
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
    tree[ntree++] = root;
    /* Breadth first: each member's children join the end of the list. */
    for (size_t i = 0; i < ntree; i++)
        for (size_t j = 0; j < n && ntree < max; j++)
            if (parents[j] == tree[i])
                tree[ntree++] = pids[j];
    return ntree;
}

int lg_proc_cpu_us(pid_t pid, uint64_t *us)
{
    pid_t tree[TREE_MAX];
    size_t n = tree_of(pid, tree, TREE_MAX);
    long hz = sysconf(_SC_CLK_TCK);
    uint64_t total = 0;

    for (size_t i = 0; i < n; i++) {
        uint64_t ticks;
        pid_t ppid;

        if (read_stat(tree[i], &ppid, &ticks) < 0) {
            if (i == 0)
                return -1; /* the server itself is gone */
            continue;      /* a child that just exited */
        }
        total += ticks;
    }
    *us = total * 1000000u / (uint64_t)(hz > 0 ? hz : 100);
    return 0;
}

int lg_proc_rss_bytes(pid_t pid, uint64_t *bytes)
{
    pid_t tree[TREE_MAX];
    size_t n = tree_of(pid, tree, TREE_MAX);
    uint64_t pages = 0;

    for (size_t i = 0; i < n; i++) {
        char path[64];
        unsigned long size, resident;
        FILE *f;
        int ok;

        snprintf(path, sizeof(path), "/proc/%d/statm", (int)tree[i]);
        if ((f = fopen(path, "re")) == NULL) {
            if (i == 0)
                return -1;
            continue;
        }
        ok = fscanf(f, "%lu %lu", &size, &resident) == 2;
        fclose(f);
        if (ok)
            pages += resident;
        else if (i == 0)
            return -1;
    }
    *bytes = pages * (uint64_t)sysconf(_SC_PAGESIZE);
    return 0;
}
