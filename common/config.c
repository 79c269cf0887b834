/* config.c — flags with environment-variable fallbacks. See config.h. */
#include "common/config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static yw_option_t *yw__config_find(yw_option_t *opts, size_t n, const char *name, size_t len)
{
    for (size_t i = 0; i < n; i++) {
        if (strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0) {
            return &opts[i];
        }
    }
    return NULL;
}

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

int yw_config_parse(int argc, char **argv, yw_option_t *opts, size_t n, const char *program,
                    const char *summary)
{
    for (size_t i = 0; i < n; i++) {
        const char *env = opts[i].env ? getenv(opts[i].env) : NULL;
        opts[i].value = (env != NULL && env[0] != '\0') ? env : opts[i].def;
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            yw__config_usage(opts, n, program, summary);
            return 1;
        }
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(stderr, "%s: unexpected argument \"%s\" (see --help)\n", program, arg);
            return -EINVAL;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        yw_option_t *opt = yw__config_find(opts, n, name, len);
        if (opt == NULL) {
            fprintf(stderr, "%s: unknown flag \"--%.*s\" (see --help)\n", program, (int)len, name);
            return -EINVAL;
        }
        if (eq != NULL) {
            opt->value = eq + 1;
        } else if (i + 1 < argc) {
            opt->value = argv[++i];
        } else {
            fprintf(stderr, "%s: flag \"--%s\" needs a value\n", program, opt->name);
            return -EINVAL;
        }
    }
    return 0;
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
