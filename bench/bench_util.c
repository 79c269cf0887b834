/*
 * bench_util.c — server CPU time, peak memory and latency percentiles for the load
 * generators. See bench_util.h.
 */
#include "bench/bench_util.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int bench_pids_parse(const char *list, bench_pids_t *out)
{
    memset(out, 0, sizeof *out);
    const char *p = list != NULL ? list : "";
    while (*p != '\0') {
        int children = 0;
        if (*p == '+') {
            children = 1;
            p++;
        }
        char *end;
        long pid = strtol(p, &end, 10);
        if (end == p || pid <= 0 || out->n == BENCH_PIDS_MAX || (*end != ',' && *end != '\0')) {
            return -EINVAL;
        }
        out->pid[out->n] = (int)pid;
        out->children[out->n] = children;
        out->n++;
        p = *end == ',' ? end + 1 : end;
    }
    return 0;
}

/** utime + stime of one process in clock ticks, and its parent; -1 when it is gone. */
static long long bench__ticks(int pid, int *ppid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name may hold spaces and parentheses: fields start after the last ')'. */
    char *p = strrchr(buf, ')');
    if (p == NULL) {
        return -1;
    }
    /* Fields from 3 (state) on: ppid is the 4th, utime the 14th, stime the 15th. */
    long long field[16] = {0};
    int k = 3;
    for (char *tok = strtok(p + 2, " "); tok != NULL && k <= 15; tok = strtok(NULL, " "), k++) {
        field[k] = strtoll(tok, NULL, 10);
    }
    if (k <= 15) {
        return -1;
    }
    if (ppid != NULL) {
        *ppid = (int)field[4];
    }
    return field[14] + field[15];
}

double bench_cpu_seconds(const bench_pids_t *p)
{
    long long ticks = 0;
    int any_children = 0;
    for (int i = 0; i < p->n; i++) {
        long long t = bench__ticks(p->pid[i], NULL);
        ticks += t > 0 ? t : 0;
        any_children |= p->children[i];
    }
    if (any_children) {
        DIR *d = opendir("/proc");
        struct dirent *de;
        while (d != NULL && (de = readdir(d)) != NULL) {
            int pid = atoi(de->d_name);
            int ppid = 0;
            if (pid <= 0) {
                continue;
            }
            long long t = bench__ticks(pid, &ppid);
            for (int i = 0; i < p->n && t > 0; i++) {
                if (p->children[i] && ppid == p->pid[i]) {
                    ticks += t;
                    break;
                }
            }
        }
        if (d != NULL) {
            closedir(d);
        }
    }
    return (double)ticks / (double)sysconf(_SC_CLK_TCK);
}

long bench_peak_rss_kib(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    long kib = -1;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "VmHWM:", 6) == 0) {
            kib = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kib;
}

int bench_lat_add(bench_lat_t *l, uint64_t ns)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4096;
        uint32_t *us = realloc(l->us, cap * sizeof *us);
        if (us == NULL) {
            return -ENOMEM;
        }
        l->us = us;
        l->cap = cap;
    }
    uint64_t us = ns / 1000;
    l->us[l->n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    l->sorted = 0;
    return 0;
}

static int bench__cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

uint32_t bench_lat_quantile(bench_lat_t *l, double q)
{
    if (l->n == 0) {
        return 0;
    }
    if (!l->sorted) {
        qsort(l->us, l->n, sizeof *l->us, bench__cmp_u32);
        l->sorted = 1;
    }
    size_t rank = (size_t)(q * (double)l->n + 0.999999);
    if (rank < 1) {
        rank = 1;
    }
    return l->us[(rank > l->n ? l->n : rank) - 1];
}

void bench_lat_free(bench_lat_t *l)
{
    free(l->us);
    memset(l, 0, sizeof *l);
}

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
