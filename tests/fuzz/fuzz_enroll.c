/*
 * fuzz_enroll.c - what twoway-ca serve reads from the bodies of POST
 * /v1/enroll and /v1/renew, all of it untrusted: the JSON object and its
 * members, the form of a token, the CSR (PEM or DER, its self-signature,
 * its names), whether it asks for exactly what a token allows, and the
 * lifetime a renewal asks for.  The same functions serve_issue.c calls.
 */
#include "serve.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A token as the index would hold it. */
static void token_for(ca_token *t)
{
    memset(t, 0, sizeof(*t));
    t->subject = "/CN=mail/O=MailServer";
    t->sans = "DNS:mail.local,IP:127.0.0.1";
    t->purposes = TW_PURPOSE_CLIENT;
}

static void read_csr(const char *csr)
{
    tw_certgen *g;
    tw_identity *asked = NULL;
    ca_token t;
    char why[1024];
    tw_err err;

    if ((g = tw_certgen_new(&err)) == NULL)
        return;
    if (tw_certgen_from_csr(g, csr, strlen(csr), "the csr field", &asked,
                            &err) == 0) {
        token_for(&t);
        (void)serve_request_matches_token(asked, &t, why, sizeof(why));
        /* A request that fits is signed from this template: its purposes
         * and names must be acceptable to the library. */
        (void)tw_certgen_set_purposes(g, TW_PURPOSE_CLIENT, &err);
    }
    tw_identity_free(asked);
    tw_certgen_free(g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char why[256];
    const char *token, *csr, *life;
    long long seconds;
    json_t *o = serve_body_object((const char *)data, size, why, sizeof(why));

    if (o == NULL)
        return 0;
    if (serve_body_string(o, "token", &token) == 1)
        (void)serve_token_well_formed(token);
    if (serve_body_string(o, "lifetime", &life) == 1)
        (void)twu_parse_duration(life, 60, 366LL * 86400, &seconds);
    if (serve_body_string(o, "csr", &csr) == 1)
        read_csr(csr);
    json_decref(o);
    return 0;
}
