/* q35lab calibrate: measure this machine's limits and save them to results/machine.json. */
#include "harness/calibrate.h"
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: q35lab calibrate [--threads 1,2] [--mem-mib N] [--quick] [--out FILE]\n"
            "  Measures fp32 FMA peak, STREAM-like memory bandwidth, cache bandwidth and OpenBLAS\n"
            "  sgemm per thread count, prints a table and writes %s (docs/calibrate.md).\n"
            "  --threads LIST  thread counts (default: 1 and all cores)\n"
            "  --mem-mib N     size of each of the three bandwidth arrays (default 1024; --quick 256)\n"
            "  --quick         a few seconds instead of ~half a minute; sgemm 1024x512x3072 replaces\n"
            "                  2048x1024x6144\n"
            "  --out FILE      where to write the JSON (default %s)\n",
            Q35_MACHINE_JSON, Q35_MACHINE_JSON);
}

int cmd_calibrate(int argc, char **argv)
{
    const char *out = Q35_MACHINE_JSON, *threads = NULL, *v;
    int quick = 0, mem_mib = 0, default_out = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--out")) {
            if (!(out = cli_value(argc, argv, &i))) return 2;
            default_out = 0;
        } else if (!strcmp(argv[i], "--threads")) {
            if (!(threads = cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(argv[i], "--mem-mib")) {
            if (!(v = cli_value(argc, argv, &i)) || cli_int("--mem-mib", v, 1, 1 << 20, &mem_mib)) return 2;
        } else {
            fprintf(stderr, "q35lab: calibrate: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }

    q35_calib_config cfg;
    if (quick) q35_calib_config_quick(&cfg);
    else q35_calib_config_default(&cfg);
    if (mem_mib) cfg.mem_bytes = (size_t)mem_mib << 20;
    if (threads) {
        int t[Q35_CAL_MAX_TLIST], n = cli_int_list(threads, t, Q35_CAL_MAX_TLIST, 1, Q35_MAX_THREADS);
        if (n < 0) {
            fprintf(stderr, "q35lab: --threads expects up to %d comma-separated counts in [1, %d], got '%s'\n",
                    Q35_CAL_MAX_TLIST, Q35_MAX_THREADS, threads);
            return 2;
        }
        cfg.nthreads = 0;
        for (int i = 0; i < n; i++) { /* drop repeats: each count is one JSON key */
            int dup = 0;
            for (int j = 0; j < cfg.nthreads; j++) dup |= cfg.threads[j] == t[i];
            if (!dup) cfg.threads[cfg.nthreads++] = t[i];
        }
    }
    if (default_out && mkdir("results", 0777) && errno != EEXIST) {
        fprintf(stderr, "q35lab: calibrate: cannot create results/: %s\n", strerror(errno));
        return 1;
    }

    /* fail now rather than after the run if the JSON cannot be written */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", out);
    char *slash = strrchr(dir, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else slash[slash == dir] = 0;
    if (access(dir, W_OK | X_OK)) {
        fprintf(stderr, "q35lab: calibrate: cannot write %s: %s: %s\n", out, dir, strerror(errno));
        return 1;
    }

    q35_calib_result *r = malloc(sizeof *r);
    if (!r) {
        fprintf(stderr, "q35lab: calibrate: out of memory\n");
        return 1;
    }
    char err[256];
    if (q35_calibrate(&cfg, r, err, sizeof err)) {
        fprintf(stderr, "q35lab: calibrate: %s\n", err);
        free(r);
        return 1;
    }
    q35_calib_print_table(stdout, r);
    int rc = 0;
    if (q35_calib_write_json(r, out, err, sizeof err)) {
        fprintf(stderr, "q35lab: calibrate: %s\n", err);
        rc = 1;
    } else {
        printf("wrote %s\n", out);
    }
    free(r);
    return rc;
}
