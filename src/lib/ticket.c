/*
 * ticket.c - TLS session tickets: keys shared by instances, and the check
 * that keeps resumption honest.
 *
 * A ticket carries the client's certificate inside it.  Resuming skips the
 * chain check, so before a ticket is accepted its certificate is checked
 * against what is true now: not expired, not on the current CRL, and made
 * under the same trust anchors.  Otherwise the server falls back to a full
 * handshake, where verification refuses a revoked client with an alert.
 *
 * A server with TW_CLIENT_CERT_OPTIONAL lets in clients whose certificate
 * is missing or failed verification.  Their sessions are never resumed:
 * a resumption skips the chain check, and the reason a route must be able
 * to give ("revoked", "expired") would have to travel inside the session
 * and be re-derived under the current CRL and dates on every resumption.
 * A full handshake gives it again, exactly, for the price of a few
 * handshakes by clients that are being refused anyway.  So such a session
 * is given an empty session id context (tw__session_unresumable) before
 * it is sealed into a ticket or stored: OpenSSL does not cache a server
 * session without a context, and never resumes a session whose context
 * is not the SSL_CTX's ("twoway"), in TLS 1.2 and 1.3 alike; a client
 * offering it gets a full handshake.  What marks it: the verification
 * callback when a presented certificate fails (verify.c), the ticket
 * callback below for every ticket (a TLS 1.3 client without a
 * certificate), and tw_conn_handshake for a TLS 1.2 session id.  Should a
 * session get through all the same, tw_conn_handshake reads the verify
 * result it carries and the peer stays unverified.
 */
#include "tls_internal.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#define TICKET_FILE_MAX (64 * 1024)

int tw__ticket_keys_load(const char *path, tw__ticket_key *keys, size_t *nkeys,
                         tw_err *err)
{
    size_t len, n = 0, lineno = 0;
    char *data = twu_read_file(path, TICKET_FILE_MAX, &len, err);
    char *line, *save = NULL;
    int rc = -1;

    if (data == NULL)
        return -1;
    for (line = strtok_r(data, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        unsigned char raw[80];
        size_t hex = 0;

        lineno++;
        line[strcspn(line, "#\r")] = '\0';
        for (char *p = line; *p != '\0'; p++) {
            int hi, lo;

            if (isspace((unsigned char)*p))
                continue;
            if (hex == sizeof(raw) || (hi = twu_hex_digit(p[0])) < 0 ||
                (lo = twu_hex_digit(p[1])) < 0) {
                twu_err(err, TW_ERR_INPUT,
                        "%s:%zu: a ticket key is 160 hex digits (16-byte "
                        "name, 32-byte AES key, 32-byte HMAC key)", path,
                        lineno);
                goto done;
            }
            raw[hex++] = (unsigned char)(hi << 4 | lo);
            p++;
        }
        if (hex == 0)
            continue;
        if (hex != sizeof(raw)) {
            twu_err(err, TW_ERR_INPUT,
                    "%s:%zu: a ticket key is 160 hex digits, this line has "
                    "%zu", path, lineno, hex * 2);
            goto done;
        }
        if (n == TW__TICKET_KEYS_MAX) {
            twu_err(err, TW_ERR_INPUT, "%s holds more than %d keys", path,
                    TW__TICKET_KEYS_MAX);
            goto done;
        }
        memcpy(keys[n].name, raw, 16);
        memcpy(keys[n].aes, raw + 16, 32);
        memcpy(keys[n].hmac, raw + 48, 32);
        OPENSSL_cleanse(raw, sizeof(raw));
        n++;
    }
    if (n == 0) {
        twu_err(err, TW_ERR_INPUT, "%s holds no ticket key", path);
        goto done;
    }
    *nkeys = n;
    rc = 0;
done:
    twu_free_secret(data, len);
    return rc;
}

int tw_ticket_keys_read(const char *path, unsigned char *keys, size_t max,
                        size_t *n, tw_err *err)
{
    tw__ticket_key found[TW__TICKET_KEYS_MAX];
    size_t count = 0;

    if (tw__ticket_keys_load(path, found, &count, err) < 0)
        return -1;
    if (count > max) {
        OPENSSL_cleanse(found, sizeof(found));
        return twu_err(err, TW_ERR_USAGE, "%s holds %zu keys, room was given "
                       "for %zu", path, count, max);
    }
    for (size_t i = 0; i < count; i++) {
        unsigned char *k = keys + i * TW_TICKET_KEY_BYTES;

        memcpy(k, found[i].name, 16);
        memcpy(k + 16, found[i].aes, 32);
        memcpy(k + 48, found[i].hmac, 32);
    }
    OPENSSL_cleanse(found, sizeof(found));
    *n = count;
    return 0;
}

int tw__ticket_keys_random(tw__ticket_key *key, tw_err *err)
{
    if (RAND_bytes((unsigned char *)key, sizeof(*key)) != 1)
        return twu_err_ssl(err, TW_ERR_INTERNAL, "no randomness for ticket keys");
    return 0;
}

static tw__gen *gen_of(SSL *s)
{
    return SSL_CTX_get_ex_data(SSL_get_SSL_CTX(s), tw__ctx_gen_index());
}

void tw__session_unresumable(SSL *ssl)
{
    static const unsigned char none[1];
    SSL_SESSION *sess = SSL_get_session(ssl);

    if (sess != NULL)
        (void)SSL_SESSION_set1_id_context(sess, none, 0);
}

/* Whether an OPTIONAL server's connection has a peer that is, so far,
 * verified (its session may be resumed). */
static int peer_verified_so_far(SSL *s)
{
    tw_conn *c = SSL_get_ex_data(s, tw__ssl_conn_index());

    return c == NULL || !c->cert_optional ||
           (tw__conn_peer_cert(c) != NULL && c->verify_error == 0 &&
            SSL_get_verify_result(s) == X509_V_OK);
}

/* RFC 5077 section 4: key name, IV, AES-256-CBC, HMAC-SHA256. */
static int key_cb(SSL *s, unsigned char name[16], unsigned char *iv,
                  EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    tw__gen *g = gen_of(s);
    const tw__ticket_key *k = NULL;
    OSSL_PARAM params[3];
    size_t i = 0;

    if (g == NULL || g->nkeys == 0)
        return -1;
    if (enc) {
        k = &g->keys[0];
        memcpy(name, k->name, 16);
        if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) != 1)
            return -1;
    } else {
        for (i = 0; i < g->nkeys; i++)
            if (memcmp(name, g->keys[i].name, 16) == 0) {
                k = &g->keys[i];
                break;
            }
        if (k == NULL)
            return 0; /* unknown key: full handshake */
    }
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY,
                                                  (void *)k->hmac, 32);
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                 (char *)"SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    if (EVP_MAC_CTX_set_params(hctx, params) != 1)
        return -1;
    if (enc)
        return EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) ==
                       1 ? 1 : -1;
    if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) != 1)
        return -1;
    return i == 0 ? 1 : 2; /* 2: made with an older key, renew the ticket */
}

static int gen_cb(SSL *s, void *arg)
{
    tw__gen *g = gen_of(s);
    SSL_SESSION *sess = SSL_get0_session(s);

    (void)arg;
    if (g == NULL || sess == NULL)
        return 1;
    if (!peer_verified_so_far(s))
        tw__session_unresumable(s);
    return SSL_SESSION_set1_ticket_appdata(sess, g->trust_id,
                                           sizeof(g->trust_id));
}

/* Whether a ticket's session may be resumed under the current generation. */
static int session_still_good(const tw__gen *g, SSL_SESSION *sess)
{
    X509 *peer = SSL_SESSION_get0_peer(sess);
    void *appdata = NULL;
    size_t len = 0;

    if (peer == NULL)
        return 0;
    if (SSL_SESSION_get0_ticket_appdata(sess, &appdata, &len) != 1 ||
        len != sizeof(g->trust_id) ||
        memcmp(appdata, g->trust_id, sizeof(g->trust_id)) != 0)
        return 0; /* made under other trust anchors */
    if (X509_cmp_current_time(X509_get0_notAfter(peer)) <= 0)
        return 0;
    if (tw__gen_revoked(g, peer))
        return 0;
    if (tw__gen_crl_stale(g, peer))
        return 0; /* a full handshake decides, by OpenSSL's CRL check */
    return 1;
}

static SSL_TICKET_RETURN dec_cb(SSL *s, SSL_SESSION *sess,
                                const unsigned char *keyname, size_t keyname_len,
                                SSL_TICKET_STATUS status, void *arg)
{
    tw__gen *g = gen_of(s);

    (void)keyname;
    (void)keyname_len;
    (void)arg;
    switch (status) {
    case SSL_TICKET_FATAL_ERR_MALLOC:
    case SSL_TICKET_FATAL_ERR_OTHER:
        return SSL_TICKET_RETURN_ABORT;
    case SSL_TICKET_NONE:
        return SSL_TICKET_RETURN_IGNORE;
    case SSL_TICKET_EMPTY:
        return SSL_TICKET_RETURN_IGNORE_RENEW;
    case SSL_TICKET_NO_DECRYPT:
        return SSL_TICKET_RETURN_IGNORE_RENEW;
    case SSL_TICKET_SUCCESS:
        return g && session_still_good(g, sess) ? SSL_TICKET_RETURN_USE
                                               : SSL_TICKET_RETURN_IGNORE_RENEW;
    case SSL_TICKET_SUCCESS_RENEW:
    default:
        return g && session_still_good(g, sess) ? SSL_TICKET_RETURN_USE_RENEW
                                               : SSL_TICKET_RETURN_IGNORE_RENEW;
    }
}

int tw__ticket_check_install(SSL_CTX *ctx, tw_err *err)
{
    if (SSL_CTX_set_session_ticket_cb(ctx, gen_cb, NULL, NULL) != 1)
        return twu_err_ssl(err, TW_ERR_INTERNAL,
                           "cannot install the session ticket callback");
    return 0;
}

int tw__ticket_install(SSL_CTX *ctx, tw_err *err)
{
    if (SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, key_cb) != 1 ||
        SSL_CTX_set_session_ticket_cb(ctx, gen_cb, dec_cb, NULL) != 1)
        return twu_err_ssl(err, TW_ERR_INTERNAL,
                           "cannot install the session ticket callbacks");
    return 0;
}
