/*
 * key.c - private keys: generation, PKCS#8 PEM files (optionally encrypted
 * with AES-256), and the short descriptions used in logs and listings.
 */
#include "tw_internal.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include <stdio.h>
#include <string.h>

/* Largest key file we read: an RSA-4096 PEM is about 3.3 KiB. */
#define KEY_FILE_MAX (64 * 1024)

static const struct key_type {
    const char *name;
    const char *algorithm;
    const char *group; /* EC curve */
    size_t bits;       /* RSA */
} key_types[] = {
    {"ec-p256", "EC", "P-256", 0},  {"ec-p384", "EC", "P-384", 0},
    {"ed25519", "ED25519", NULL, 0}, {"rsa-2048", "RSA", NULL, 2048},
    {"rsa-3072", "RSA", NULL, 3072}, {"rsa-4096", "RSA", NULL, 4096},
};

static const struct key_type *find_type(const char *name)
{
    for (size_t i = 0; i < sizeof(key_types) / sizeof(key_types[0]); i++)
        if (strcmp(key_types[i].name, name) == 0)
            return &key_types[i];
    return NULL;
}

int tw_key_type_valid(const char *type)
{
    return type != NULL && find_type(type) != NULL;
}

void tw__key_describe(const EVP_PKEY *pkey, char *buf, size_t len)
{
    char group[64];

    switch (EVP_PKEY_get_base_id(pkey)) {
    case EVP_PKEY_EC:
        if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME,
                                           group, sizeof(group), NULL) != 1)
            snprintf(group, sizeof(group), "?");
        if (strcmp(group, "prime256v1") == 0)
            snprintf(group, sizeof(group), "P-256");
        else if (strcmp(group, "secp384r1") == 0)
            snprintf(group, sizeof(group), "P-384");
        else if (strcmp(group, "secp521r1") == 0)
            snprintf(group, sizeof(group), "P-521");
        snprintf(buf, len, "EC %s", group);
        break;
    case EVP_PKEY_RSA:
        snprintf(buf, len, "RSA %d", EVP_PKEY_get_bits(pkey));
        break;
    case EVP_PKEY_ED25519:
        snprintf(buf, len, "Ed25519");
        break;
    case EVP_PKEY_ED448:
        snprintf(buf, len, "Ed448");
        break;
    default:
        snprintf(buf, len, "%s %d bits", OBJ_nid2sn(EVP_PKEY_get_base_id(pkey)),
                 EVP_PKEY_get_bits(pkey));
    }
}

tw_key *tw__key_wrap(EVP_PKEY *pkey, tw_err *err)
{
    tw_key *key = twu_calloc(1, sizeof(*key));

    if (key == NULL) {
        twu_err_nomem(err);
        return NULL;
    }
    key->pkey = pkey;
    tw__key_describe(pkey, key->desc, sizeof(key->desc));
    return key;
}

tw_key *tw_key_generate(const char *type, tw_err *err)
{
    const struct key_type *t;
    EVP_PKEY *pkey;
    tw_key *key;

    if (type == NULL)
        type = "ec-p256";
    if ((t = find_type(type)) == NULL) {
        twu_err(err, TW_ERR_USAGE,
                "unknown key type '%s': use ec-p256, ec-p384, ed25519, "
                "rsa-2048, rsa-3072 or rsa-4096", type);
        return NULL;
    }
    if (t->group != NULL)
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, t->algorithm, t->group);
    else if (t->bits != 0)
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, t->algorithm, t->bits);
    else
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, t->algorithm);
    if (pkey == NULL) {
        twu_err_ssl(err, TW_ERR_INTERNAL, "cannot generate a %s key", type);
        return NULL;
    }
    if ((key = tw__key_wrap(pkey, err)) == NULL)
        EVP_PKEY_free(pkey);
    return key;
}

/* The passphrase callback: never prompt (OpenSSL's default would read the
 * terminal); hand over the caller's passphrase or nothing. */
static int pass_cb(char *buf, int size, int rwflag, void *u)
{
    const char *pass = u;
    size_t len;

    (void)rwflag;
    if (pass == NULL)
        return -1;
    len = strlen(pass);
    if (len > (size_t)size)
        return -1;
    memcpy(buf, pass, len);
    return (int)len;
}

static int pem_is_encrypted(const char *pem)
{
    return strstr(pem, "-----BEGIN ENCRYPTED PRIVATE KEY-----") != NULL ||
           strstr(pem, "Proc-Type: 4,ENCRYPTED") != NULL;
}

int tw_key_file_is_encrypted(const char *path, tw_err *err)
{
    size_t len;
    char *pem = twu_read_file(path, KEY_FILE_MAX, &len, err);
    int enc;

    if (pem == NULL)
        return -1;
    enc = pem_is_encrypted(pem);
    twu_free_secret(pem, len);
    return enc;
}

/* A PKCS#8 key that parses but that no provider can load: a key type
 * OpenSSL here does not know (the rest is garbage or truncated). */
static int pkcs8_of_unknown_type(const char *pem, size_t len)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    PKCS8_PRIV_KEY_INFO *p8 =
        bio ? PEM_read_bio_PKCS8_PRIV_KEY_INFO(bio, NULL, NULL, NULL) : NULL;
    int unknown = p8 != NULL;

    PKCS8_PRIV_KEY_INFO_free(p8);
    BIO_free(bio);
    ERR_clear_error();
    return unknown;
}

tw_key *tw_key_load_file(const char *path, const char *passphrase, tw_err *err)
{
    size_t len;
    char *pem;
    BIO *bio = NULL;
    EVP_PKEY *pkey = NULL;
    tw_key *key = NULL;
    int encrypted;

    if ((pem = twu_read_file(path, KEY_FILE_MAX, &len, err)) == NULL)
        return NULL;
    encrypted = pem_is_encrypted(pem);
    if (encrypted && passphrase == NULL) {
        twu_err(err, TW_ERR_USAGE,
                "the private key %s is encrypted: give its passphrase", path);
        goto done;
    }
    if ((bio = BIO_new_mem_buf(pem, (int)len)) == NULL) {
        twu_err_nomem(err);
        goto done;
    }
    pkey = PEM_read_bio_PrivateKey(bio, NULL, pass_cb, (void *)passphrase);
    if (pkey == NULL) {
        /* OpenSSL's words ("pkcs12 cipherfinal error", "unsupported")
         * are said in ours. */
        if (encrypted)
            twu_err(err, TW_ERR_USAGE, "wrong passphrase for %s: the key "
                    "cannot be decrypted with it", path);
        else if (pkcs8_of_unknown_type(pem, len))
            twu_err(err, TW_ERR_INPUT, "%s holds a private key of a type "
                    "twoway cannot use: give an EC (P-256, P-384), Ed25519 "
                    "or RSA (2048 bits or more) key", path);
        else if (strstr(pem, "-----BEGIN") == NULL)
            twu_err(err, TW_ERR_INPUT,
                    "%s is not a PEM private key (no -----BEGIN line)", path);
        else
            twu_err(err, TW_ERR_INPUT,
                    "%s holds no readable private key (garbage or truncated "
                    "PEM?)", path);
        ERR_clear_error();
        goto done;
    }
    if ((key = tw__key_wrap(pkey, err)) == NULL)
        EVP_PKEY_free(pkey);
done:
    BIO_free(bio);
    twu_free_secret(pem, len);
    return key;
}

BIO *tw__key_pem(const tw_key *key, const char *passphrase, tw_err *err)
{
    const EVP_CIPHER *cipher = passphrase ? EVP_aes_256_cbc() : NULL;
    BIO *bio;

    /* Reading hands the passphrase callback PEM_BUFSIZE bytes: a longer
     * passphrase would write a key that never loads again. */
    if (passphrase != NULL && strlen(passphrase) > PEM_BUFSIZE) {
        twu_err(err, TW_ERR_USAGE,
                "the passphrase is longer than %d bytes", PEM_BUFSIZE);
        return NULL;
    }
    if ((bio = BIO_new(BIO_s_secmem())) == NULL) {
        twu_err_nomem(err);
        return NULL;
    }
    if (PEM_write_bio_PKCS8PrivateKey(
            bio, key->pkey, cipher, (const char *)passphrase,
            passphrase ? (int)strlen(passphrase) : 0, NULL, NULL) != 1) {
        twu_err_ssl(err, TW_ERR_INTERNAL, "cannot encode the private key");
        BIO_free(bio);
        return NULL;
    }
    return bio;
}

char *tw_key_pem(const tw_key *key, const char *passphrase, size_t *len,
                 tw_err *err)
{
    BIO *bio = tw__key_pem(key, passphrase, err);
    char *data, *pem = NULL;
    long n;

    if (bio == NULL)
        return NULL;
    n = BIO_get_mem_data(bio, &data);
    if (n < 0 || (pem = twu_malloc((size_t)n + 1)) == NULL) {
        twu_err_nomem(err);
        goto done;
    }
    memcpy(pem, data, (size_t)n);
    pem[n] = '\0';
    *len = (size_t)n;
done:
    BIO_free(bio); /* a secure-heap BIO: wiped as it is freed */
    return pem;
}

void tw_key_pem_free(char *pem, size_t len)
{
    if (pem != NULL)
        twu_free_secret(pem, len + 1);
}

int tw_key_write_file(const tw_key *key, const char *path,
                      const char *passphrase, tw_err *err)
{
    BIO *bio = tw__key_pem(key, passphrase, err);
    char *data;
    long len;
    int rc;

    if (bio == NULL)
        return -1;
    len = BIO_get_mem_data(bio, &data);
    rc = twu_write_file_atomic(path, data, (size_t)len, 0600,
                               TWU_WRITE_NO_REPLACE, err);
    BIO_free(bio);
    return rc;
}

const char *tw_key_describe(const tw_key *key)
{
    return key->desc;
}

void tw_key_free(tw_key *key)
{
    if (key == NULL)
        return;
    EVP_PKEY_free(key->pkey);
    twu_free(key);
}
