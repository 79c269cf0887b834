/* config.c — flags with environment-variable fallbacks. See config.h. */
#include "common/config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void yw__config_usage(const yw_option_t *opts, size_t n, const char *program,
                             const char *summary)
{
    printf("usage: %s [options]\n%s\n\noptions (flag, then environment variable, then default):\n",
           program, summary);
    for (size_t i = 0; i < n; i++) {
        printf("  --%-24s %s\n", opts[i].name, opts[i].help);
        printf("  %-26s env %s, default %s\n", "", opts[i].env ? opts[i].env : "-",
               opts[i].def ? opts[i].def : "(none)");
    }
    printf("  --%-24s %s\n", "help", "print this help and exit");
}

/* getopt_long's val for opts[i]: YW__CONFIG_VAL + i, above every short option. */
#define YW__CONFIG_VAL 256

/*
 * Whether `arg`, the argument getopt_long read option `c` (or, for ':', optopt) from, is
 * that flag spelled out: getopt_long also takes an unambiguous abbreviation ("--lis"),
 * which we refuse so that a new option never changes what an old command line means.
 */
static int yw__config_exact(const char *arg, int c, const yw_option_t *opts)
{
    if (c == 'h') {
        return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
    }
    const char *name = opts[c - YW__CONFIG_VAL].name;
    size_t len = strlen(name);
    return strncmp(arg, "--", 2) == 0 && strncmp(arg + 2, name, len) == 0 &&
           (arg[2 + len] == '\0' || arg[2 + len] == '=');
}

int yw_config_parse(int argc, char **argv, yw_option_t *opts, size_t n, const char *program,
                    const char *summary)
{
    for (size_t i = 0; i < n; i++) {
        const char *env = opts[i].env ? getenv(opts[i].env) : NULL;
        opts[i].value = (env != NULL && env[0] != '\0') ? env : opts[i].def;
    }
    struct option *longopts = calloc(n + 2, sizeof *longopts); /* + --help, + the end */
    if (longopts == NULL) {
        fprintf(stderr, "%s: out of memory\n", program);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        longopts[i].name = opts[i].name;
        longopts[i].has_arg =
            opts[i].arg == YW_OPTION_SWITCH ? optional_argument : required_argument;
        longopts[i].val = YW__CONFIG_VAL + (int)i;
    }
    longopts[n].name = "help";
    longopts[n].val = 'h';
    /*
     * getopt_long keeps its state in globals: optind = 0 starts it afresh (glibc), so that
     * every call parses from the start. Its messages are silenced (opterr = 0, and the
     * leading ':' alone would do it): ours name the flag. "+": stop at the first argument
     * that is not a flag, as nothing may follow it, and never reorder argv; ":": a flag
     * without its value is ':' (optopt says which).
     */
    optind = 0;
    opterr = 0;
    int rc = 0;
    while (rc == 0) {
        int at = optind > 0 ? optind : 1; /* the argument this call reads */
        int c = getopt_long(argc, argv, "+:h", longopts, NULL);
        int which = c == ':' ? optopt : c;
        if (c == -1) {
            if (optind < argc) {
                fprintf(stderr, "%s: unexpected argument \"%s\" (see --help)\n", program,
                        argv[optind]);
                rc = -EINVAL;
            }
            break;
        }
        if (c == '?' || !yw__config_exact(argv[at], which, opts)) {
            const char *arg = argv[at];
            if (strncmp(arg, "--", 2) == 0) {
                fprintf(stderr, "%s: unknown flag \"--%.*s\" (see --help)\n", program,
                        (int)strcspn(arg + 2, "="), arg + 2);
            } else {
                fprintf(stderr, "%s: unexpected argument \"%s\" (see --help)\n", program, arg);
            }
            rc = -EINVAL;
        } else if (c == 'h') {
            yw__config_usage(opts, n, program, summary);
            rc = 1;
        } else if (c == ':') {
            fprintf(stderr, "%s: flag \"--%s\" needs a value\n", program,
                    opts[which - YW__CONFIG_VAL].name);
            rc = -EINVAL;
        } else {
            opts[c - YW__CONFIG_VAL].value = optarg != NULL ? optarg : "1"; /* a switch alone */
        }
    }
    free(longopts);
    return rc;
}

const char *yw_config_get(const yw_option_t *opts, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(opts[i].name, name) == 0) {
            return opts[i].value;
        }
    }
    return NULL;
}

int yw_config_int(const yw_option_t *opts, size_t n, const char *name, long long *out, char *err,
                  size_t errlen)
{
    const char *v = yw_config_get(opts, n, name);
    if (v == NULL || v[0] == '\0') {
        snprintf(err, errlen, "--%s: a value is required", name);
        return -EINVAL;
    }
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0') {
        snprintf(err, errlen, "--%s: \"%s\" is not an integer", name, v);
        return -EINVAL;
    }
    *out = x;
    return 0;
}

int yw_config_bool(const yw_option_t *opts, size_t n, const char *name, int *out, char *err,
                   size_t errlen)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off", ""};
    const char *v = yw_config_get(opts, n, name);
    if (v == NULL) {
        *out = 0;
        return 0;
    }
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        if (strcasecmp(v, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    snprintf(err, errlen, "--%s: \"%s\" is not a boolean (on/off, 1/0, true/false)", name, v);
    return -EINVAL;
}
