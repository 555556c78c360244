/* certgen_helpers.h - what the certgen tests share: a CA and keys made once
 * per group, the extensions and SANs as OpenSSL reads them, a template.
 * Included by certgen_test.c and certgen_dates_test.c only. */
#ifndef TW_CERTGEN_HELPERS_H
#define TW_CERTGEN_HELPERS_H

#include "tw_internal.h"
#include "unit_helpers.h"

#include <arpa/inet.h>

#include <arpa/inet.h>

struct pki {
    tw_key *ca_key, *key, *rsa_key;
    tw_cert *ca;
};

static inline int group_setup(void **state)
{
    struct pki *p = calloc(1, sizeof(*p));

    p->ca_key = th_key("ec-p256");
    p->key = th_key("ec-p256");
    p->rsa_key = th_key("rsa-2048");
    p->ca = th_ca("/O=ABC Inc./CN=Test CA", p->ca_key);
    *state = p;
    return 0;
}

static inline int group_teardown(void **state)
{
    struct pki *p = *state;

    tw_cert_free(p->ca);
    tw_key_free(p->ca_key);
    tw_key_free(p->key);
    tw_key_free(p->rsa_key);
    free(p);
    return 0;
}

/* ----------------------------------------------------------- helpers */

/* Whether the extension is present (-1 absent, else its critical flag). */
static inline int ext_critical(X509 *x, int nid)
{
    int idx = X509_get_ext_by_NID(x, nid, -1);

    if (idx < 0)
        return -1;
    assert_int_equal(X509_get_ext_by_NID(x, nid, idx), -1); /* only once */
    return X509_EXTENSION_get_critical(X509_get_ext(x, idx));
}

/* The SANs as "DNS:a,IP:1.2.3.4,URI:u,email:e" ("" when none). */
static inline void san_text(X509 *x, char *out, size_t len)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    size_t used = 0;

    out[0] = '\0';
    for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, i);
        char buf[256];

        switch (gn->type) {
        case GEN_DNS:
            snprintf(buf, sizeof(buf), "DNS:%s",
                     ASN1_STRING_get0_data(gn->d.dNSName));
            break;
        case GEN_URI:
            snprintf(buf, sizeof(buf), "URI:%s",
                     ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier));
            break;
        case GEN_EMAIL:
            snprintf(buf, sizeof(buf), "email:%s",
                     ASN1_STRING_get0_data(gn->d.rfc822Name));
            break;
        case GEN_IPADD: {
            char ip[INET6_ADDRSTRLEN] = "?";
            int n = ASN1_STRING_length(gn->d.iPAddress);

            inet_ntop(n == 4 ? AF_INET : AF_INET6,
                      ASN1_STRING_get0_data(gn->d.iPAddress), ip, sizeof(ip));
            snprintf(buf, sizeof(buf), "IP:%s", ip);
            break;
        }
        default:
            snprintf(buf, sizeof(buf), "other:%d", gn->type);
        }
        used += (size_t)snprintf(out + used, len - used, "%s%s",
                                 used ? "," : "", buf);
    }
    GENERAL_NAMES_free(gens);
}

static inline tw_certgen *template_for(const char *subject, int purposes,
                                const tw_key *key)
{
    tw_err err;
    tw_certgen *g = tw_certgen_new(&err);
    tw_name *name = tw_name_parse(subject, &err);

    assert_non_null(g);
    assert_non_null(name);
    assert_int_equal(tw_certgen_set_subject(g, name, &err), 0);
    tw_name_free(name);
    assert_int_equal(tw_certgen_set_purposes(g, purposes, &err), 0);
    assert_int_equal(tw_certgen_set_public_key(g, key, &err), 0);
    return g;
}

#endif
