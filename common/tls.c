/* tls.c — TLS material and the loopback rule. See tls.h. */
#include "common/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/log.h"

/* Larger PEM files are not certificates or keys we should be reading. */
#define YW__PEM_MAX (1 << 20)

struct st_yw_tls_t {
    char *cert;      /* PEM, NUL-terminated; NULL when not serving TLS */
    char *key;       /* PEM */
    char *client_ca; /* PEM; NULL: no client certificates asked for */
    char *peer_ca;   /* PEM; NULL: peers in plaintext */
};

static int yw__set(const char *s)
{
    return s != NULL && s[0] != '\0';
}

/* Reads a whole file into a NUL-terminated malloc'd string. */
static int yw__read_file(const char *flag, const char *path, char **out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        int e = errno;
        snprintf(err, errlen, "--%s %s: cannot open: %s", flag, path, strerror(e));
        return -e;
    }
    char *buf = malloc(YW__PEM_MAX + 1);
    if (buf == NULL) {
        fclose(f);
        snprintf(err, errlen, "--%s %s: out of memory", flag, path);
        return -ENOMEM;
    }
    size_t n = fread(buf, 1, YW__PEM_MAX + 1, f);
    int rerr = ferror(f);
    fclose(f);
    if (rerr) {
        free(buf);
        snprintf(err, errlen, "--%s %s: read error", flag, path);
        return -EIO;
    }
    if (n > YW__PEM_MAX) {
        free(buf);
        snprintf(err, errlen, "--%s %s: larger than %d bytes; not a PEM file", flag, path,
                 YW__PEM_MAX);
        return -EFBIG;
    }
    buf[n] = '\0';
    *out = buf;
    return 0;
}

/* The first OpenSSL error as text (or `fallback`), and the queue cleared. */
static const char *yw__ssl_error(char *buf, size_t len, const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    if (e == 0) {
        snprintf(buf, len, "%s", fallback);
    } else {
        ERR_error_string_n(e, buf, len);
    }
    ERR_clear_error();
    return buf;
}

/* Parses every certificate of a PEM bundle; at least one is required. */
static int yw__check_certs(const char *flag, const char *path, const char *pem, X509 **first,
                           char *err, size_t errlen)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    if (bio == NULL) {
        snprintf(err, errlen, "--%s %s: out of memory", flag, path);
        return -ENOMEM;
    }
    int n = 0;
    X509 *x;
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (n == 0 && first != NULL) {
            *first = x;
        } else {
            X509_free(x);
        }
        n++;
    }
    BIO_free(bio);
    /* The loop ends on "no start line" at the end of the file: not an error. */
    ERR_clear_error();
    if (n == 0) {
        snprintf(err, errlen, "--%s %s: no PEM certificate in the file", flag, path);
        return -EINVAL;
    }
    return 0;
}

static int yw__check_pair(const yw_tls_config_t *cfg, const char *cert_pem, const char *key_pem,
                          char *err, size_t errlen)
{
    char ebuf[256];
    X509 *leaf = NULL;
    int rc = yw__check_certs("tls-cert", cfg->cert_file, cert_pem, &leaf, err, errlen);
    if (rc != 0) {
        return rc;
    }
    BIO *bio = BIO_new_mem_buf(key_pem, -1);
    EVP_PKEY *pkey = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (pkey == NULL) {
        snprintf(err, errlen, "--tls-key %s: not a PEM private key (%s)", cfg->key_file,
                 yw__ssl_error(ebuf, sizeof ebuf, "no key found"));
        X509_free(leaf);
        return -EINVAL;
    }
    rc = 0;
    if (X509_check_private_key(leaf, pkey) != 1) {
        ERR_clear_error();
        snprintf(err, errlen, "--tls-key %s: does not match the certificate of --tls-cert %s",
                 cfg->key_file, cfg->cert_file);
        rc = -EINVAL;
    } else if (X509_cmp_current_time(X509_get0_notAfter(leaf)) < 0) {
        yw_log(YW_LOG_WARN, "--tls-cert %s: the certificate has expired; peers will refuse it",
               cfg->cert_file);
    }
    EVP_PKEY_free(pkey);
    X509_free(leaf);
    return rc;
}

int yw_tls_load(const yw_tls_config_t *cfg, yw_tls_t **out, char *err, size_t errlen)
{
    *out = NULL;
    int has_cert = yw__set(cfg->cert_file), has_key = yw__set(cfg->key_file);
    int has_cca = yw__set(cfg->client_ca_file), has_pca = yw__set(cfg->peer_ca_file);
    if (!has_cert && !has_key && !has_cca && !has_pca) {
        return 0;
    }
    if (has_cert != has_key) {
        snprintf(err, errlen, "--tls-cert and --tls-key go together: %s is missing",
                 has_cert ? "--tls-key" : "--tls-cert");
        return -EINVAL;
    }
    if (has_cca && !has_cert) {
        snprintf(err, errlen,
                 "--tls-client-ca needs --tls-cert and --tls-key (mutual TLS is TLS first)");
        return -EINVAL;
    }
    yw_tls_t *tls = calloc(1, sizeof *tls);
    if (tls == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int rc = 0;
    if (has_cert) {
        if ((rc = yw__read_file("tls-cert", cfg->cert_file, &tls->cert, err, errlen)) != 0 ||
            (rc = yw__read_file("tls-key", cfg->key_file, &tls->key, err, errlen)) != 0 ||
            (rc = yw__check_pair(cfg, tls->cert, tls->key, err, errlen)) != 0) {
            goto fail;
        }
    }
    if (has_cca) {
        if ((rc = yw__read_file("tls-client-ca", cfg->client_ca_file, &tls->client_ca, err,
                                errlen)) != 0 ||
            (rc = yw__check_certs("tls-client-ca", cfg->client_ca_file, tls->client_ca, NULL, err,
                                  errlen)) != 0) {
            goto fail;
        }
    }
    if (has_pca) {
        if ((rc = yw__read_file("peer-tls-ca", cfg->peer_ca_file, &tls->peer_ca, err, errlen)) !=
                0 ||
            (rc = yw__check_certs("peer-tls-ca", cfg->peer_ca_file, tls->peer_ca, NULL, err,
                                  errlen)) != 0) {
            goto fail;
        }
    }
    *out = tls;
    return 0;
fail:
    yw_tls_destroy(tls);
    return rc;
}

/* Key material is wiped before it is freed. */
static void yw__free_secret(char *s)
{
    if (s != NULL) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

void yw_tls_destroy(yw_tls_t *tls)
{
    if (tls == NULL) {
        return;
    }
    free(tls->cert);
    yw__free_secret(tls->key);
    free(tls->client_ca);
    free(tls->peer_ca);
    free(tls);
}

int yw_tls_serves(const yw_tls_t *tls)
{
    return tls != NULL && tls->cert != NULL;
}

int yw_tls_mutual(const yw_tls_t *tls)
{
    return tls != NULL && tls->client_ca != NULL;
}

grpc_server_credentials *yw_tls_server_credentials(const yw_tls_t *tls)
{
    if (!yw_tls_serves(tls)) {
        return NULL;
    }
    grpc_ssl_pem_key_cert_pair pair = {.private_key = tls->key, .cert_chain = tls->cert};
    return grpc_ssl_server_credentials_create_ex(
        tls->client_ca, &pair, 1,
        tls->client_ca != NULL ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                               : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
        NULL);
}

grpc_channel_credentials *yw_tls_channel_credentials(const yw_tls_t *tls)
{
    if (tls == NULL || tls->peer_ca == NULL) {
        return NULL;
    }
    grpc_ssl_pem_key_cert_pair pair = {.private_key = tls->key, .cert_chain = tls->cert};
    return grpc_ssl_credentials_create(tls->peer_ca, tls->cert != NULL ? &pair : NULL, NULL, NULL);
}

int yw_listen_is_loopback(const char *listen)
{
    if (listen == NULL) {
        return 0;
    }
    if (strncmp(listen, "unix:", 5) == 0 || strncmp(listen, "unix-abstract:", 14) == 0) {
        return 1;
    }
    char host[256];
    const char *end;
    if (listen[0] == '[') {
        end = strchr(listen, ']');
        if (end == NULL) {
            return 0;
        }
        listen++;
    } else {
        end = strrchr(listen, ':');
        if (end == NULL) {
            end = listen + strlen(listen);
        }
    }
    size_t len = (size_t)(end - listen);
    if (len == 0 || len >= sizeof host) {
        return 0; /* ":50051" means every address */
    }
    memcpy(host, listen, len);
    host[len] = '\0';
    if (strcasecmp(host, "localhost") == 0) {
        return 1;
    }
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1) {
        return (ntohl(a4.s_addr) >> 24) == 127;
    }
    if (inet_pton(AF_INET6, host, &a6) == 1) {
        if (IN6_IS_ADDR_LOOPBACK(&a6)) {
            return 1;
        }
        /* ::ffff:127.x.x.x */
        return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
    }
    return 0;
}
