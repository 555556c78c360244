/* certgen_internal.h - what csr.c needs of a certificate template. */
#ifndef TW_CERTGEN_INTERNAL_H
#define TW_CERTGEN_INTERNAL_H

#include "tw_internal.h"

#include <openssl/x509v3.h>

/* Take ownership of `pub` / `name`, replacing what was set. */
int tw__certgen_set_pkey(tw_certgen *g, EVP_PKEY *pub);
int tw__certgen_set_subject_name(tw_certgen *g, X509_NAME *name);

/* The digest to sign with for `key`: none for EdDSA, SHA-384 for P-384
 * and P-521, else SHA-256 (certgen.c). */
const EVP_MD *tw__digest_for(const EVP_PKEY *key);

#endif
