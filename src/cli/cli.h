/*
 * cli — the commands of the `vultus` program. src/main.c dispatches `vultus COMMAND ...` to
 * one entry point per command.
 *
 * Every entry point receives the arguments from the command name on (argv[0] is "nn",
 * "bench", ...) and returns the process exit status: 0 on success, 1 when the work failed,
 * 2 on a usage error (the usage text then goes to stderr). Results go to stdout, diagnostics
 * to stderr. Entry points are called once, from the main thread.
 */
#ifndef VULTUS_CLI_H
#define VULTUS_CLI_H

#include <getopt.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

enum { CLI_EXIT_OK = 0, CLI_EXIT_FAILURE = 1, CLI_EXIT_USAGE = 2 };

/* vultus nn info [--json] MODEL.json... */
int cli_nn_main(int argc, char **argv);
/* vultus bench nn [options] [MODEL...] | vultus bench peak */
int cli_bench_main(int argc, char **argv);
/* vultus analyze [options] IMAGE...: faces and attributes as JSON lines */
int cli_analyze_main(int argc, char **argv);
/* vultus eval pairs|lfw|wider|age [options]: the accuracy harness (src/cli/eval_cmd.c) */
int cli_eval_main(int argc, char **argv);
/* vultus bench pipeline [options] IMAGE...: argv[0] is "pipeline" (src/cli/bench_pipeline.c) */
int cli_bench_pipeline_main(int argc, char **argv);

/* vultus serve [--OPTION VALUE]... (src/cli/serve_cmd.c) */
int cli_serve_main(int argc, char **argv);
/* vultus keys create|list|revoke (src/cli/keys_cmd.c) */
int cli_keys_main(int argc, char **argv);
/* vultus backup [--data DIR | --store URL] [--force] OUT (src/cli/backup_cmd.c) */
int cli_backup_main(int argc, char **argv);
/* vultus restore [--data DIR] BACKUP (src/cli/backup_cmd.c) */
int cli_restore_main(int argc, char **argv);

/* vultus gallery create|list|show|delete|export|import|delete-face|delete-subject|set-threshold
 * (src/cli/gallery_cmd.c) */
int cli_gallery_main(int argc, char **argv);
/* "create|list|...": every gallery subcommand cli_gallery_main dispatches, for `vultus --help`.
 * A static string; call from the main thread. */
const char *cli_gallery_commands(void);
/* vultus enroll --collection C (--subject S IMAGE... | --dir DIR) */
int cli_enroll_main(int argc, char **argv);
/* vultus search --collection C [--top K] [--threshold T] (IMAGE... | --dir DIR) */
int cli_search_main(int argc, char **argv);

/*
 * Prints `root` as one compact JSON line on stdout (reals with `precision` significant digits),
 * flushes, and releases root. Returns 0, or -1 when root is NULL or cannot be written.
 */
int cli_print_json_line(json_t *root, int precision);

/*
 * Reads the file at path (at most max_bytes) into *data (NUL-terminated, owned by the caller)
 * and *len: a regular file as base_file_read does, a pipe, FIFO or character device
 * (/dev/stdin, <(command)) to its end. A directory or an input over the limit is an error
 * (base error code, with base_error_message set). Never waits for a FIFO's writer.
 */
int cli_read_file(const char *path, size_t max_bytes, char **data, size_t *len);

/*
 * The exit status of a command that returned `status`, once its output is written: stdout is
 * flushed, and when that or an earlier write failed (a full disk, a closed stdout) stderr says
 * so and a status of 0 becomes 1. main() passes every command's status through it.
 */
int cli_finish(int status);

/*
 * Negative numbers as operands. getopt_long reads every argument that starts with '-' as
 * options, so `vultus gallery set-threshold C -0.5` failed with "invalid option -- '0'" and
 * needed "--" before the number, though cosine thresholds can be negative. Called before the
 * getopt_long loop (with the same shortopts and longopts), cli_operands_protect hides the '-'
 * of each argument that is a whole negative number ("-0.5", "-1", "-1e-3") and is not an
 * option's value (`--threshold -0.5` already works: getopt_long hands the next argument over
 * whole), by pointing argv[i] one character on; cli_operands_restore, called after the loop
 * (getopt_long has permuted argv by then), points them back. "--" works as before; text like
 * "-0.5x" is still an unknown option; numbers beyond the first CLI_OPERANDS_MAX are left as
 * getopt_long reads them.
 */
#define CLI_OPERANDS_MAX 16
struct cli_operands {
    int n;
    char *arg[CLI_OPERANDS_MAX]; /* the arguments as given, '-' included */
};
void cli_operands_protect(int argc, char **argv, const char *shortopts,
                          const struct option *longopts, struct cli_operands *saved);
void cli_operands_restore(int argc, char **argv, const struct cli_operands *saved);

/* A model's name from its path: the file name without directory and ".json". */
void cli_model_name(const char *path, char *buf, size_t cap);

/*
 * Parses a comma-separated list of integers in [min, max] ("1,8") into out (capacity cap).
 * Returns the count, or -1 when the text is malformed, out of range or too long.
 */
int cli_parse_int_list(const char *text, int min, int max, int *out, int cap);

/*
 * Fills data[0..n) with the pseudo-random uniform [0,1) sequence the peer benchmarks use
 * (../shared/anchors/ort-time.mjs and bench/nn/tfjs-time.mjs), continuing from *state
 * (start with CLI_BENCH_SEED), so every engine times the same input.
 */
#define CLI_BENCH_SEED 937u
void cli_bench_fill(float *data, int64_t n, uint32_t *state);

/*
 * FP32 peak of one core: runs an FMA loop on the widest vector unit this CPU has (AVX-512,
 * else AVX2+FMA, else scalar) and returns GFLOP/s; *isa names the kernel used.
 */
double cli_peak_gflops(const char **isa);

#endif
