/*
 * config.h — flags with environment-variable fallbacks, the same names in every
 * service. Precedence: flag, then environment variable, then default. `--help` prints
 * every option with its variable and default.
 *
 * Common options (app.c): --listen, --data-dir, --creator-profile-addr,
 * --tier-scoring-addr, --log-level, --max-message-bytes, --grace-ms, --reuse-port,
 * --metrics-listen, and the security ones: --tls-cert, --tls-key, --tls-client-ca,
 * --peer-tls-ca, --insecure, --auth-config, --reflection, --max-streams-per-connection,
 * and against floods --max-connections and --listener-stall-ms (listener.h).
 *
 * Flags are read with getopt_long(3): "--name value" or "--name=value", names spelled
 * out in full. A switch (YW_OPTION_SWITCH, e.g. --insecure) may be given alone.
 */
#ifndef YW_CONFIG_H
#define YW_CONFIG_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/** What a flag takes after its name (yw_option_t.arg). */
typedef enum {
    /** A value: "--name value" or "--name=value". */
    YW_OPTION_VALUE = 0,
    /**
     * A switch: "--name" alone means "1", another value is given as "--name=VALUE"
     * ("--name=0": off). In "--name 0" the 0 is an argument of its own, an error
     * (getopt's optional_argument).
     */
    YW_OPTION_SWITCH,
} yw_option_arg_t;

/** One flag: its name, variable, default and help; after yw_config_parse(), its value. */
typedef struct st_yw_option_t {
    /** Flag name without dashes, e.g. "listen". */
    const char *name;
    /** Environment variable, e.g. "YW_LISTEN"; NULL for none. */
    const char *env;
    /** Default value; NULL for none. */
    const char *def;
    /** Shown by --help. */
    const char *help;
    /** Whether the flag needs a value or is a switch. */
    yw_option_arg_t arg;
    /** Set by yw_config_parse(): the value in force (points into argv, env or def). */
    const char *value;
} yw_option_t;

/**
 * Parses argv ("--name value", "--name=value", a switch alone) into `opts`, after the
 * environment and defaults. Prints usage and returns 1 for --help or -h; prints an error
 * naming the flag and returns -EINVAL for an unknown flag, a missing value or an argument
 * that is not a flag ("--" ends the flags: nothing may follow it); -ENOMEM when out of
 * memory; returns 0 otherwise. Not thread-safe (getopt_long's state is global); it may be
 * called again, on the same or other arguments.
 */
int yw_config_parse(int argc, char **argv, yw_option_t *opts, size_t n, const char *program,
                    const char *summary);

/** The value of option `name` (NULL when unset). */
const char *yw_config_get(const yw_option_t *opts, size_t n, const char *name);

/** Parses an integer option; returns -EINVAL (message in err) when it is not one. */
int yw_config_int(const yw_option_t *opts, size_t n, const char *name, long long *out, char *err,
                  size_t errlen);

/**
 * Parses a boolean option: 1/true/yes/on or 0/false/no/off (any case), empty or unset
 * is 0. Returns -EINVAL (message in err) for anything else.
 */
int yw_config_bool(const yw_option_t *opts, size_t n, const char *name, int *out, char *err,
                   size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
