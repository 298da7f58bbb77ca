/*
 * A neighbour of known habits for the round-trip measurements in docs/PERFORMANCE.md
 * ("Why a round trip costs veil more when other proxies take turns"): pinned beside the
 * bench, it wakes every PERIOD_US microseconds (0: never sleeps) and then either sweeps
 * BYTES of memory, one write per 64-byte line (evicting the caches), or spins for SPIN_US
 * without touching memory (the same CPU taken, the caches left warm).
 *
 *   cc -O2 scripts/neighbour.c -o /tmp/neighbour
 *   taskset -c 0 /tmp/neighbour BYTES SWEEP(0|1) PERIOD_US SPIN_US &
 *   taskset -c 0 veil bench tcp --paths direct,proxied --parts latency --requests 10000
 *   # and with chrt -i 0 before the neighbour: it runs only when nothing else wants the CPU
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: neighbour BYTES SWEEP(0|1) PERIOD_US SPIN_US\n");
        return 2;
    }
    size_t bytes = (size_t)atol(argv[1]);
    int sweep = atoi(argv[2]);
    long period_us = atol(argv[3]);
    double spin_us = atof(argv[4]);
    /* Wake on time: the default timer slack (50 us) would stretch every period. */
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    volatile char *memory = malloc(bytes ? bytes : 64);
    if (!memory) return 1;
    memset((char *)memory, 1, bytes ? bytes : 64);
    struct timespec period = {period_us / 1000000, (period_us % 1000000) * 1000};
    for (;;) {
        if (period_us > 0) nanosleep(&period, NULL);
        if (sweep) {
            for (size_t i = 0; i < bytes; i += 64) memory[i]++;
        } else {
            double start = now_us();
            while (now_us() - start < spin_us) {
            }
        }
    }
}
