/*
 * request.c - one request to the store, whichever backend answers it: made
 * by a worker, answered by a writer or a reader thread, and the parts of an
 * answer every backend gives the same way (the invoice's hash for its
 * Idempotency-Key, a replay's comparison, a sentence or a row).
 */
#include "store_internal.h"
#include "util.h"

#include <openssl/evp.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

store_req *store__req_new(store_queue *q, int kind, store_done_fn *done,
                          void *ctx)
{
    store_req *r = twu_calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    r->q = q;
    r->kind = kind;
    r->done = done;
    r->ctx = ctx;
    return r;
}

void store__req_free(store_req *r)
{
    twu_buf_free(&r->result.body);
    twu_free(r);
}

void store__answer_text(store_req *r, int status, const char *fmt, ...)
{
    va_list ap;
    char text[256];

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    r->result.status = status;
    r->result.body.len = 0;
    if (twu_buf_append(&r->result.body, text, strlen(text)) < 0)
        twu_buf_free(&r->result.body); /* out of memory: status only */
}

void store__answer_row(store_req *r, int status, const store__row *row)
{
    r->result.status = status;
    r->result.body.len = 0;
    if (store__render_invoice(&r->result.body, row) < 0)
        store__answer_text(r, 500, "out of memory writing the answer");
}

void store__row_from_invoice(const inv_invoice *inv, int64_t created_at,
                             store__row *row)
{
    row->number = inv->number;
    row->firstname = inv->firstname;
    row->lastname = inv->lastname;
    row->email = inv->email;
    row->amount_minor = inv->amount_minor;
    row->currency = inv->currency;
    row->created_at = created_at;
}

int store__same_content(const store__row *row, const inv_invoice *inv)
{
    return strcmp(row->firstname, inv->firstname) == 0 &&
           strcmp(row->lastname, inv->lastname) == 0 &&
           strcmp(row->email, inv->email) == 0 &&
           row->amount_minor == inv->amount_minor &&
           strcmp(row->currency, inv->currency) == 0;
}

/*
 * SHA-256 of the invoice's fields, each with its terminating NUL (no field
 * can hold a NUL, so the encoding is unambiguous), behind a version tag so
 * the encoding can change.
 */
int store__hash_invoice(const inv_invoice *inv, char out[HASH_HEX])
{
    char amount[24];
    const char *parts[] = {"invoice-v1",    inv->number, inv->firstname,
                           inv->lastname,   inv->email,  amount,
                           inv->currency};
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1;

    snprintf(amount, sizeof(amount), "%lld", (long long)inv->amount_minor);
    for (size_t i = 0; ok && i < sizeof(parts) / sizeof(parts[0]); i++)
        ok = EVP_DigestUpdate(ctx, parts[i], strlen(parts[i]) + 1) == 1;
    ok = ok && EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 32;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return -1;
    twu_hex(md, mdlen, out, 0);
    return 0;
}

store_req *store__req_insert(store_queue *q, const inv_invoice *inv,
                             const char *idem_key, const char *client,
                             store_done_fn *done, void *ctx)
{
    store_req *r;

    if (q == NULL || inv == NULL || done == NULL ||
        (idem_key != NULL && strlen(idem_key) > INV_KEY_MAX) ||
        (client != NULL && strlen(client) > INV_CLIENT_MAX))
        return NULL; /* the HTTP layer checks the key's length first */
    if ((r = store__req_new(q, STORE__INSERT, done, ctx)) == NULL)
        return NULL;
    r->inv = *inv;
    r->inv.number[INV_NUMBER_MAX] = '\0';
    r->inv.firstname[INV_NAME_MAX] = '\0';
    r->inv.lastname[INV_NAME_MAX] = '\0';
    r->inv.email[INV_EMAIL_MAX] = '\0';
    r->inv.currency[3] = '\0';
    memcpy(r->result.number, r->inv.number, sizeof(r->result.number));
    if (idem_key != NULL && idem_key[0] != '\0') {
        snprintf(r->key, sizeof(r->key), "%s", idem_key);
        snprintf(r->client, sizeof(r->client), "%s", client ? client : "");
        if (store__hash_invoice(&r->inv, r->hash) < 0) {
            twu_free(r);
            return NULL;
        }
    }
    return r;
}
