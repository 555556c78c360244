/*
 * config.c - tw_config: what a server or client is built from.  Setters
 * check what they can at once (a file that cannot be read, a bad rule) so
 * mistakes are reported where they are made; the files are read again on
 * each build and reload.
 */
#include "tls_internal.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

tw_config *tw_config_new(void)
{
    tw_config *cfg = twu_calloc(1, sizeof(*cfg));

    if (cfg == NULL)
        return NULL;
    cfg->min_version = TW_TLS_1_2;
    cfg->max_version = TW_TLS_1_3;
    cfg->tickets = 1;
    cfg->client_cert = TW_CLIENT_CERT_REQUIRED;
    cfg->session_cache_bytes = TW__SESSION_CACHE_DEFAULT;
    return cfg;
}

static void free_list(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        twu_free(list[i]);
    twu_free(list);
}

static void drop_ticket_keys(tw_config *cfg)
{
    if (cfg->ticket_keys != NULL)
        twu_free_secret(cfg->ticket_keys,
                        cfg->nticket_keys * sizeof(*cfg->ticket_keys));
    cfg->ticket_keys = NULL;
    cfg->nticket_keys = 0;
}

void tw_config_free(tw_config *cfg)
{
    if (cfg == NULL)
        return;
    twu_free(cfg->ca_file);
    twu_free(cfg->crl_file);
    twu_free(cfg->cert_file);
    twu_free(cfg->key_file);
    twu_free(cfg->policy_file);
    twu_free(cfg->ticket_keys_file);
    free_list(cfg->rules, cfg->nrules);
    free_list(cfg->expectations, cfg->nexpectations);
    drop_ticket_keys(cfg);
    twu_free(cfg->revoked);
    twu_free(cfg);
}

const char *tw_config_error(const tw_config *cfg)
{
    return cfg->err.msg;
}

enum tw_error_class tw_config_error_class(const tw_config *cfg)
{
    return cfg->err.cls;
}

/* Replace *slot with a copy of path after checking it can be read. */
static int set_path(tw_config *cfg, char **slot, const char *path,
                    const char *what, int optional)
{
    char *copy = NULL;

    if (path == NULL) {
        if (!optional)
            return twu_err(&cfg->err, TW_ERR_USAGE, "no %s given", what);
    } else {
        if (access(path, R_OK) != 0)
            return twu_err(&cfg->err, TW_ERR_IO, "cannot read the %s %s: %s",
                           what, path, strerror(errno));
        if ((copy = twu_strdup(path)) == NULL)
            return twu_err_nomem(&cfg->err);
    }
    twu_free(*slot);
    *slot = copy;
    return 0;
}

int tw_config_set_ca_file(tw_config *cfg, const char *path)
{
    return set_path(cfg, &cfg->ca_file, path, "CA file", 0);
}

int tw_config_set_crl_file(tw_config *cfg, const char *path)
{
    return set_path(cfg, &cfg->crl_file, path, "CRL file", 1);
}

int tw_config_set_keypair_file(tw_config *cfg, const char *cert_path,
                               const char *key_path)
{
    if (set_path(cfg, &cfg->cert_file, cert_path, "certificate file", 0) < 0)
        return -1;
    return set_path(cfg, &cfg->key_file, key_path, "key file", 0);
}

int tw_config_set_protocols(tw_config *cfg, int min, int max)
{
    if (min < TW_TLS_1_2 || max > TW_TLS_1_3 || min > max)
        return twu_err(&cfg->err, TW_ERR_USAGE,
                       "protocol bounds must lie within TLS 1.2 .. TLS 1.3 "
                       "(older versions are not offered)");
    cfg->min_version = min;
    cfg->max_version = max;
    return 0;
}

/* Check a rule by parsing it, then keep its text. */
static int add_rule(tw_config *cfg, char ***list, size_t *n, const char *rule,
                    int expectation)
{
    tw_policy *p = tw_policy_new(&cfg->err);
    char **grown;
    int rc;

    if (p == NULL)
        return -1;
    rc = expectation ? tw_policy_add_expectation(p, rule, &cfg->err)
                     : tw_policy_add_rule(p, rule, &cfg->err);
    tw_policy_free(p);
    if (rc < 0)
        return -1;
    if ((grown = twu_realloc(*list, (*n + 1) * sizeof(*grown))) == NULL)
        return twu_err_nomem(&cfg->err);
    *list = grown;
    if ((grown[*n] = twu_strdup(rule)) == NULL)
        return twu_err_nomem(&cfg->err);
    (*n)++;
    return 0;
}

int tw_config_add_policy_rule(tw_config *cfg, const char *rule)
{
    return add_rule(cfg, &cfg->rules, &cfg->nrules, rule, 0);
}

int tw_config_add_expectation(tw_config *cfg, const char *rule)
{
    return add_rule(cfg, &cfg->expectations, &cfg->nexpectations, rule, 1);
}

int tw_config_set_policy_file(tw_config *cfg, const char *path)
{
    tw_policy *p;
    int rc;

    if (path == NULL)
        return set_path(cfg, &cfg->policy_file, NULL, "policy file", 1);
    if ((p = tw_policy_new(&cfg->err)) == NULL)
        return -1;
    rc = tw_policy_load_file(p, path, &cfg->err);
    tw_policy_free(p);
    if (rc < 0)
        return -1;
    return set_path(cfg, &cfg->policy_file, path, "policy file", 1);
}

int tw_config_set_ticket_keys_file(tw_config *cfg, const char *path)
{
    tw__ticket_key keys[TW__TICKET_KEYS_MAX];
    size_t n;
    int rc;

    if (path != NULL) {
        rc = tw__ticket_keys_load(path, keys, &n, &cfg->err);
        OPENSSL_cleanse(keys, sizeof(keys));
        if (rc < 0)
            return -1;
    }
    if (set_path(cfg, &cfg->ticket_keys_file, path, "ticket keys file", 1) < 0)
        return -1;
    if (path != NULL)
        drop_ticket_keys(cfg);
    return 0;
}

int tw_config_set_ticket_keys(tw_config *cfg, const unsigned char *keys,
                              size_t n)
{
    tw__ticket_key *copy;

    if (keys == NULL || n == 0 || n > TW__TICKET_KEYS_MAX)
        return twu_err(&cfg->err, TW_ERR_USAGE, "give 1 to %d ticket keys, "
                       "not %zu", TW__TICKET_KEYS_MAX, keys == NULL ? 0 : n);
    if ((copy = twu_malloc(n * sizeof(*copy))) == NULL)
        return twu_err_nomem(&cfg->err);
    for (size_t i = 0; i < n; i++) {
        const unsigned char *k = keys + i * TW_TICKET_KEY_BYTES;

        memcpy(copy[i].name, k, 16);
        memcpy(copy[i].aes, k + 16, 32);
        memcpy(copy[i].hmac, k + 48, 32);
    }
    drop_ticket_keys(cfg);
    cfg->ticket_keys = copy;
    cfg->nticket_keys = n;
    twu_free(cfg->ticket_keys_file);
    cfg->ticket_keys_file = NULL;
    return 0;
}

/* 64 hex digits, with or without colons between the bytes. */
static int parse_fingerprint(const char *text, unsigned char fp[32])
{
    size_t n = 0;

    for (const char *p = text; *p != '\0'; p++) {
        int hi, lo;

        if (*p == ':' && n > 0 && p[1] != '\0')
            continue;
        if (n == 32 || (hi = twu_hex_digit(p[0])) < 0 ||
            (lo = twu_hex_digit(p[1])) < 0)
            return -1;
        fp[n++] = (unsigned char)(hi << 4 | lo);
        p++;
    }
    return n == 32 ? 0 : -1;
}

int tw_config_add_revoked_fingerprint(tw_config *cfg, const char *sha256)
{
    unsigned char fp[32], (*grown)[32];

    if (sha256 == NULL || parse_fingerprint(sha256, fp) < 0)
        return twu_err(&cfg->err, TW_ERR_USAGE, "'%s' is not a SHA-256 "
                       "fingerprint: give 64 hex digits (colons allowed)",
                       sha256 == NULL ? "(null)" : sha256);
    for (size_t i = 0; i < cfg->nrevoked; i++)
        if (memcmp(cfg->revoked[i], fp, 32) == 0)
            return 0;
    if ((grown = twu_realloc(cfg->revoked,
                             (cfg->nrevoked + 1) * sizeof(*grown))) == NULL)
        return twu_err_nomem(&cfg->err);
    cfg->revoked = grown;
    memcpy(grown[cfg->nrevoked++], fp, 32);
    return 0;
}

int tw_config_set_tickets(tw_config *cfg, int count)
{
    if (count < 0 || count > 8)
        return twu_err(&cfg->err, TW_ERR_USAGE,
                       "ticket count %d is out of range: give 0 to 8", count);
    cfg->tickets = count;
    return 0;
}

int tw_config_set_client_cert(tw_config *cfg, int mode)
{
    int base = mode & ~TW_CLIENT_CERT_ANY_PURPOSE;

    if (base != TW_CLIENT_CERT_REQUIRED && base != TW_CLIENT_CERT_OPTIONAL)
        return twu_err(&cfg->err, TW_ERR_USAGE,
                       "client certificate mode %d is unknown: give "
                       "TW_CLIENT_CERT_REQUIRED or TW_CLIENT_CERT_OPTIONAL "
                       "(with TW_CLIENT_CERT_ANY_PURPOSE or not)",
                       mode);
    cfg->client_cert = mode;
    return 0;
}

int tw_config_set_session_cache_size(tw_config *cfg, size_t bytes)
{
    /* One session takes about 6.5 KiB with an ECDSA client certificate
     * (sesscache.c): a cache below 16 KiB would hold one or none, which
     * is surely not what was meant. */
    if (bytes != 0 && bytes < TW__SESSION_CACHE_MIN)
        return twu_err(&cfg->err, TW_ERR_USAGE,
                       "a session cache of %zu bytes holds no session: give "
                       "0 to turn it off, or at least %d bytes", bytes,
                       TW__SESSION_CACHE_MIN);
    cfg->session_cache_bytes = bytes;
    return 0;
}
