/*
 * tls.h — the TLS material of a process, loaded once at start-up: the server's
 * certificate and key (--tls-cert, --tls-key), the CA that client certificates must
 * chain to (--tls-client-ca: mutual TLS, a client certificate is required and
 * verified), and the CA that peers' server certificates must chain to (--peer-tls-ca:
 * outgoing channels use TLS and present --tls-cert/--tls-key as their client
 * certificate). Also the rule for plaintext: which listen addresses are loopback.
 *
 * Files are read and checked here (PEM parses, key matches certificate, CA parses), so
 * that a bad file stops the start with a message naming the flag, rather than a bind
 * that fails without saying why.
 */
#ifndef YW_TLS_H
#define YW_TLS_H

#include <stddef.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct st_yw_tls_t yw_tls_t;

/** File names; NULL or "" for none. */
typedef struct st_yw_tls_config_t {
    const char *cert_file;      /* --tls-cert: PEM certificate chain, leaf first */
    const char *key_file;       /* --tls-key: PEM private key of the leaf */
    const char *client_ca_file; /* --tls-client-ca: PEM CA bundle for client certs */
    const char *peer_ca_file;   /* --peer-tls-ca: PEM CA bundle for peers' server certs */
} yw_tls_config_t;

/**
 * Reads and checks the files. `*out` is NULL when no file is given at all (plaintext
 * both ways). Rules: --tls-cert and --tls-key go together; --tls-client-ca needs
 * them. Returns 0, or a negative errno with a message naming the flag in `err`.
 */
int yw_tls_load(const yw_tls_config_t *cfg, yw_tls_t **out, char *err, size_t errlen);

/** Frees it. NULL is a no-op. */
void yw_tls_destroy(yw_tls_t *tls);

/** Non-zero when the server listens with TLS (a certificate and key are loaded). */
int yw_tls_serves(const yw_tls_t *tls);

/** Non-zero when clients must present a certificate that chains to --tls-client-ca. */
int yw_tls_mutual(const yw_tls_t *tls);

/**
 * New server credentials (the caller releases them with
 * grpc_server_credentials_release), or NULL when the server is plaintext.
 */
grpc_server_credentials *yw_tls_server_credentials(const yw_tls_t *tls);

/**
 * New channel credentials for peers (the caller releases them with
 * grpc_channel_credentials_release), or NULL when peers are called in plaintext.
 */
grpc_channel_credentials *yw_tls_channel_credentials(const yw_tls_t *tls);

/**
 * Non-zero when the host of "HOST:PORT" (or "[V6]:PORT") is a loopback address:
 * 127.0.0.0/8, ::1, or "localhost"; also a "unix:" socket path. 0.0.0.0, [::] and
 * every other address are not.
 */
int yw_listen_is_loopback(const char *listen);

#ifdef __cplusplus
}
#endif
#endif
