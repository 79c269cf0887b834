/*
 * auth.c — caller authentication and per-method permissions. See auth.h.
 *
 * Roles are bits: a caller has a mask, a method allows a mask, the check is one AND.
 * Bit 63 is "any recognised caller" (the role "*"), set on every caller. Token hashes
 * are compared with CRYPTO_memcmp against every stored hash, with no early exit.
 */
#include "common/auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <grpc/grpc_security.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#define YW__ANY (UINT64_C(1) << 63)
#define YW__AUTH_FILE_MAX (4 << 20)

typedef struct st_yw__caller_t {
    char *name;
    uint64_t roles;
    char **sans;
    size_t *san_lens;
    size_t n_sans;
    unsigned char (*tokens)[SHA256_DIGEST_LENGTH];
    size_t n_tokens;
} yw__caller_t;

typedef struct st_yw__rule_t {
    char *pattern; /* "/pkg.Service/Method", the service followed by "/" "*", or "*" */
    uint64_t roles;
} yw__rule_t;

struct st_yw_auth_t {
    yw__caller_t *callers;
    size_t n_callers;
    yw__rule_t *rules;
    size_t n_rules;
    char *roles[YW_AUTH_MAX_ROLES];
    size_t n_roles;
    /* Fetched once: SHA256() fetches the algorithm on every call (OpenSSL 3), which
     * was a third of an authenticated call's cost. */
    EVP_MD *sha256;
};

void yw_auth_destroy(yw_auth_t *a)
{
    if (a == NULL) {
        return;
    }
    for (size_t i = 0; i < a->n_callers; i++) {
        yw__caller_t *c = &a->callers[i];
        free(c->name);
        for (size_t j = 0; j < c->n_sans; j++) {
            free(c->sans[j]);
        }
        free(c->sans);
        free(c->san_lens);
        if (c->tokens != NULL) {
            OPENSSL_cleanse(c->tokens, c->n_tokens * sizeof *c->tokens);
        }
        free(c->tokens);
    }
    free(a->callers);
    for (size_t i = 0; i < a->n_rules; i++) {
        free(a->rules[i].pattern);
    }
    free(a->rules);
    EVP_MD_free(a->sha256);
    for (size_t i = 0; i < a->n_roles; i++) {
        free(a->roles[i]);
    }
    free(a);
}

/* ---- loading ---- */

/* The bit of role `name`, added when new; 0 when there are too many roles. */
static uint64_t yw__role_bit(yw_auth_t *a, const char *name, int add)
{
    if (strcmp(name, "*") == 0) {
        return YW__ANY;
    }
    for (size_t i = 0; i < a->n_roles; i++) {
        if (strcmp(a->roles[i], name) == 0) {
            return UINT64_C(1) << i;
        }
    }
    if (!add || a->n_roles == YW_AUTH_MAX_ROLES) {
        return 0;
    }
    if ((a->roles[a->n_roles] = strdup(name)) == NULL) {
        return 0;
    }
    return UINT64_C(1) << a->n_roles++;
}

/* A string or an array of non-empty strings (at most `max` of them); count in *n. */
static int yw__strings(json_t *v, const char *where, const char *origin, size_t *n, char *err,
                       size_t errlen)
{
    if (json_is_string(v)) {
        if (json_string_length(v) == 0) {
            snprintf(err, errlen, "%s: %s: must not be empty", origin, where);
            return -EINVAL;
        }
        *n = 1;
        return 0;
    }
    if (!json_is_array(v)) {
        snprintf(err, errlen, "%s: %s: must be a string or an array of strings", origin, where);
        return -EINVAL;
    }
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e)
    {
        if (!json_is_string(e) || json_string_length(e) == 0) {
            snprintf(err, errlen, "%s: %s[%zu]: must be a non-empty string", origin, where, i);
            return -EINVAL;
        }
    }
    *n = json_array_size(v);
    return 0;
}

static json_t *yw__nth(json_t *v, size_t i)
{
    return json_is_string(v) ? v : json_array_get(v, i);
}

static int yw__hex(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

static int yw__load_caller(yw_auth_t *a, json_t *o, size_t idx, const char *origin, char *err,
                           size_t errlen)
{
    yw__caller_t *c = &a->callers[idx];
    char where[96];
    if (!json_is_object(o)) {
        snprintf(err, errlen, "%s: callers[%zu]: must be an object", origin, idx);
        return -EINVAL;
    }
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v)
    {
        if (strcmp(key, "name") != 0 && strcmp(key, "san") != 0 &&
            strcmp(key, "token_sha256") != 0 && strcmp(key, "roles") != 0) {
            snprintf(err, errlen,
                     "%s: callers[%zu]: unknown key \"%s\" (name, san, token_sha256, roles)",
                     origin, idx, key);
            return -EINVAL;
        }
    }
    json_t *name = json_object_get(o, "name");
    if (!json_is_string(name) || json_string_length(name) == 0) {
        snprintf(err, errlen, "%s: callers[%zu].name: is required (a non-empty string)", origin,
                 idx);
        return -EINVAL;
    }
    for (size_t i = 0; i < idx; i++) {
        if (strcmp(a->callers[i].name, json_string_value(name)) == 0) {
            snprintf(err, errlen, "%s: callers[%zu].name: \"%s\" is already used by callers[%zu]",
                     origin, idx, json_string_value(name), i);
            return -EINVAL;
        }
    }
    if ((c->name = strdup(json_string_value(name))) == NULL) {
        return -ENOMEM;
    }
    json_t *san = json_object_get(o, "san"), *tok = json_object_get(o, "token_sha256");
    if (san == NULL && tok == NULL) {
        snprintf(err, errlen, "%s: callers[%zu] (%s): needs \"san\" or \"token_sha256\"", origin,
                 idx, c->name);
        return -EINVAL;
    }
    int rc;
    if (san != NULL) {
        snprintf(where, sizeof where, "callers[%zu].san", idx);
        if ((rc = yw__strings(san, where, origin, &c->n_sans, err, errlen)) != 0) {
            return rc;
        }
        c->sans = calloc(c->n_sans, sizeof *c->sans);
        c->san_lens = calloc(c->n_sans, sizeof *c->san_lens);
        if (c->sans == NULL || c->san_lens == NULL) {
            return -ENOMEM;
        }
        for (size_t i = 0; i < c->n_sans; i++) {
            json_t *s = yw__nth(san, i);
            if ((c->sans[i] = strdup(json_string_value(s))) == NULL) {
                return -ENOMEM;
            }
            c->san_lens[i] = json_string_length(s);
            /* One SAN, one caller: two would make the roles of a certificate ambiguous. */
            for (size_t k = 0; k < idx; k++) {
                for (size_t m = 0; m < a->callers[k].n_sans; m++) {
                    if (strcmp(a->callers[k].sans[m], c->sans[i]) == 0) {
                        snprintf(err, errlen,
                                 "%s: callers[%zu].san: \"%s\" is already the SAN of "
                                 "callers[%zu] (%s)",
                                 origin, idx, c->sans[i], k, a->callers[k].name);
                        return -EINVAL;
                    }
                }
            }
        }
    }
    if (tok != NULL) {
        snprintf(where, sizeof where, "callers[%zu].token_sha256", idx);
        if ((rc = yw__strings(tok, where, origin, &c->n_tokens, err, errlen)) != 0) {
            return rc;
        }
        c->tokens = calloc(c->n_tokens, sizeof *c->tokens);
        if (c->tokens == NULL) {
            return -ENOMEM;
        }
        for (size_t i = 0; i < c->n_tokens; i++) {
            const char *hex = json_string_value(yw__nth(tok, i));
            int ok = strlen(hex) == 2 * (size_t)SHA256_DIGEST_LENGTH;
            for (size_t k = 0; ok && k < SHA256_DIGEST_LENGTH; k++) {
                int hi = yw__hex(hex[2 * k]), lo = yw__hex(hex[2 * k + 1]);
                ok = hi >= 0 && lo >= 0;
                if (ok) {
                    c->tokens[i][k] = (unsigned char)((unsigned)hi << 4 | (unsigned)lo);
                }
            }
            if (!ok) {
                snprintf(err, errlen,
                         "%s: %s: must be the SHA-256 of the token, 64 hex digits (printf %%s "
                         "\"$TOKEN\" | sha256sum)",
                         origin, where);
                return -EINVAL;
            }
        }
    }
    json_t *roles = json_object_get(o, "roles");
    if (!json_is_array(roles)) {
        snprintf(err, errlen, "%s: callers[%zu].roles: is required (an array of role names)",
                 origin, idx);
        return -EINVAL;
    }
    c->roles = YW__ANY;
    size_t i;
    json_t *r;
    json_array_foreach(roles, i, r)
    {
        if (!json_is_string(r) || json_string_length(r) == 0 ||
            strcmp(json_string_value(r), "*") == 0) {
            snprintf(err, errlen, "%s: callers[%zu].roles[%zu]: must be a role name (not \"*\")",
                     origin, idx, i);
            return -EINVAL;
        }
        uint64_t bit = yw__role_bit(a, json_string_value(r), 1);
        if (bit == 0) {
            snprintf(err, errlen, "%s: callers[%zu].roles[%zu]: more than %d roles", origin, idx, i,
                     YW_AUTH_MAX_ROLES);
            return -EINVAL;
        }
        c->roles |= bit;
    }
    return 0;
}

static int yw__load_rule(yw_auth_t *a, const char *key, json_t *v, size_t idx, const char *origin,
                         char *err, size_t errlen)
{
    yw__rule_t *rule = &a->rules[idx];
    size_t klen = strlen(key);
    int ok = strcmp(key, "*") == 0;
    if (!ok && klen > 0) {
        /* "/pkg.Service/Method" or the service and a star; the leading slash is optional. */
        const char *p = key[0] == '/' ? key + 1 : key;
        const char *slash = strchr(p, '/');
        ok = slash != NULL && slash > p && slash[1] != '\0' && strchr(slash + 1, '/') == NULL;
    }
    if (!ok) {
        snprintf(err, errlen,
                 "%s: methods: \"%s\": must be \"/pkg.Service/Method\", \"/pkg.Service/*\" or "
                 "\"*\"",
                 origin, key);
        return -EINVAL;
    }
    char *pat = malloc(klen + 2);
    if (pat == NULL) {
        return -ENOMEM;
    }
    snprintf(pat, klen + 2, "%s%s", (key[0] == '/' || strcmp(key, "*") == 0) ? "" : "/", key);
    rule->pattern = pat;
    for (size_t i = 0; i < idx; i++) {
        if (strcmp(a->rules[i].pattern, pat) == 0) {
            snprintf(err, errlen, "%s: methods: \"%s\" is given twice", origin, key);
            return -EINVAL;
        }
    }
    if (!json_is_array(v)) {
        snprintf(err, errlen, "%s: methods[\"%s\"]: must be an array of role names", origin, key);
        return -EINVAL;
    }
    size_t i;
    json_t *r;
    json_array_foreach(v, i, r)
    {
        if (!json_is_string(r)) {
            snprintf(err, errlen, "%s: methods[\"%s\"][%zu]: must be a role name", origin, key, i);
            return -EINVAL;
        }
        uint64_t bit = yw__role_bit(a, json_string_value(r), 0);
        if (bit == 0) {
            snprintf(err, errlen,
                     "%s: methods[\"%s\"][%zu]: role \"%s\" is not given to any caller (a typo?)",
                     origin, key, i, json_string_value(r));
            return -EINVAL;
        }
        rule->roles |= bit;
    }
    return 0;
}

int yw_auth_parse(const char *text, size_t len, const char *origin, yw_auth_t **out, char *err,
                  size_t errlen)
{
    *out = NULL;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        snprintf(err, errlen, "%s: line %d, column %d: %s", origin, jerr.line, jerr.column,
                 jerr.text);
        return -EINVAL;
    }
    int rc = 0;
    yw_auth_t *a = calloc(1, sizeof *a);
    if (a == NULL) {
        json_decref(root);
        return -ENOMEM;
    }
    const char *key;
    json_t *v;
    if (!json_is_object(root)) {
        snprintf(err, errlen, "%s: must be a JSON object with \"callers\" and \"methods\"", origin);
        rc = -EINVAL;
        goto done;
    }
    json_object_foreach(root, key, v)
    {
        if (strcmp(key, "callers") != 0 && strcmp(key, "methods") != 0) {
            snprintf(err, errlen, "%s: unknown key \"%s\" (callers, methods)", origin, key);
            rc = -EINVAL;
            goto done;
        }
    }
    json_t *callers = json_object_get(root, "callers");
    json_t *methods = json_object_get(root, "methods");
    if (!json_is_array(callers) || !json_is_object(methods)) {
        snprintf(err, errlen,
                 "%s: \"callers\" (an array) and \"methods\" (an object) are both required",
                 origin);
        rc = -EINVAL;
        goto done;
    }
    a->n_callers = json_array_size(callers);
    a->callers = calloc(a->n_callers ? a->n_callers : 1, sizeof *a->callers);
    a->n_rules = json_object_size(methods);
    a->rules = calloc(a->n_rules ? a->n_rules : 1, sizeof *a->rules);
    a->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (a->callers == NULL || a->rules == NULL || a->sha256 == NULL) {
        rc = -ENOMEM;
        goto done;
    }
    for (size_t i = 0; rc == 0 && i < a->n_callers; i++) {
        rc = yw__load_caller(a, json_array_get(callers, i), i, origin, err, errlen);
    }
    size_t idx = 0;
    json_object_foreach(methods, key, v)
    {
        if (rc != 0) {
            break;
        }
        rc = yw__load_rule(a, key, v, idx++, origin, err, errlen);
    }
done:
    json_decref(root);
    if (rc == -ENOMEM) {
        snprintf(err, errlen, "%s: out of memory", origin);
    }
    if (rc != 0) {
        yw_auth_destroy(a);
        return rc;
    }
    *out = a;
    return 0;
}

int yw_auth_load(const char *path, yw_auth_t **out, char *err, size_t errlen)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        int e = errno;
        snprintf(err, errlen, "--auth-config %s: cannot open: %s", path, strerror(e));
        return -e;
    }
    char *buf = malloc(YW__AUTH_FILE_MAX + 1);
    if (buf == NULL) {
        fclose(f);
        return -ENOMEM;
    }
    size_t n = fread(buf, 1, YW__AUTH_FILE_MAX + 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || n > YW__AUTH_FILE_MAX) {
        free(buf);
        snprintf(err, errlen, "--auth-config %s: %s", path,
                 bad ? "read error" : "larger than 4 MiB");
        return bad ? -EIO : -EFBIG;
    }
    char origin[512];
    snprintf(origin, sizeof origin, "--auth-config %s", path);
    int rc = yw_auth_parse(buf, n, origin, out, err, errlen);
    free(buf);
    return rc;
}

/* ---- rules ---- */

/* The most specific rule for `path`, or NULL. */
static const yw__rule_t *yw__rule_for(const yw_auth_t *a, const char *path)
{
    const yw__rule_t *service = NULL, *any = NULL;
    const char *slash = strrchr(path, '/');
    size_t svc_len = slash != NULL ? (size_t)(slash - path) : 0;
    for (size_t i = 0; i < a->n_rules; i++) {
        const char *p = a->rules[i].pattern;
        if (strcmp(p, path) == 0) {
            return &a->rules[i];
        }
        if (strcmp(p, "*") == 0) {
            any = &a->rules[i];
        } else if (svc_len > 0 && strncmp(p, path, svc_len) == 0 &&
                   strcmp(p + svc_len, "/*") == 0) {
            service = &a->rules[i];
        }
    }
    return service != NULL ? service : any;
}

uint64_t yw_auth_method_roles(const yw_auth_t *a, const char *path)
{
    const yw__rule_t *r = yw__rule_for(a, path);
    return r != NULL ? r->roles : 0;
}

int yw_auth_check_rules(const yw_auth_t *a, const char *const *paths, size_t n, char *err,
                        size_t errlen)
{
    for (size_t i = 0; i < a->n_rules; i++) {
        const char *p = a->rules[i].pattern;
        if (strcmp(p, "*") == 0) {
            continue;
        }
        size_t plen = strlen(p);
        int wildcard = plen >= 2 && strcmp(p + plen - 2, "/*") == 0;
        int found = 0;
        for (size_t k = 0; k < n && !found; k++) {
            found = wildcard ? strncmp(paths[k], p, plen - 1) == 0 : strcmp(paths[k], p) == 0;
        }
        if (!found) {
            snprintf(err, errlen, "--auth-config: methods: \"%s\" names no method of this server",
                     p);
            return -EINVAL;
        }
    }
    return 0;
}

/* ---- decisions ---- */

/* The token of "Bearer <token>" (scheme in any case), or NULL. */
static const char *yw__bearer(const char *authz, size_t len, size_t *tlen)
{
    if (len < 7 || strncasecmp(authz, "bearer ", 7) != 0) {
        return NULL;
    }
    size_t i = 7;
    while (i < len && authz[i] == ' ') {
        i++;
    }
    if (i == len) {
        return NULL;
    }
    *tlen = len - i;
    return authz + i;
}

grpc_status_code yw_auth_decide(const yw_auth_t *a, const char *const *sans, const size_t *san_lens,
                                size_t n_sans, int have_cert, const char *authz, size_t authz_len,
                                uint64_t allowed, const char **caller, char *msg, size_t msglen)
{
    uint64_t roles = 0;
    const char *who = NULL;
    for (size_t s = 0; s < n_sans; s++) {
        for (size_t i = 0; i < a->n_callers; i++) {
            const yw__caller_t *c = &a->callers[i];
            for (size_t k = 0; k < c->n_sans; k++) {
                if (c->san_lens[k] == san_lens[s] &&
                    memcmp(c->sans[k], sans[s], san_lens[s]) == 0) {
                    roles |= c->roles;
                    if (who == NULL) {
                        who = c->name;
                    }
                }
            }
        }
    }
    if (authz != NULL) {
        size_t tlen = 0;
        const char *token = yw__bearer(authz, authz_len, &tlen);
        if (token == NULL) {
            snprintf(msg, msglen, "authorization: must be \"Bearer <token>\"");
            *caller = NULL;
            return GRPC_STATUS_UNAUTHENTICATED;
        }
        unsigned char h[SHA256_DIGEST_LENGTH];
        unsigned int hlen = 0;
        if (EVP_Digest(token, tlen, h, &hlen, a->sha256, NULL) != 1 || hlen != sizeof h) {
            snprintf(msg, msglen, "authorization: the token could not be checked");
            *caller = NULL;
            return GRPC_STATUS_UNAUTHENTICATED;
        }
        uint64_t troles = 0;
        const char *twho = NULL;
        /* Every stored hash is compared, whatever matched before. */
        for (size_t i = 0; i < a->n_callers; i++) {
            const yw__caller_t *c = &a->callers[i];
            for (size_t k = 0; k < c->n_tokens; k++) {
                uint64_t eq = (uint64_t)(CRYPTO_memcmp(h, c->tokens[k], sizeof h) == 0);
                troles |= c->roles & (0 - eq);
                if (eq && twho == NULL) {
                    twho = c->name;
                }
            }
        }
        OPENSSL_cleanse(h, sizeof h);
        if (troles == 0) {
            snprintf(msg, msglen, "authorization: the bearer token is not recognised");
            *caller = who;
            return GRPC_STATUS_UNAUTHENTICATED;
        }
        roles |= troles;
        if (who == NULL) {
            who = twho;
        }
    }
    *caller = who;
    if (roles == 0) {
        if (have_cert) {
            snprintf(msg, msglen,
                     "the client certificate (SAN %.*s) is not an allowed caller of this service",
                     n_sans > 0 ? (int)(san_lens[0] > 200 ? 200 : san_lens[0]) : 6,
                     n_sans > 0 ? sans[0] : "(none)");
            return GRPC_STATUS_PERMISSION_DENIED;
        }
        snprintf(msg, msglen,
                 "no credentials: present a client certificate (mTLS) or an authorization: "
                 "Bearer token");
        return GRPC_STATUS_UNAUTHENTICATED;
    }
    if ((roles & allowed) == 0) {
        snprintf(msg, msglen, "caller \"%s\" has no role that may call this method", who);
        return GRPC_STATUS_PERMISSION_DENIED;
    }
    return GRPC_STATUS_OK;
}

#define YW__MAX_SANS 16

grpc_status_code yw_auth_check(const yw_auth_t *a, grpc_call *call, const char *authz,
                               size_t authz_len, uint64_t allowed, const char **caller, char *msg,
                               size_t msglen)
{
    /* SAN names as gRPC C core 1.51 exposes them: every SAN, and per kind. */
    static const char *const props[] = {
        GRPC_X509_SAN_PROPERTY_NAME,
        GRPC_PEER_URI_PROPERTY_NAME,
        GRPC_PEER_DNS_PROPERTY_NAME,
        GRPC_PEER_SPIFFE_ID_PROPERTY_NAME,
    };
    const char *sans[YW__MAX_SANS];
    size_t lens[YW__MAX_SANS];
    size_t n = 0;
    int have_cert = 0;
    grpc_auth_context *ctx = grpc_call_auth_context(call);
    if (ctx != NULL) {
        /* A verified client certificate gives the peer an identity (its SANs or CN). */
        have_cert = grpc_auth_context_peer_is_authenticated(ctx);
        for (size_t p = 0; p < sizeof props / sizeof props[0]; p++) {
            grpc_auth_property_iterator it =
                grpc_auth_context_find_properties_by_name(ctx, props[p]);
            const grpc_auth_property *prop;
            while ((prop = grpc_auth_property_iterator_next(&it)) != NULL && n < YW__MAX_SANS) {
                sans[n] = prop->value;
                lens[n] = prop->value_length;
                n++;
            }
        }
    }
    grpc_status_code st =
        yw_auth_decide(a, sans, lens, n, have_cert, authz, authz_len, allowed, caller, msg, msglen);
    if (ctx != NULL) {
        grpc_auth_context_release(ctx);
    }
    return st;
}
