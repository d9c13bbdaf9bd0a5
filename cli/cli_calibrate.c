/* q35lab calibrate: measure this machine's limits; save them with --out. */
#include "harness/calibrate.h"
#include "cli/cli_args.h"
#include "cli/commands.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "usage: q35lab calibrate [--threads 1,2] [--mem-mib N] [--quick] [--out FILE]\n"
    "  Measures fp32 FMA peak, STREAM-like memory bandwidth, cache bandwidth and OpenBLAS\n"
    "  sgemm per thread count and prints a table (docs/calibrate.md).\n"
    "  --threads LIST  thread counts (default: 1 and all cores)\n"
    "  --mem-mib N     size of each of the three bandwidth arrays (default 1024; --quick 256)\n"
    "  --quick         a few seconds instead of ~half a minute; sgemm 1024x512x3072 replaces\n"
    "                  2048x1024x6144\n"
    "  --out FILE      also write the figures as JSON; the benches read " Q35_MACHINE_JSON "\n"
    "                  (bench/run_*.sh write it), so `--out " Q35_MACHINE_JSON "` makes them use this run\n";

int cmd_calibrate(int argc, char **argv, const q35_comm *comm)
{
    if (cli_one_process(comm, "calibrate")) return 2;
    const char *out = NULL;
    int quick = 0, mem_mib = 0, t[Q35_CAL_MAX_TLIST], nt = 0;
    const cli_opt opts[] = {
        OPT_FLAG("--quick", &quick),
        OPT_STR("--out", &out),
        OPT_INTS("--threads", t, 1, Q35_MAX_THREADS, &nt, Q35_CAL_MAX_TLIST),
        OPT_INT("--mem-mib", &mem_mib, 1, 1 << 20),
        CLI_END};
    const int pr = cli_parse("calibrate", usage, opts, argc, argv, 1);
    if (pr) return CLI_EXIT(pr);

    q35_calib_config cfg;
    if (quick) q35_calib_config_quick(&cfg);
    else q35_calib_config_default(&cfg);
    if (mem_mib) cfg.mem_bytes = (size_t)mem_mib << 20;
    if (nt) {
        cfg.nthreads = 0;
        for (int i = 0; i < nt; i++) { /* drop repeats: each count is one JSON key */
            int dup = 0;
            for (int j = 0; j < cfg.nthreads; j++) dup |= cfg.threads[j] == t[i];
            if (!dup) cfg.threads[cfg.nthreads++] = t[i];
        }
    }

    /* fail now rather than after the run if the JSON cannot be written */
    if (out) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", out);
        char *slash = strrchr(dir, '/');
        if (!slash) snprintf(dir, sizeof dir, ".");
        else slash[slash == dir] = 0;
        if (access(dir, W_OK | X_OK)) {
            fprintf(stderr, "q35lab: calibrate: cannot write %s: %s: %s\n", out, dir, strerror(errno));
            return 1;
        }
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
    if (!out)
        printf("not saved (--out FILE writes the figures; the benches read %s)\n", Q35_MACHINE_JSON);
    else if (q35_calib_write_json(r, out, err, sizeof err)) {
        fprintf(stderr, "q35lab: calibrate: %s\n", err);
        rc = 1;
    } else
        printf("wrote %s\n", out);
    free(r);
    return rc;
}
