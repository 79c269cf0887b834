// auth.h — caller authentication and per-method permissions (--auth-config FILE).
// (Line comments here: the rules below contain a slash-star that would end nothing.)
//
// The file is JSON (parsed with jansson), one per service process:
//
//   {
//     "callers": [
//       {"name": "admin",  "san": ["spiffe://yaowei.example/admin"], "roles": ["admin"]},
//       {"name": "tier-scoring", "san": "spiffe://yaowei.example/tier-scoring",
//        "roles": ["reader"]},
//       {"name": "ops-script", "token_sha256": "<64 hex digits>", "roles": ["admin"]}
//     ],
//     "methods": {
//       "/yaowei.creator.v1.CreatorProfileService/DeleteCreator": ["admin"],
//       "/yaowei.creator.v1.CreatorProfileService/*": ["reader", "admin"],
//       "/grpc.reflection.v1.ServerReflection/*": ["*"],
//       "*": []
//     }
//   }
//
// A caller is who the call comes from: the verified mTLS client certificate's subject
// alternative names (URI SANs such as SPIFFE ids, DNS SANs) matched exactly against
// "san", or a bearer token (`authorization: Bearer <token>` metadata) whose SHA-256
// matches "token_sha256" (compared in constant time; the file never holds a token).
// A call may match several callers (a certificate and a token): their roles add up.
//
// "methods" maps a method to the roles that may call it: the full path
// "/pkg.Service/Method" first, else "/pkg.Service/*", else "*"; no match means nobody.
// The role "*" means any recognised caller. Every rule must name a method or service
// the server has (a typo stops the start).
//
// Outcome of a call: no credentials, or a token nobody has -> UNAUTHENTICATED; a
// recognised caller without a role the method needs, or a verified certificate whose
// SAN is in no "san" list -> PERMISSION_DENIED; else the handler runs. Health
// (grpc.health.v1.Health) is always open, so that probes need no credentials. Checked
// by the server runtime (server.c) before the request reaches the handler.
#ifndef YW_AUTH_H
#define YW_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include <grpc/grpc.h>
#include <grpc/status.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct st_yw_auth_t yw_auth_t;

/** Most roles one file may use (a role is a bit of a 64-bit mask). */
#define YW_AUTH_MAX_ROLES 63

/**
 * Loads and checks the file. Returns 0, or a negative errno with a message naming the
 * file, the JSON path and the rule in `err` (unknown keys are errors).
 */
int yw_auth_load(const char *path, yw_auth_t **out, char *err, size_t errlen);

/** Parses JSON text (the same format) instead of a file; `origin` names it in errors. */
int yw_auth_parse(const char *json, size_t len, const char *origin, yw_auth_t **out, char *err,
                  size_t errlen);

/** Frees it. NULL is a no-op. */
void yw_auth_destroy(yw_auth_t *auth);

/**
 * Checks that every rule names something among the server's method paths
 * ("/pkg.Service/Method"). Returns 0 or -EINVAL with the rule in `err`.
 */
int yw_auth_check_rules(const yw_auth_t *auth, const char *const *paths, size_t n, char *err,
                        size_t errlen);

/** The roles (a mask) that may call `path`; 0 means nobody. */
uint64_t yw_auth_method_roles(const yw_auth_t *auth, const char *path);

/**
 * Decides a call to a method whose roles are `allowed` (yw_auth_method_roles). `call`
 * gives the peer's certificate (grpc_call_auth_context), `authz`/`authz_len` the
 * `authorization` metadata (NULL when absent). Returns GRPC_STATUS_OK,
 * GRPC_STATUS_UNAUTHENTICATED or GRPC_STATUS_PERMISSION_DENIED; on a denial `msg` says
 * why (never the token). `*caller` gets the name of the first caller matched (static
 * until yw_auth_destroy()), or NULL.
 */
grpc_status_code yw_auth_check(const yw_auth_t *auth, grpc_call *call, const char *authz,
                               size_t authz_len, uint64_t allowed, const char **caller, char *msg,
                               size_t msglen);

/**
 * The same decision for a given set of SANs (the verified certificate's, `n_sans` of
 * them; `have_cert` non-zero when a certificate was verified). For tests and fuzzing.
 */
grpc_status_code yw_auth_decide(const yw_auth_t *auth, const char *const *sans,
                                const size_t *san_lens, size_t n_sans, int have_cert,
                                const char *authz, size_t authz_len, uint64_t allowed,
                                const char **caller, char *msg, size_t msglen);

#ifdef __cplusplus
}
#endif
#endif
